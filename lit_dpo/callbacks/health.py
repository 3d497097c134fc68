"""Watch a fit: alarms when training goes wrong in ways DPO is known for.

The detectors are pure functions over the metric history DPOModule logs each step (``train/loss``,
``train/rewards/...``, ``train/logps/...``); ``HealthAlarms`` feeds them and warns once per alarm
with the step, the numbers, the likely cause and what to try. Known failure modes: likelihood
displacement, where the chosen log-probs fall with the rejected ones
(https://arxiv.org/abs/2410.08847); a learning rate or beta that makes the loss or margins run away;
data that teaches nothing (accuracy at chance); fp16 overflow. The loss check watches the preference
objective's own loss (``model.objective.sft_weight``'s SFT term taken out), against a range that
depends on the objective (``default_loss_range``). An alarm on the training metrics names the
reference they were measured against (the base, or a reference adapter).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from lit_dpo.models.reference import describe_reference
from lit_dpo.train.losses import Objective
from lit_dpo.train.pairs import num_pairs

log = logging.getLogger(__name__)

TRAIN_KEYS = (
    "train/loss",
    "train/rewards/accuracies",
    "train/rewards/margins",
    "train/logps/chosen",
    "train/logps/rejected",
    "train/reference_logps/chosen",
    "train/reference_logps/rejected",
)
# An unpaired (KTO) batch may hold no desirable or no undesirable reply: its means over the missing
# kind are undefined that step (logged as nan), which is not divergence. Those steps stay out of
# that metric's history; the loss, defined on every batch, still catches a real nan.
NEEDS_KIND = {
    "train/rewards/margins": ("desirable", "undesirable"),
    "train/logps/chosen": ("desirable",),
    "train/reference_logps/chosen": ("desirable",),
    "train/logps/rejected": ("undesirable",),
    "train/reference_logps/rejected": ("undesirable",),
}


def undefined_keys(metrics: Mapping, world_size: int = 1) -> set[str]:
    """The metrics of ``TRAIN_KEYS`` a step's batch left undefined: per-kind means of an
    unpaired batch that held none of that kind (``train/count/desirable`` or ``.../undesirable``
    0), and, over several ranks, its margin where no rank held both kinds. Empty for pairs, which
    log no counts."""
    missing = {
        kind for kind in ("desirable", "undesirable")
        if f"train/count/{kind}" in metrics and float(metrics[f"train/count/{kind}"]) == 0
    }
    undefined = {key for key, kinds in NEEDS_KIND.items() if missing.intersection(kinds)}
    # The margin needs both kinds in one rank's batch (TRL's per-batch margin). Under DDP the
    # counts are summed over ranks, so they can hold both kinds while no rank did: the synced mean
    # of no margins is nan then, and that is no divergence either (in one process it is).
    margin = float(metrics.get("train/rewards/margins", 0.0))
    if world_size > 1 and "train/count/desirable" in metrics and math.isnan(margin):
        undefined.add("train/rewards/margins")
    return undefined


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def falling_logps(
    chosen: Sequence[float],
    rejected: Sequence[float],
    window: int,
    min_drop: float,
    reference_chosen: Sequence[float] | None = None,
    reference_rejected: Sequence[float] | None = None,
) -> str | None:
    """Chosen log-probs falling below where they started, together with the rejected ones.

    With the reference's log-probs of the same batches (every objective that runs a reference),
    the last ``window`` steps' policy log-probs are compared with the reference's on the very same
    pairs: the fall is the policy's own, whatever the replies' lengths. Without them
    (reference-free objectives) the first ``window`` steps' mean is compared with the last
    ``window``'s; summed log-probs vary with reply length from batch to batch, so that comparison
    is coarser (a run of long replies late in the epoch can look like a fall).

    Args:
        chosen: per-step mean summed log-prob of the chosen replies under the policy.
        rejected: the same for the rejected replies.
        window: steps averaged at each end; needs ``2 * window`` steps.
        min_drop: share of its starting magnitude the chosen log-prob must lose (0.1: 10%).
        reference_chosen: per-step mean summed log-prob of the same chosen replies under the
            reference, or None.
        reference_rejected: the same for the rejected replies, or None.

    Returns:
        The finding, or None.
    """
    if len(chosen) < 2 * window or len(rejected) < 2 * window:
        return None
    if reference_chosen is not None and reference_rejected is not None:
        if len(reference_chosen) < window or len(reference_rejected) < window:
            return None
        chosen_start, rejected_start = _mean(reference_chosen[-window:]), _mean(
            reference_rejected[-window:]
        )
        measured = f"than the reference on the same pairs over the last {window} steps"
    else:
        chosen_start, rejected_start = _mean(chosen[:window]), _mean(rejected[:window])
        measured = f"from the first {window} steps to the last {window}"
    chosen_now, rejected_now = _mean(chosen[-window:]), _mean(rejected[-window:])
    if chosen_now >= chosen_start - min_drop * abs(chosen_start) or rejected_now >= rejected_start:
        return None
    return (
        f"chosen log-probs fell from {chosen_start:.1f} to {chosen_now:.1f} "
        f"({(chosen_now - chosen_start) / abs(chosen_start):+.0%}) while the rejected fell from "
        f"{rejected_start:.1f} to {rejected_now:.1f} ({measured}): the policy widens the margin "
        "by making both replies less likely (likelihood displacement). Try a lower learning "
        "rate or a larger beta, add an SFT term on the chosen replies "
        "(--model.objective.sft_weight 0.1), or switch to model.objective.loss_type ipo; check "
        "that chosen and rejected are not near-duplicates"
    )


def out_of_range(name: str, values: Sequence[float], low: float, high: float, window: int):
    """A metric's recent mean outside ``[low, high]``, or any non-finite value.

    Args:
        name: the metric, for the message.
        values: its per-step history.
        low: lowest sane mean.
        high: highest sane mean.
        window: steps averaged (a single batch can be an outlier).

    Returns:
        The finding, or None.
    """
    if not values:
        return None
    if not math.isfinite(values[-1]):
        return (
            f"{name} is {values[-1]}: training diverged. Lower the learning rate; with "
            "16-mixed, check the loss scale; check the data for empty replies"
        )
    if len(values) < window:
        return None
    recent = _mean(values[-window:])
    if low <= recent <= high:
        return None
    side = "above" if recent > high else "below"
    return (
        f"{name} averaged {recent:.3g} over the last {window} steps, {side} the sane range "
        f"[{low:g}, {high:g}]: the update is too large or the data inconsistent. Lower the "
        "learning rate or raise beta, filter pairs whose replies barely differ, or switch to "
        "model.objective.loss_type ipo, which bounds the margin"
    )


def chance_accuracy(
    accuracies: Sequence[float],
    after_steps: int,
    window: int,
    tolerance: float,
    pairs: Sequence[int] | None = None,
    min_pairs: int = 0,
) -> str | None:
    """Preference accuracy no better than a coin after ``after_steps`` steps.

    The mean is taken over the last ``window`` steps, widened to the last ``min_pairs`` pairs when
    those steps hold fewer: a 10-step window of 4-pair batches is 40 pairs, and on hard real pairs
    their mean falls to 0.5 by chance alone (a standard error of 0.08 around a true 0.6).

    Args:
        accuracies: per-step ``rewards/accuracies`` (share of pairs with chosen reward higher).
        after_steps: steps training gets before it is judged.
        window: steps averaged, at least.
        tolerance: how far above 0.5 still counts as chance.
        pairs: pairs of each step (the weights of the mean); None counts every step alike and
            leaves ``min_pairs`` out.
        min_pairs: pairs the mean must cover; not judged before the history holds them.

    Returns:
        The finding, or None.
    """
    if len(accuracies) < max(after_steps, window):
        return None
    weights = list(pairs) if pairs is not None else [1] * len(accuracies)
    min_pairs = min_pairs if pairs is not None else 0
    steps, covered = 0, 0
    while steps < len(accuracies) and (steps < window or covered < min_pairs):
        steps += 1
        covered += weights[-steps]
    if covered < min_pairs:
        return None
    recent_pairs = zip(accuracies[-steps:], weights[-steps:], strict=True)
    recent = sum(accuracy * n for accuracy, n in recent_pairs) / covered
    if recent > 0.5 + tolerance:
        return None
    over = f"{steps} steps" if pairs is None else f"{steps} steps ({covered} pairs)"
    return (
        f"preference accuracy averaged {recent:.2f} over the last {over}, no better than "
        f"chance after {len(accuracies)} steps: the policy is not learning the preference. Check "
        "the learning rate (too low to move anything, or so high it diverged), that chosen and "
        "rejected are not swapped, identical or ties, and the chat-template boundary between "
        "prompt and reply (lit-dpo data, samples/*.md)"
    )


def loss_scale_skips(scales: Sequence[float], max_skips: int, window: int) -> str | None:
    """fp16's GradScaler skipping steps repeatedly: its scale fell ``max_skips`` times lately.

    The scaler halves its scale and skips the optimizer step whenever gradients overflow; a few
    skips while it finds its level are normal, a steady stream means updates are being lost.

    Args:
        scales: the scaler's scale after each step.
        max_skips: decreases within ``window`` readings that raise the alarm.
        window: readings looked at.

    Returns:
        The finding, or None.
    """
    recent = list(scales[-(window + 1) :])
    skips = sum(after < before for before, after in zip(recent, recent[1:], strict=False))
    if skips < max_skips:
        return None
    return (
        f"the fp16 loss scaler skipped {skips} of the last {len(recent) - 1} steps (scale now "
        f"{recent[-1]:g}): those updates are lost to overflowing gradients. Lower the learning "
        "rate, clip gradients (trainer.gradient_clip_val), or train in bf16 on a GPU that has "
        "it (compute capability 8.0+)"
    )


def mostly_truncated(split: str, truncated: int, pairs: int, max_share: float) -> str | None:
    """More than ``max_share`` of a split's pairs were cut to ``max_length``.

    Returns:
        The finding, or None.
    """
    if pairs == 0 or truncated / pairs <= max_share:
        return None
    return (
        f"{split}: {truncated} of {pairs} pairs ({truncated / pairs:.0%}) were truncated to "
        "data.max_length: replies lose the ends that often decide the preference. Raise "
        "data.max_length (lit-dpo preflight says what fits), or filter out long pairs"
    )


def default_loss_range(settings: Mapping | Objective) -> tuple[float, float] | None:
    """A sane range of the mean preference loss of an objective (or DPOModule's settings), or
    None.

    Each loss type's record (``lit_dpo.train.losses.registry``) gives a range around where it
    starts (policy = reference), or none where no range is sane (a loss bounded by construction,
    or one holding an NLL whose scale depends on the model and data; then only non-finite values
    are checked). A list of objectives gets the weighted sum of their ranges, or None if one has
    none.
    """
    objective = settings if isinstance(settings, Objective) else Objective.from_settings(settings)
    low = high = 0.0
    for record, weight in zip(objective.records, objective.weights, strict=False):
        if record.start_range is None:
            return None
        span = record.start_range(objective)
        low, high = low + weight * span[0], high + weight * span[1]
    return low, high


@rank_zero_only
def _warn_on_rank_zero(message: str, *args) -> None:
    log.warning(message, *args)


class HealthAlarms(Callback):
    """Warn (once each) when training shows a known DPO failure; optionally stop the run.

    Args:
        enabled: watch the run at all.
        window: steps averaged by each check.
        logps_drop: share of its magnitude the chosen log-prob may lose, with the rejected
            falling too, before the likelihood-displacement alarm.
        loss_range: sane range of the mean loss of the preference objective (without
            ``model.objective.sft_weight``'s SFT term); by default one suited to
            ``model.objective.loss_type`` (``default_loss_range``): [0, 2] for sigmoid DPO (which
            starts at 0.69) and hinge, [0, 2 (1 / (2 beta))^2] for ipo..., none (non-finite
            values only) for apo_zero, apo_down, sft, cpo and orpo.
        margin_range: sane range of the mean reward margin (beta times a log-ratio gap: with
            beta 0.1, 20 is a 200-nat gap); not checked for cpo, whose rewards are raw summed
            log-probs with no reference to start level with.
        chance_after_steps: steps before an accuracy at chance raises the alarm.
        chance_tolerance: accuracy up to 0.5 plus this counts as chance.
        chance_min_pairs: pairs the chance check averages at least (more than ``window`` steps
            when batches are small), so that a run learning hard pairs is not called at chance.
        max_scale_skips: fp16 loss-scale decreases within ``window * 5`` steps that raise the
            alarm.
        max_truncated: share of truncated pairs in a split that raises the alarm.
        stop_on_alarm: stop training at the first alarm.
    """

    def __init__(
        self,
        enabled: bool = True,
        window: int = 10,
        logps_drop: float = 0.1,
        loss_range: tuple[float, float] | None = None,
        margin_range: tuple[float, float] = (-5.0, 20.0),
        chance_after_steps: int = 100,
        chance_tolerance: float = 0.05,
        chance_min_pairs: int = 200,
        max_scale_skips: int = 5,
        max_truncated: float = 0.5,
        stop_on_alarm: bool = False,
    ) -> None:
        self.enabled = enabled
        self.window = window
        self.logps_drop = logps_drop
        self.loss_range = tuple(loss_range) if loss_range is not None else None
        self.margin_range: tuple[float, float] | None = tuple(margin_range)
        # model.objective.sft_weight: the SFT term taken out of the loss the loss check sees
        self.sft_weight = 0.0
        self.chance_after_steps = chance_after_steps
        self.chance_tolerance = chance_tolerance
        self.chance_min_pairs = chance_min_pairs
        self.max_scale_skips = max_scale_skips
        self.max_truncated = max_truncated
        self.stop_on_alarm = stop_on_alarm
        self.history: dict[str, list[float]] = {key: [] for key in TRAIN_KEYS}
        # pairs of each step that logged an accuracy, all processes: the weights of the chance
        # check's mean, one per entry of history["train/rewards/accuracies"]
        self.pairs: list[int] = []
        self.scales: list[float] = []
        # alarm name -> (step, message), in the order raised
        self.raised: dict[str, tuple[int, str]] = {}
        self.reference = describe_reference(None)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled:
            return
        self.reference = describe_reference(getattr(pl_module, "reference_adapter", None))
        objective = getattr(pl_module, "objective", None)
        if not isinstance(objective, Objective):
            objective = Objective.from_settings(getattr(pl_module, "hparams", {}))
        if self.loss_range is None:
            # no sane range: only non-finite values are caught
            self.loss_range = default_loss_range(objective) or (-math.inf, math.inf)
        if any(record.rewards == "sum" for record in objective.records):
            # raw summed log-probs (cpo), with no reference to start level with
            self.margin_range = None
        self.sft_weight = objective.sft_weight
        report = getattr(trainer.datamodule, "report", None) or {}
        for split, counts in report.items():
            finding = mostly_truncated(
                split, counts.get("truncated", 0), counts.get("pairs", 0), self.max_truncated
            )
            self._raise(trainer, f"truncated:{split}", finding)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        metrics = trainer.callback_metrics
        undefined = undefined_keys(metrics, trainer.world_size)
        for key in TRAIN_KEYS:
            if key in metrics and key not in undefined:
                self.history[key].append(float(metrics[key]))
        if "train/rewards/accuracies" in metrics:
            self.pairs.append(num_pairs(batch) * trainer.world_size)
        if self.sft_weight and "train/loss" in metrics and "train/sft_loss" in metrics:
            self.history["train/loss"][-1] -= self.sft_weight * float(metrics["train/sft_loss"])
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        if scaler is not None and scaler.is_enabled():
            self.scales.append(float(scaler.get_scale()))
        for name, finding in self.findings():
            if finding is not None:
                finding += f" (reference: {self.reference})"
            self._raise(trainer, name, finding)

    def findings(self) -> list[tuple[str, str | None]]:
        """Every check on the history so far, as (alarm name, finding or None)."""
        h, w = self.history, self.window
        loss_range = self.loss_range or (0.0, 2.0)
        margin_range = self.margin_range or (-math.inf, math.inf)
        return [
            ("loss", out_of_range("loss", h["train/loss"], *loss_range, w)),
            (
                "margin",
                out_of_range("reward margin", h["train/rewards/margins"], *margin_range, w),
            ),
            (
                "falling_logps",
                falling_logps(
                    h["train/logps/chosen"],
                    h["train/logps/rejected"],
                    w,
                    self.logps_drop,
                    # the same pairs under the reference, where the objective ran one
                    h["train/reference_logps/chosen"] or None,
                    h["train/reference_logps/rejected"] or None,
                ),
            ),
            (
                "chance",
                chance_accuracy(
                    h["train/rewards/accuracies"],
                    self.chance_after_steps,
                    w,
                    self.chance_tolerance,
                    self.pairs,
                    self.chance_min_pairs,
                ),
            ),
            ("loss_scale", loss_scale_skips(self.scales, self.max_scale_skips, 5 * w)),
        ]

    def _raise(self, trainer: Trainer, name: str, finding: str | None) -> None:
        if finding is None or name in self.raised:
            return
        step = trainer.global_step
        self.raised[name] = (step, finding)
        stopping = "; stopping (health.stop_on_alarm)" if self.stop_on_alarm else ""
        _warn_on_rank_zero("health alarm at step %d: %s%s", step, finding, stopping)
        # Under DDP every rank sees the same step metrics (synced across ranks), so every rank
        # raises the same alarm at the same step and stops together.
        if self.stop_on_alarm:
            trainer.should_stop = True
