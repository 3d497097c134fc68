"""torchmetrics for preference learning: accuracy of a pairwise score, and means of the rest.

Two accuracies matter. The implicit-reward accuracy (``rewards/accuracies``) is what DPO optimises,
but it is zero while the policy equals the reference (every reward is 0 and ties count wrong), so
it cannot compare before and after. The log-probability accuracy (``logps_accuracy/policy``,
``logps_accuracy/reference``) is defined for either model: the share of pairs where the model
gives the chosen reply a higher log-probability than the rejected one.

Which keys a run logs follows its objective (``lit_dpo.train.losses.Objective``): rewards only
where the objective defines them, its own extra terms (``sft_loss``...), and reference log-probs
only where a reference ran (in validation always, so the reference's accuracy is reported).

Validation and ``lit-dpo compare`` evaluate held-out pairs with the same code: a batch's
statistics (:func:`pair_statistics`, inside :func:`step_statistics` for a step) update the same
metrics (:func:`update_metrics`); compare's set (:func:`heldout_metric_set`) adds the chosen
replies' perplexity.
"""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric, Metric

from lit_dpo.train.losses import Objective, ObjectiveResult
from lit_dpo.train.pairs import split_pairs


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
        self.correct += pair_correct(chosen_scores, rejected_scores).sum()
        self.total += chosen_scores.numel()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


class ChosenPerplexity(Metric):
    """Perplexity over all chosen replies together, ``exp(-sum(log p) / sum(tokens))``: a token
    of a long reply weighs as much as one of a short reply."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        zero = torch.tensor(0.0, dtype=torch.float64)  # sums of many log-probs
        self.add_state("logps", default=zero, dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, chosen_logps: torch.Tensor, chosen_tokens: torch.Tensor) -> None:
        if chosen_logps.shape != chosen_tokens.shape:
            raise ValueError(
                f"log-prob and token count shapes differ: {tuple(chosen_logps.shape)} vs "
                f"{tuple(chosen_tokens.shape)}"
            )
        self.logps += chosen_logps.double().sum()
        self.tokens += chosen_tokens.sum()

    def compute(self) -> torch.Tensor:
        return torch.exp(-self.logps / self.tokens.clamp(min=1))


REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins")
MEAN_KEYS = ("loss", *REWARD_KEYS, "logps/chosen", "logps/rejected")
LOGPS_ACCURACY_KEYS = (
    "logps_accuracy/policy",
    "logps_accuracy/reference",
    "logps_accuracy_per_token/policy",
    "logps_accuracy_per_token/reference",
)
ACCURACY_KEYS = ("rewards/accuracies", *LOGPS_ACCURACY_KEYS)


def logged_keys(objective: Objective, stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(mean keys, accuracy keys)`` a stage logs: training the loss, rewards (where the
    objective defines them), log-probs (the reference's too where one ran) and the objective's
    own terms; validation the log-prob accuracies of policy and reference as well.

    Args:
        objective: the objective trained.
        stage: ``train``, or ``val`` for validation and test.
    """
    rewards = objective.rewards is not None
    extras = objective.extra_keys
    means = ("loss", *(REWARD_KEYS if rewards else ()), "logps/chosen", "logps/rejected", *extras)
    if stage == "train" and objective.needs_reference:
        # the same pairs under the reference: what the displacement alarm compares against
        means += ("reference_logps/chosen", "reference_logps/rejected")
    accuracies = ("rewards/accuracies",) if rewards else ()
    if stage != "train":
        accuracies += LOGPS_ACCURACY_KEYS
    return means, accuracies


def preference_metrics(
    mean_keys: tuple[str, ...] = MEAN_KEYS,
    accuracy_keys: tuple[str, ...] = ACCURACY_KEYS,
    dist_sync_on_step: bool = False,
) -> torch.nn.ModuleDict:
    """One metric per logged key; ``/`` is not allowed in module names, so keys use ``:``.

    Args:
        mean_keys: statistics logged as their mean over pairs (or steps, for a per-batch value).
        accuracy_keys: ``PAIR_SCORES`` keys, logged as a share of pairs.
        dist_sync_on_step: under DDP, make each step's value (``forward``) the value over every
            rank's batch, as one process with the global batch would log it; without it a step
            logs rank 0's share only. Epoch values (``compute``) are synced either way.
    """
    sync = {"dist_sync_on_step": dist_sync_on_step}
    metrics = {key: MeanMetric(**sync) for key in mean_keys}
    metrics.update({key: PreferenceAccuracy(**sync) for key in accuracy_keys})
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


