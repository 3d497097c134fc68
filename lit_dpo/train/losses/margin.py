"""DPO-family losses on the pair's margin: how much more the policy moved towards chosen (pure).

Each takes the margin ``m = s_c - s_r`` between the chosen and rejected scores, where a reply's
score ``s`` is its policy/reference log-ratio ``log pi(y|x) - log pi_ref(y|x)`` (or an f-divergence
transform of it, ``terms.f_divergence_scores``), and returns a (B,) loss per pair. ``beta``
scales the margin: the larger, the closer the policy is held to the reference.

- ``sigmoid``: DPO, Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, eq. 7; with
  ``label_smoothing`` it is conservative DPO (cDPO, https://ericmitchell.ai/cdpo.pdf).
- ``hinge``: SLiC, Zhao et al. 2023, https://arxiv.org/abs/2305.10425.
- ``ipo``: IPO, Azar et al. 2023, https://arxiv.org/abs/2310.12036, eq. 17.
- ``robust``: robust DPO, Chowdhury et al. 2024, https://arxiv.org/abs/2403.00409 (rDPO).
- ``exo_pair``: EXO, Ji et al. 2024, https://arxiv.org/abs/2402.00856, eq. 16 with K = 2.
- ``discopop``: DiscoPOP's log-ratio modulated loss, Lu et al. 2024,
  https://arxiv.org/abs/2406.08414, eq. 5.
- ``aot``, ``aot_unpaired``: alignment via optimal transport, Melnyk et al. 2024,
  https://arxiv.org/abs/2406.05882: DPO on the sorted margins of the batch.

The same definitions as TRL 1.16's ``DPOTrainer._compute_loss`` (tests/test_objectives_trl.py
checks each against it), except that ``sigmoid`` keeps cDPO's label smoothing, which TRL 1.16
dropped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sigmoid_loss(margin: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO: ``-(1 - e) log sigmoid(beta m) - e log sigmoid(-beta m)``, ``e`` = label_smoothing.

    With ``e`` = 0 this is the Bradley-Terry likelihood of the preference under the implicit
    reward; cDPO's ``e`` is the share of labels assumed flipped, so the loss stops pushing once
    ``sigmoid(beta m)`` reaches ``1 - e``.

    Args:
        margin: (B,) score margin, chosen minus rejected.
        beta: temperature.
        label_smoothing: assumed share of flipped labels, in [0, 0.5).
    """
    return (
        -F.logsigmoid(beta * margin) * (1 - label_smoothing)
        - F.logsigmoid(-beta * margin) * label_smoothing
    )


def hinge_loss(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC's calibration loss: ``relu(1 - beta m)``, zero once the scaled margin reaches 1.

    Args:
        margin: (B,) score margin.
        beta: temperature (1 / beta is the margin SLiC asks for).
    """
    return torch.relu(1 - beta * margin)


def ipo_loss(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO: ``(m - 1 / (2 beta))^2``, a margin pulled to a target rather than pushed without bound.

    ``beta`` is the paper's tau. As in TRL, and as the authors confirmed to TRL, the margin is
    of per-token mean log-ratios (``objective`` divides by reply length), so that beta means the
    same for long and short replies.

    Args:
        margin: (B,) margin of length-normalised scores.
        beta: regularisation (tau); the target margin is 1 / (2 beta).
    """
    return (margin - 1 / (2 * beta)) ** 2


def robust_loss(margin: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """Robust DPO: an unbiased DPO loss under labels flipped with probability ``e``.

    ``((1 - e) l(m) - e l(-m)) / (1 - 2e)`` with ``l(m) = -log sigmoid(beta m)``: the loss of the
    pair as labelled, minus the loss of it flipped, reweighted so that its expectation over the
    noise is the clean loss. It is unbounded below: with ``e`` > 0 it keeps
    rewarding larger margins at slope ``e beta / (1 - 2e)``.

    Args:
        margin: (B,) score margin.
        beta: temperature.
        label_smoothing: ``e``, the probability a label is flipped, in [0, 0.5).
    """
    clean = -(1 - label_smoothing) * F.logsigmoid(beta * margin)
    flipped = -label_smoothing * F.logsigmoid(-beta * margin)
    return (clean - flipped) / (1 - 2 * label_smoothing)


def exo_pair_loss(margin: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """EXO: ``KL(q || p)`` between the policy's preference ``q`` and the label-smoothed labels.

    Over the pair, ``q = (sigmoid(beta m), sigmoid(-beta m))`` and ``p = (1 - e, e)``, so the loss
    is ``q_c (log q_c - log(1 - e)) + q_r (log q_r - log e)``: zero when the policy's preference
    probability equals ``1 - e``. The paper recommends ``e`` = 1e-3.

    Args:
        margin: (B,) score margin.
        beta: temperature.
        label_smoothing: ``e`` > 0, the target probability of the rejected reply.
    """
    log_q_chosen, log_q_rejected = F.logsigmoid(beta * margin), F.logsigmoid(-beta * margin)
    return log_q_chosen.exp() * (log_q_chosen - math.log1p(-label_smoothing)) + (
        log_q_rejected.exp() * (log_q_rejected - math.log(label_smoothing))
    )


def discopop_loss(margin: torch.Tensor, beta: float, tau: float) -> torch.Tensor:
    """DiscoPOP: logistic (DPO) loss blended into an exponential one as the margin grows.

    With ``z = beta m`` and ``w = sigmoid(z / tau)``: ``(1 - w) (-log sigmoid(z)) + w exp(-z)``.
    Found by an LLM-driven search over objectives; the paper uses tau = 0.05.

    Args:
        margin: (B,) score margin.
        beta: temperature.
        tau: sharpness of the switch between the two components.
    """
    z = beta * margin
    switch = torch.sigmoid(z / tau)
    return -F.logsigmoid(z) * (1 - switch) + torch.exp(-z) * switch


def aot_loss(
    policy_margins: torch.Tensor,
    reference_margins: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """AOT (paired): DPO on the batch's sorted margins, a one-dimensional optimal transport.

    The policy's margins ``log pi(y_c) - log pi(y_r)`` and the reference's are each sorted over
    the batch, and the i-th smallest of one is compared with the i-th smallest of the other:
    ``sigmoid_loss(sort(policy) - sort(reference))``. This asks the distribution of the policy's
    margins to dominate the reference's, not each pair's margin to. The loss of position i is
    no longer pair i's, so per-pair weights (WPO) do not apply.

    Args:
        policy_margins: (B,) policy log-prob margin of each pair, chosen minus rejected.
        reference_margins: (B,) the reference's.
        beta: temperature.
        label_smoothing: as in ``sigmoid_loss``.
    """
    delta = torch.sort(policy_margins).values - torch.sort(reference_margins).values
    return sigmoid_loss(delta, beta, label_smoothing)


def aot_unpaired_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """AOT (unpaired): the sorted chosen log-ratios against the sorted rejected ones.

    For data where chosen and rejected replies need not come in pairs: the distribution of
    chosen rewards is asked to dominate that of rejected rewards,
    ``sigmoid_loss(sort(chosen) - sort(rejected))``.

    Args:
        chosen_logratios: (B,) ``log pi(y_c) - log pi_ref(y_c)``.
        rejected_logratios: (B,) the same for the rejected replies.
        beta: temperature.
        label_smoothing: as in ``sigmoid_loss``.
    """
    delta = torch.sort(chosen_logratios).values - torch.sort(rejected_logratios).values
    return sigmoid_loss(delta, beta, label_smoothing)
