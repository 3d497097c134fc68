"""DPO-family losses on each reply's own log-ratio, anchored at the reference (pure).

The margin losses (``margin.py``) only see the difference between chosen and rejected, so both
log-probs can fall as long as the rejected one falls faster (likelihood displacement). These
losses give each reply's log-ratio ``r = log pi(y|x) - log pi_ref(y|x)`` a target of its own:

- ``nca_pair``: NCA, Chen et al. 2024, https://arxiv.org/abs/2402.05369: noise-contrastive
  alignment, which pushes the chosen reward up in absolute terms.
- ``bco_pair``: BCO, Jung et al. 2024, https://arxiv.org/abs/2404.04656: each reply classified
  as good or bad by its reward, shifted by the running mean reward ``delta``.
- ``sppo_hard``: SPPO, Wu et al. 2024, https://arxiv.org/abs/2405.00675, eq. 4.7 with the hard
  win probability (1 for chosen, 0 for rejected): a squared loss towards ``+-1 / (2 beta)``.
- ``apo_zero``, ``apo_down``: anchored preference optimisation, D'Oosterlinck et al. 2024,
  https://arxiv.org/abs/2408.06266, eqs. 7 and 8.

Each returns a (B,) loss per pair. As in TRL, the f-divergence transforms do not apply here: the
f-DPO reparameterisation leaves a ``beta log Z(x)`` term that cancels only in a difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nca_pair_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
) -> torch.Tensor:
    """NCA: ``-log sigmoid(r_c) - 1/2 log sigmoid(-r_c) - 1/2 log sigmoid(-r_r)``, ``r = beta x``.

    The first term raises the chosen reward, the other two keep both rewards from growing without
    bound; unlike DPO the chosen likelihood is pushed up, not only the margin.

    Args:
        chosen_logratios: (B,) chosen ``log pi - log pi_ref``.
        rejected_logratios: (B,) rejected ``log pi - log pi_ref``.
        beta: reward scale.
    """
    chosen, rejected = beta * chosen_logratios, beta * rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def bco_pair_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float,
    delta: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """BCO: ``-log sigmoid(r_c - delta) - log sigmoid(-(r_r - delta))``, ``r = beta x``.

    A binary classifier whose logit is the reward: chosen replies are the positives, rejected ones
    the negatives. The paper shifts the rewards by ``delta``, the running mean of past rewards
    (the caller keeps it, ``terms.running_mean``), so that the decision boundary follows the
    rewards as training moves them; with ``delta`` = 0 it is TRL 1.16's ``bco_pair``.

    Args:
        chosen_logratios: (B,) chosen ``log pi - log pi_ref``.
        rejected_logratios: (B,) rejected ``log pi - log pi_ref``.
        beta: reward scale.
        delta: reward shift, a running mean of ``beta`` times the log-ratios (no gradient).
    """
    chosen, rejected = beta * chosen_logratios, beta * rejected_logratios
    return -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))


def sppo_hard_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
) -> torch.Tensor:
    """SPPO (hard): ``(x_c - 1 / (2 beta))^2 + (x_r + 1 / (2 beta))^2``.

    SPPO regresses each log-ratio on ``eta (P(y wins) - 1/2)`` with ``eta = 1 / beta``; with the
    win probability set to 1 for chosen and 0 for rejected, the targets are ``+-1 / (2 beta)``.

    Args:
        chosen_logratios: (B,) chosen ``log pi - log pi_ref``.
        rejected_logratios: (B,) rejected ``log pi - log pi_ref``.
        beta: inverse of SPPO's eta.
    """
    target = 0.5 / beta
    return (chosen_logratios - target) ** 2 + (rejected_logratios + target) ** 2


def apo_zero_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
) -> torch.Tensor:
    """APO-zero: ``(1 - sigmoid(r_c)) + sigmoid(r_r)``, ``r = beta x``: chosen up, rejected down.

    For chosen replies better than what the model writes now. Bounded in [0, 2], starting at 1.

    Args:
        chosen_logratios: (B,) chosen ``log pi - log pi_ref``.
        rejected_logratios: (B,) rejected ``log pi - log pi_ref``.
        beta: reward scale.
    """
    return 1 - torch.sigmoid(beta * chosen_logratios) + torch.sigmoid(beta * rejected_logratios)


def apo_down_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
) -> torch.Tensor:
    """APO-down: ``sigmoid(r_c) + (1 - sigmoid(r_c - r_r))``: both down, rejected more.

    For chosen replies worse than what the model writes now: the chosen likelihood is lowered
    too, while the margin still grows. Bounded in [0, 2], starting at 1.

    Args:
        chosen_logratios: (B,) chosen ``log pi - log pi_ref``.
        rejected_logratios: (B,) rejected ``log pi - log pi_ref``.
        beta: reward scale.
    """
    chosen, rejected = beta * chosen_logratios, beta * rejected_logratios
    return torch.sigmoid(chosen) + 1 - torch.sigmoid(chosen - rejected)