def pair_correct(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """(B,) 1 where a pair's chosen score is strictly above its rejected score, else 0."""
    return (chosen_scores > rejected_scores).long()


def pair_outcomes(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per pair, what each preference accuracy of :data:`PAIR_SCORES` averages (1 right, 0 wrong),
    from a batch's statistics (:func:`pair_statistics`); accuracies whose scores are missing are
    left out. The bootstrap intervals of ``compare`` and ``tools/quality.py`` resample these."""
    return {
        key: pair_correct(stats[chosen], stats[rejected])
        for key, (chosen, rejected) in PAIR_SCORES.items()
        if chosen in stats and rejected in stats
    }


# perplexity key -> the (log-probs, token counts) of the chosen replies it reads
PERPLEXITY_INPUTS = {
    "perplexity_chosen/reference": ("reference_logps/chosen", "tokens/chosen"),
    "perplexity_chosen/policy": ("logps/chosen", "tokens/chosen"),
}


def metric_inputs(key: str, stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """What the metric logged as ``key`` is updated with, from a step's statistics (a step on
    unpaired rows, whose statistics carry ``labels``, as :func:`unpaired_metric_inputs`)."""
    if "labels" in stats:
        return unpaired_metric_inputs(key, stats)
    if key in PAIR_SCORES:
        return tuple(stats[name] for name in PAIR_SCORES[key])
    if key in PERPLEXITY_INPUTS:
        return tuple(stats[name] for name in PERPLEXITY_INPUTS[key])
    return (stats["losses"] if key == "loss" else stats[key],)


def module_metrics(
    objective: Objective,
) -> tuple[torch.nn.ModuleDict, torch.nn.ModuleDict, torch.nn.ModuleDict | None]:
    """A DPOModule's ``(train, val, val_unpaired)`` metrics, following its objective.

    A training step's value covers every rank's batch (one all-gather per metric under DDP). An
    unpaired objective (KTO) trains on unpaired rows, and validates on pairs (``val``, DPO's keys)
    or on unpaired rows (``val_unpaired``, with the reward AUC), whichever the split holds; any
    other objective has no ``val_unpaired`` (None).
    """
    if objective.unpaired:
        train = unpaired_metrics("train", dist_sync_on_step=True)
        val_unpaired = unpaired_metrics("val")
    else:
        train = preference_metrics(*logged_keys(objective, "train"), dist_sync_on_step=True)
        val_unpaired = None
    return train, preference_metrics(*logged_keys(objective, "val")), val_unpaired


def update_metrics(metrics: torch.nn.ModuleDict, stats: dict[str, torch.Tensor]) -> None:
    """Update each metric of ``metrics`` (keys with ``:``) with a batch's statistics: what
    validation does every step and ``compare`` every held-out batch."""
    for name, metric in metrics.items():
        metric.update(*metric_inputs(name.replace(":", "/"), stats))


def heldout_metric_set() -> torch.nn.ModuleDict:
    """The metrics ``compare`` reports of held-out pairs, in its order: validation's log-prob
    and reward accuracies and reward margin, and the chosen replies' perplexity under both
    models."""
    accuracies = (
        "logps_accuracy/reference",
        "logps_accuracy/policy",
        "logps_accuracy_per_token/reference",
        "logps_accuracy_per_token/policy",
        "rewards/accuracies",
    )
    metrics = {key: PreferenceAccuracy() for key in accuracies}
    metrics["rewards/margins"] = MeanMetric()
    metrics.update({key: ChosenPerplexity() for key in PERPLEXITY_INPUTS})
    return torch.nn.ModuleDict({key.replace("/", ":"): m for key, m in metrics.items()})


def computed(metrics: torch.nn.ModuleDict) -> dict[str, float]:
    """Each metric's value by its key (``/`` restored)."""
    return {name.replace(":", "/"): metric.compute().item() for name, metric in metrics.items()}


def pair_statistics(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor | None,
    counts: torch.Tensor,
    chosen_rewards: torch.Tensor | None = None,
    rejected_rewards: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Detached (B,) statistics of a batch's pairs by logged name.

    Args:
        policy_logps: (2B,) summed log-probs under the policy, chosen rows then rejected.
        reference_logps: (2B,) the same under the reference, or None where none ran.
        counts: (2B,) scored tokens per row.
        chosen_rewards: (B,) the objective's reward of each chosen reply, or None.
        rejected_rewards: (B,) the same of each rejected reply.

    Returns:
        ``rewards/{chosen,rejected,margins}`` (with rewards), ``[reference_]logps/...`` and
        ``[reference_]logps_per_token/...`` for each model that ran, ``tokens/{chosen,rejected}``.
    """
    stats = {}
    if chosen_rewards is not None:
        stats["rewards/chosen"] = chosen_rewards
        stats["rewards/rejected"] = rejected_rewards
        stats["rewards/margins"] = chosen_rewards - rejected_rewards
    models = {"": policy_logps, "reference_": reference_logps}
    for prefix, logps in models.items():
        if logps is None:
            continue
        logps = logps.detach()
        per_token = logps / counts.clamp(min=1)
        stats[f"{prefix}logps/chosen"], stats[f"{prefix}logps/rejected"] = split_pairs(logps)
        chosen, rejected = split_pairs(per_token)
        stats[f"{prefix}logps_per_token/chosen"], stats[f"{prefix}logps_per_token/rejected"] = (
            chosen,
            rejected,
        )
    stats["tokens/chosen"], stats["tokens/rejected"] = split_pairs(counts)
    return stats


def step_statistics(
    result: ObjectiveResult,
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor | None,
    counts: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """A step's statistics by logged name: the loss (with gradient) and detached (B,) values.

    Args:
        result: the objective's loss, rewards and extras.
        policy_logps: (2B,) summed log-probs under the policy, chosen rows then rejected.
        reference_logps: (2B,) the same under the reference, or None where none ran.
        counts: (2B,) scored tokens per row.
    """
    stats = {"loss": result.loss, "losses": result.losses}
    stats.update(
        pair_statistics(
            policy_logps, reference_logps, counts, result.chosen_rewards, result.rejected_rewards
        )
    )
    stats.update(result.extras)
    return stats


# what an unpaired objective (KTO) logs, under TRL's KTOTrainer names: "chosen" are the desirable
# replies, "rejected" the undesirable ones; the reference's log-probs feed the displacement alarm
UNPAIRED_MEAN_KEYS = (
    "loss",
    "kl",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "reference_logps/chosen",
    "reference_logps/rejected",
)
# replies of each kind per step, summed over ranks
UNPAIRED_COUNT_KEYS = ("count/desirable", "count/undesirable")


def unpaired_metrics(stage: str, dist_sync_on_step: bool = False) -> torch.nn.ModuleDict:
    """The metrics of an unpaired objective on unpaired rows: means, per-step counts and, in
    validation, the AUC of the reward separating desirable from undesirable replies
    (``rewards/auc``: the chance that a random desirable reply out-rewards a random undesirable
    one; 0.5 while policy = reference)."""
    from torchmetrics import SumMetric
    from torchmetrics.classification import BinaryAUROC

    sync = {"dist_sync_on_step": dist_sync_on_step}
    metrics: dict[str, Metric] = {key: MeanMetric(**sync) for key in UNPAIRED_MEAN_KEYS}
    metrics.update({key: SumMetric(**sync) for key in UNPAIRED_COUNT_KEYS})
    if stage != "train":
        metrics["rewards/auc"] = BinaryAUROC(**sync)
    return torch.nn.ModuleDict({key.replace("/", ":"): metric for key, metric in metrics.items()})


def unpaired_metric_inputs(key: str, stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """What the unpaired metric logged as ``key`` is updated with, from a step's statistics."""
    if key == "rewards/auc":
        return stats["rewards"], stats["labels"].long()
    return (stats["losses"] if key == "loss" else stats[key],)
