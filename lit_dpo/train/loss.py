"""DPO-family losses from policy and reference log-probs (pure maths).

- ``sigmoid``: DPO, Rafailov et al. 2023 (https://arxiv.org/abs/2305.18290), eq. 7; with
  ``label_smoothing`` > 0 it is conservative DPO (cDPO, https://ericmitchell.ai/cdpo.pdf), which
  assumes that share of the labels is flipped.
- ``ipo``: Azar et al. 2023 (https://arxiv.org/abs/2310.12036), eq. 17: a squared loss that pulls
  the log-ratio margin to ``1 / (2 beta)`` instead of pushing it without bound. As in TRL, the
  caller passes per-token mean log-probs for IPO.
- ``hinge``: SLiC (https://arxiv.org/abs/2305.10425), a margin loss on the scaled log-ratio margin.

The same definitions as TRL's ``DPOTrainer.dpo_loss`` and torchtune's ``rlhf/loss/dpo.py``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "ipo", "hinge"]


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: LossType = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss and implicit rewards.

    With ``h = (pi_c - pi_r) - (ref_c - ref_r)``, the log-ratio margin:

    - sigmoid: ``-(1 - ls) log sigmoid(beta h) - ls log sigmoid(-beta h)``
    - ipo: ``(h - 1 / (2 beta))^2``
    - hinge: ``relu(1 - beta h)``

    Args:
        policy_chosen_logps: (B,) log p_policy(chosen | prompt).
        policy_rejected_logps: (B,) log p_policy(rejected | prompt).
        reference_chosen_logps: (B,) log p_reference(chosen | prompt).
        reference_rejected_logps: (B,) log p_reference(rejected | prompt).
        beta: strength of the pull towards the reference (larger: stay closer).
        loss_type: ``sigmoid``, ``ipo`` or ``hinge``.
        label_smoothing: cDPO's assumed share of flipped labels, in [0, 0.5); sigmoid only.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each (B,); rewards are
        ``beta * (policy - reference)`` log-probs, detached.

    Raises:
        ValueError: mismatched shapes, a non-positive beta, or an unknown loss type.
    """
    shapes = {
        tuple(t.shape)
        for t in (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        )
    }
    if len(shapes) != 1:
        raise ValueError(f"log-prob tensors must share one shape, got {sorted(shapes)}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")

    margin = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    if loss_type == "sigmoid":
        losses = (
            -F.logsigmoid(beta * margin) * (1 - label_smoothing)
            - F.logsigmoid(-beta * margin) * label_smoothing
        )
    elif loss_type == "ipo":
        losses = (margin - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose sigmoid, ipo or hinge")

    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
