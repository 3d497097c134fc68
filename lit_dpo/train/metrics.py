"""torchmetrics for preference learning: accuracy of a pairwise score, and means of the rest.

Two accuracies matter. The implicit-reward accuracy (``rewards/accuracies``) is what DPO optimises,
but it is zero while the policy equals the reference (every reward is 0 and ties count wrong), so
it cannot compare before and after. The log-probability accuracy (``logps_accuracy/policy``,
``logps_accuracy/reference``) is defined for either model: the share of pairs where the model
gives the chosen reply a higher log-probability than the rejected one.
"""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric, Metric


class PreferenceAccuracy(Metric):
    """Share of pairs whose chosen score is strictly above the rejected score (ties count wrong)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> None:
        if chosen_scores.shape != rejected_scores.shape:
            raise ValueError(
                f"score shapes differ: {tuple(chosen_scores.shape)} vs "
                f"{tuple(rejected_scores.shape)}"
            )
        self.correct += (chosen_scores > rejected_scores).sum()
        self.total += chosen_scores.numel()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


MEAN_KEYS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)
ACCURACY_KEYS = (
    "rewards/accuracies",
    "logps_accuracy/policy",
    "logps_accuracy/reference",
    "logps_accuracy_per_token/policy",
    "logps_accuracy_per_token/reference",
)


def preference_metrics(dist_sync_on_step: bool = False) -> torch.nn.ModuleDict:
    """One metric per logged key; ``/`` is not allowed in module names, so keys use ``:``.

    Args:
        dist_sync_on_step: under DDP, make each step's value (``forward``) the value over every
            rank's batch, as one process with the global batch would log it; without it a step
            logs rank 0's share only. Epoch values (``compute``) are synced either way.
    """
    sync = {"dist_sync_on_step": dist_sync_on_step}
    metrics = {key: MeanMetric(**sync) for key in MEAN_KEYS}
    metrics.update({key: PreferenceAccuracy(**sync) for key in ACCURACY_KEYS})
    return torch.nn.ModuleDict({key.replace("/", ":"): metric for key, metric in metrics.items()})


# accuracy key -> the (chosen, rejected) scores it compares, as named in a step's statistics
PAIR_SCORES = {
    "rewards/accuracies": ("rewards/chosen", "rewards/rejected"),
    "logps_accuracy/policy": ("logps/chosen", "logps/rejected"),
    "logps_accuracy/reference": ("reference_logps/chosen", "reference_logps/rejected"),
    "logps_accuracy_per_token/policy": ("logps_per_token/chosen", "logps_per_token/rejected"),
    "logps_accuracy_per_token/reference": (
        "reference_logps_per_token/chosen",
        "reference_logps_per_token/rejected",
    ),
}


def metric_inputs(key: str, stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """What the metric logged as ``key`` is updated with, from a step's statistics."""
    if key in PAIR_SCORES:
        return tuple(stats[name] for name in PAIR_SCORES[key])
    return (stats["losses"] if key == "loss" else stats[key],)
