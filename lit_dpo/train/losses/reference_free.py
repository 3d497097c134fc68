"""Preference losses that need no reference model: the policy's own log-probs only (pure).

Without a reference there is no reference forward in a training step (about a third less
compute than DPO) and nothing anchoring the policy but the objective itself, so CPO and ORPO add
a negative log-likelihood (SFT) term on the chosen replies, and SimPO normalises by length.

- ``simpo``: SimPO, Meng et al. 2024, https://arxiv.org/abs/2405.14734, eq. 6: the reward is the
  length-normalised log-prob ``beta / |y| log pi(y|x)``, with a target margin ``gamma``.
- ``cpo``: CPO, Xu et al. 2024, https://arxiv.org/abs/2401.08417, eq. 3 and the loss after it:
  DPO's sigmoid on the policy's summed log-prob margin (the reference dropped), plus ``alpha``
  times the NLL of the chosen replies.
- ``orpo``: ORPO, Hong et al. 2024, https://arxiv.org/abs/2403.07691, eqs. 4-7: the NLL of the
  chosen replies plus ``beta`` (the paper's lambda) times the log-sigmoid of the log odds ratio of
  chosen to rejected, on mean per-token log-probs.

As TRL's ``CPOTrainer`` (``loss_type`` sigmoid and simpo) and ``ORPOTrainer`` compute them; the
NLL is a token-level mean over the chosen replies of the batch (``terms.sft_nll``). Each function
returns a (B,) loss per pair whose mean is the batch loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lit_dpo.train.losses.margin import sigmoid_loss


def simpo_loss(
    chosen_mean_logps: torch.Tensor,
    rejected_mean_logps: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """SimPO: ``-log sigmoid(beta (mean_c - mean_r) - gamma)``.

    ``mean = log pi(y|x) / |y|``, the per-token mean log-prob, is the reward the model generates
    by (beam search ranks by it), so training and generation agree; ``gamma`` asks the reward
    margin to exceed a target. The paper uses beta 2-2.5 and gamma / beta 0.3-0.5. With
    ``label_smoothing`` the loss is cDPO-smoothed, as in TRL's CPOTrainer.

    Args:
        chosen_mean_logps: (B,) per-token mean log-prob of the chosen replies.
        rejected_mean_logps: (B,) the same for the rejected replies.
        beta: reward scale.
        gamma: target reward margin.
        label_smoothing: assumed share of flipped labels, in [0, 0.5).
    """
    margin = chosen_mean_logps - rejected_mean_logps - gamma / beta
    return sigmoid_loss(margin, beta, label_smoothing)


def cpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CPO: ``-log sigmoid(beta (log pi(y_c) - log pi(y_r))) + alpha NLL(y_c)``.

    DPO with a uniform reference (its log-ratios cancel in the margin), which CPO shows bounds the
    DPO loss; the NLL term keeps the policy on the chosen distribution, as the reference would.

    Args:
        chosen_logps: (B,) summed log-prob of the chosen replies.
        rejected_logps: (B,) summed log-prob of the rejected replies.
        chosen_nll: () NLL of the chosen replies per token (``terms.sft_nll``).
        beta: temperature.
        alpha: weight of the NLL term (TRL's ``cpo_alpha``).
        label_smoothing: assumed share of flipped labels, in [0, 0.5).
    """
    return sigmoid_loss(chosen_logps - rejected_logps, beta, label_smoothing) + alpha * chosen_nll


def orpo_log_odds(chosen_mean_logps: torch.Tensor, rejected_mean_logps: torch.Tensor):
    """(B,) log odds ratio ``log(odds(y_c) / odds(y_r))``, ``odds(y) = P(y) / (1 - P(y))``.

    ``P(y) = exp(mean per-token log-prob)``; ``log(1 - P)`` is computed stably (``_log1mexp``).

    Args:
        chosen_mean_logps: (B,) per-token mean log-prob of the chosen replies (< 0).
        rejected_mean_logps: (B,) the same for the rejected replies.
    """
    chosen, rejected = chosen_mean_logps.float(), rejected_mean_logps.float()
    return (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))


def orpo_loss(
    chosen_mean_logps: torch.Tensor,
    rejected_mean_logps: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """ORPO: ``NLL(y_c) - beta log sigmoid(log odds ratio)``.

    The odds-ratio term contrasts chosen and rejected gently (its gradient fades as the odds
    ratio grows), on top of plain SFT on the chosen replies: one stage, no reference.

    Args:
        chosen_mean_logps: (B,) per-token mean log-prob of the chosen replies.
        rejected_mean_logps: (B,) the same for the rejected replies.
        chosen_nll: () NLL of the chosen replies per token (``terms.sft_nll``).
        beta: weight of the odds-ratio term (the paper's lambda).
    """
    return chosen_nll - beta * F.logsigmoid(orpo_log_odds(chosen_mean_logps, rejected_mean_logps))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for x < 0, branching at -log 2 to avoid cancellation (Maechler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))
