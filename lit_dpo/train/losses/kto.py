"""KTO and unpaired APO-zero: losses on single answers labelled desirable or undesirable.

Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv 2402.01306) needs no pairs: each
completion ``y`` of a prompt ``x`` is labelled desirable or undesirable, and its implicit reward
``r = log pi(y|x) - log pi_ref(y|x)`` is compared with a reference point ``z0``, an estimate of
``KL(pi || pi_ref)``::

    desirable:    loss = lambda_D * (1 - sigmoid(beta * (r - z0)))
    undesirable:  loss = lambda_U * (1 - sigmoid(beta * (z0 - r)))

The paper writes the loss as ``lambda_y - v(x, y)`` with ``v = lambda_D sigmoid(beta (r - z0))``
(desirable) or ``lambda_U sigmoid(beta (z0 - r))``: the same values. The batch loss is the mean
over the batch's completions (TRL's ``losses.nanmean()``).

``z0``, the KL baseline, is estimated from mismatched rows: each prompt with another row's
completion (``y'``, see ``lit_dpo.data.unpaired``), ``z0 = max(0, mean(log pi(y'|x) - log
pi_ref(y'|x)))``, with no gradient. Under DDP each rank's mean is gathered and averaged before the
clamp, as TRL's ``accelerator.gather_for_metrics(kl).mean().clamp(min=0)``.

APO-zero unpaired (D'Oosterlinck et al. 2024, arXiv 2408.06266) drops the reference point:
desirable ``1 - sigmoid(beta r)``, undesirable ``sigmoid(beta r)``; it needs no KL rows.

TRL 1.16 computes both inside ``KTOTrainer._compute_loss`` (trl/trainer/kto_trainer.py lines
1442-1548); ``tests/test_kto.py`` checks these functions against hand-worked numbers and that code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# TRL's recommended band for lambda_D * n_D / (lambda_U * n_U): the paper's Eq. (8) says [1, 4/3];
# TRL writes 4/3 as 1.33 and rounds the bounds to 2 decimals (kto_trainer.py lines 1163-1173)
TRL_RATIO_UPPER = 1.33


@dataclass
class UnpairedTerms:
    """What an unpaired loss reads, for a batch of B completions, each with its KL row.

    Attributes:
        policy_logps: (B,) summed completion log-probs under the policy.
        reference_logps: (B,) the same under the reference.
        labels: (B,) bool, true for a desirable completion.
        kl: the KL baseline ``z0`` (``kl_baseline``), () and detached.
    """

    policy_logps: torch.Tensor
    reference_logps: torch.Tensor
    labels: torch.Tensor
    kl: torch.Tensor


def kl_baseline(
    policy_kl_logps: torch.Tensor,
    reference_kl_logps: torch.Tensor,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """KTO's reference point ``z0``: the mean log-ratio of the mismatched (KL) rows, detached,
    averaged over ranks, clamped at 0.

    Args:
        policy_kl_logps: (B,) summed log-probs of each KL row under the policy.
        reference_kl_logps: (B,) the same under the reference.
        gather: stacks a scalar from every rank (e.g. ``LightningModule.all_gather``); None on
            one process.

    Returns:
        A scalar tensor, >= 0, without gradient.
    """
    kl = (policy_kl_logps - reference_kl_logps).mean().detach()
    if gather is not None:
        kl = gather(kl).mean()
    return kl.clamp(min=0)


def kto(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO loss per completion (Eq. 7 of the paper, as TRL).

    Args:
        policy_logps: (B,) summed completion log-probs under the policy.
        reference_logps: (B,) the same under the reference.
        labels: (B,) bool, true for a desirable completion.
        kl: the reference point ``z0`` (``kl_baseline``).
        beta: temperature.
        desirable_weight: lambda_D.
        undesirable_weight: lambda_U.

    Returns:
        (losses (B,), weighted; rewards (B,) ``beta * r``, detached).
    """
    logratios = policy_logps - reference_logps
    desirable = desirable_weight * (1 - F.sigmoid(beta * (logratios - kl)))
    undesirable = undesirable_weight * (1 - F.sigmoid(beta * (kl - logratios)))
    return torch.where(labels, desirable, undesirable), beta * logratios.detach()


def apo_zero_unpaired(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor | None,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """APO-zero on unpaired answers: push desirable rewards up and undesirable ones down, from
    zero rather than from a KL baseline (``kl`` is ignored).

    Returns:
        (losses (B,), weighted; rewards (B,) ``beta * r``, detached).
    """
    logratios = policy_logps - reference_logps
    desirable = desirable_weight * (1 - F.sigmoid(beta * logratios))
    undesirable = undesirable_weight * F.sigmoid(beta * logratios)
    return torch.where(labels, desirable, undesirable), beta * logratios.detach()


def unpaired_loss(objective, terms: UnpairedTerms, function) -> torch.Tensor:
    """(B,) ``function``'s weighted losses with an ``Objective``'s beta and weights (the
    registry's ``loss`` of an unpaired record)."""
    losses, _ = function(
        terms.policy_logps,
        terms.reference_logps,
        terms.labels,
        terms.kl,
        objective.beta,
        objective.desirable_weight,
        objective.undesirable_weight,
    )
    return losses


def weight_warning(
    desirable: int, undesirable: int, desirable_weight: float, undesirable_weight: float
) -> str | None:
    """A warning, with the numbers, when ``desirable_weight * desirable`` over ``undesirable_weight
    * undesirable`` falls outside TRL's recommended band, else None.

    TRL's test exactly (kto_trainer.py lines 1160-1185): counts of at least 1, no warning when
    they are equal, and a warning only when neither weight is within the band that the other
    weight and the counts give.
    """
    desirable, undesirable = max(desirable, 1), max(undesirable, 1)
    if desirable == undesirable:
        return None
    desirable_low = round(undesirable * undesirable_weight / desirable, 2)
    desirable_high = round(undesirable * undesirable_weight / desirable * TRL_RATIO_UPPER, 2)
    undesirable_low = round(desirable * desirable_weight / undesirable / TRL_RATIO_UPPER, 2)
    undesirable_high = round(desirable * desirable_weight / undesirable, 2)
    if (desirable_low <= desirable_weight <= desirable_high) or (
        undesirable_low <= undesirable_weight <= undesirable_high
    ):
        return None
    ratio = desirable_weight * desirable / (undesirable_weight * undesirable)
    return (
        f"KTO: {desirable} desirable and {undesirable} undesirable train rows at weights "
        f"{desirable_weight:g} / {undesirable_weight:g} give a weighted ratio of {ratio:.3g}, "
        f"outside the recommended 1 to 4/3 (KTO paper Eq. 8, TRL's bounds); set EITHER "
        f"model.objective.desirable_weight in [{desirable_low:g}, {desirable_high:g}] OR "
        f"model.objective.undesirable_weight in [{undesirable_low:g}, {undesirable_high:g}]"
    )
