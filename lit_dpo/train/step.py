"""A step's maths: the policy's and reference's scored tokens -> the loss and its statistics.

``objective_step`` is the one place the pieces of an objective meet: the summed log-probs of each
reply (LD-DPO weighted with ``ld_alpha``), the SFT term (the NLL per token of the chosen replies),
WPO's pair weights, BCO's running reward shift, the weighted losses (``losses.objective_loss``)
and the statistics logged about them (``metrics.step_statistics``). Pure: tensors in, tensors and
the new BCO shift out, no trainer and no logging. ``DPOModule`` calls it in every step and
``tests/test_objectives_trl.py`` compares it with TRL's loss.

BCO (Jung et al. 2024, https://arxiv.org/abs/2404.04656) shifts its rewards by the mean of the
per-step mean rewards of training so far, this step's included; ``BCOShift`` holds that mean,
and ``BCOShiftState`` keeps it in the module's ``state_dict`` so that a resumed run goes on from
it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lit_dpo.train.logps import ScoredTokens, row_logps
from lit_dpo.train.losses import Objective, objective_loss
from lit_dpo.train.losses.terms import running_mean, sft_nll, wpo_weights
from lit_dpo.train.metrics import step_statistics
from lit_dpo.train.pairs import split_pairs


@dataclass(frozen=True)
class BCOShift:
    """``bco_pair``'s reward shift: the mean of ``steps`` training steps' mean rewards."""

    mean: float = 0.0
    steps: int = 0

    def updated(self, reward: float) -> BCOShift:
        """The shift with one more step's mean reward."""
        return BCOShift(*running_mean(self.mean, self.steps, reward))


class BCOShiftState(torch.nn.Module):
    """Holds a run's ``BCOShift`` as the module's extra state: saved in checkpoints through
    ``state_dict`` as plain floats, which no precision or device move touches."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = BCOShift()

    def get_extra_state(self) -> dict[str, Any]:
        return {"mean": self.shift.mean, "steps": self.shift.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.shift = BCOShift(float(state["mean"]), int(state["steps"]))


@dataclass
class StepResult:
    """What one step computed.

    Attributes:
        loss: () the loss to back-propagate (also ``statistics["loss"]``).
        statistics: logged name -> the loss and detached (B,) values (``metrics.step_statistics``).
        bco_shift: the BCO shift after this step (unchanged outside training or without
            ``bco_pair``).
    """

    loss: torch.Tensor
    statistics: dict[str, torch.Tensor]
    bco_shift: BCOShift


def objective_step(
    objective: Objective,
    policy: ScoredTokens,
    reference: ScoredTokens | torch.Tensor | None,
    bco_shift: BCOShift = BCOShift(),
    training: bool = False,
    mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sft_pairs: torch.Tensor | None = None,
) -> StepResult:
    """The objective's loss and statistics on one batch of B pairs.

    Args:
        objective: the losses and their settings.
        policy: the policy's scored tokens of the 2B replies (chosen rows, then rejected), with
            gradient; with ``log_sum_sq`` where the objective uses WPO weights.
        reference: the reference's scored tokens of the same replies, or their (2B,) summed
            log-probs (LD-DPO weighted with ``ld_alpha``, as a reference table holds them), or
            None where the objective needs no reference and none ran.
        bco_shift: BCO's reward shift so far.
        training: a training step, which moves the BCO shift.
        mean_over_ranks: the mean of a () tensor over every process (under DDP), so that each
            rank moves the BCO shift alike; None on one process.
        sft_pairs: (B,) bool, the pairs whose chosen replies the NLL term learns (a mixture part
            with ``sft: false`` is left out); None: every pair.

    Raises:
        ValueError: mismatched shapes, or no reference for an objective that needs one.
    """
    policy_logps, counts = row_logps(policy, objective.ld_alpha), policy.counts()
    if isinstance(reference, ScoredTokens):
        reference = row_logps(reference, objective.ld_alpha)
    chosen_sums, _ = split_pairs(policy.sums())
    chosen_counts, _ = split_pairs(counts)
    if sft_pairs is not None:
        # NLL per token over the flagged pairs' chosen tokens only; 0 where none is flagged
        keep = sft_pairs.to(chosen_sums.device, torch.bool)
        chosen_sums = torch.where(keep, chosen_sums, torch.zeros_like(chosen_sums))
        chosen_counts = torch.where(keep, chosen_counts, torch.zeros_like(chosen_counts))
    pair_weights = None
    if objective.use_weighting:
        pair_weights = wpo_weights(policy.logps, policy.log_sum_sq, policy.rows, policy.num_rows)
    if training and "bco_pair" in objective.loss_types:
        # this step's mean reward over chosen and rejected, as the BCO paper and earlier TRL
        reward = objective.beta * (policy_logps - reference).detach().mean()
        if mean_over_ranks is not None:
            reward = mean_over_ranks(reward)
        bco_shift = bco_shift.updated(float(reward))
    result = objective_loss(
        objective,
        policy_logps,
        reference,
        counts,
        chosen_nll=sft_nll(chosen_sums, chosen_counts),
        pair_weights=pair_weights,
        bco_delta=bco_shift.mean,
    )
    statistics = step_statistics(result, policy_logps, reference, counts)
    return StepResult(result.loss, statistics, bco_shift)
