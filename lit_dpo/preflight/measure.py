"""How long a fit takes: the batches Lightning will run, and a few timed for real (``--measure``).

``run_plan`` and ``run_seconds`` are pure: trainer settings and per-batch seconds in, batches and
seconds out. ``measure_steps`` runs a few training and validation batches of the configured model
on this machine with ``BatchTimer`` and reports their time and the peak memory.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from lightning import Callback, LightningDataModule, LightningModule, Trainer

from lit_dpo.data.batches import IGNORE_INDEX
from lit_dpo.errors import ConfigError
from lit_dpo.preflight.memory import row_lengths
from lit_dpo.train.forward import lays_pairs_end_to_end
from lit_dpo.train.packing import PAD, pack_pairs
from lit_dpo.train.pairs import split_pairs


@dataclass(frozen=True)
class RunPlan:
    """How many batches a fit runs, from the trainer settings."""

    train_batches: int
    optimizer_steps: int
    validations: int
    val_batches: int


def run_plan(
    train_pairs: int,
    val_pairs: int,
    batch_size: int,
    accumulate: int = 1,
    max_epochs: int | None = 1,
    max_steps: int | None = -1,
    val_check_interval: float | int = 1.0,
    check_val_every_n_epoch: int | None = 1,
    num_sanity_val_steps: int = 2,
) -> RunPlan:
    """Batches of a fit as Lightning runs them; ``validations`` counts the sanity check.

    Validation runs at each check a run reaches (``val_check_interval`` a share of an epoch or a
    number of batches), on every ``check_val_every_n_epoch``-th epoch; a run that stops at
    ``max_steps`` mid-epoch skips the checks after it. ``limit_*_batches`` are not modelled.
    """
    per_epoch = math.ceil(train_pairs / batch_size)
    epochs = max_epochs if max_epochs not in (None, -1) else 1000
    train_batches = per_epoch * epochs
    if max_steps is not None and max_steps > 0:
        train_batches = min(train_batches, max_steps * accumulate)
    if isinstance(val_check_interval, float):
        checks_per_epoch = max(1, int(1 / val_check_interval)) if val_check_interval < 1 else 1
    else:
        checks_per_epoch = max(1, per_epoch // val_check_interval)
    checks = train_batches * checks_per_epoch // per_epoch
    validations = checks // (check_val_every_n_epoch or 1)
    return RunPlan(
        train_batches=train_batches,
        optimizer_steps=math.ceil(train_batches / accumulate),
        validations=validations + (1 if num_sanity_val_steps else 0),
        val_batches=math.ceil(val_pairs / batch_size),
    )


def run_seconds(
    plan: RunPlan, train_batch_s: float, val_batch_s: float, sanity_batches: int = 2
) -> float:
    """Seconds of a fit: every train batch, every validation run, the sanity check's batches."""
    full_validations = max(0, plan.validations - (1 if sanity_batches else 0))
    sanity = min(sanity_batches, plan.val_batches) * val_batch_s
    return (
        plan.train_batches * train_batch_s
        + full_validations * plan.val_batches * val_batch_s
        + sanity
    )


class BatchTimer(Callback):
    """Seconds of each training and validation batch, and the padded row length of each
    training batch (packed rows under ``share_prompt``) and the tokens it ran."""

    def __init__(self, packed: bool) -> None:
        self.packed = packed
        self.seconds: list[float] = []
        self.widths: list[int] = []
        self.tokens: list[int] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self.widths.append(batch_row_length(batch, self.packed))
        self.tokens.append(batch_tokens(batch, self.packed, pl_module.policy.get_base_model()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *_) -> None:
        self._start = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self.seconds.append(time.perf_counter() - self._start)


@dataclass(frozen=True)
class Measurement:
    """What ``measure_steps`` saw: seconds per batch (first batch, the warm-up, left out), the
    peak memory, and the padded row length of each training batch."""

    train_batch_s: float
    val_batch_s: float
    peak: float
    peak_label: str
    widths: list[int]
    device: str
    tokens: list[int]


def measure_steps(
    model: LightningModule,
    datamodule: LightningDataModule,
    trainer_config: Any,
    packed: bool,
    steps: int,
) -> Measurement:
    """Train ``steps`` batches, then validate two, with the config's accelerator and precision.

    Raises:
        ConfigError: the config trains on a GPU and this machine has none.
    """
    import torch

    accelerator = str(trainer_config.accelerator)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--measure runs steps on this machine, which has no GPU: add --trainer.accelerator=cpu "
            "(and a smaller --model.model) to time it on the CPU"
        )
    common = {
        "accelerator": accelerator,
        "devices": 1,
        "precision": trainer_config.precision,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tempfile.mkdtemp(prefix="lit-dpo-preflight-"),
    }
    train_timer, val_timer = BatchTimer(packed), BatchTimer(packed)
    Trainer(
        max_steps=steps,
        limit_val_batches=0,
        gradient_clip_val=trainer_config.gradient_clip_val,
        callbacks=[train_timer],
        **common,
    ).fit(model, datamodule)
    Trainer(limit_val_batches=2, callbacks=[val_timer], **common).validate(
        model, datamodule, verbose=False
    )
    if torch.cuda.is_available() and accelerator != "cpu":
        peak, label = torch.cuda.max_memory_reserved(), "CUDA memory reserved"
    else:
        # Linux reports ru_maxrss in KiB
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        label = "peak RSS of this process"
    return Measurement(
        train_batch_s=_steady(train_timer.seconds),
        val_batch_s=_steady(val_timer.seconds),
        peak=float(peak),
        peak_label=label,
        widths=train_timer.widths,
        tokens=train_timer.tokens,
        device="cpu" if label.startswith("peak RSS") else "cuda",
    )


def batch_row_length(batch: dict, packed: bool) -> int:
    """Padded row length of a collated batch, or of its packed rows under ``share_prompt``."""
    lengths = batch["attention_mask"].sum(-1)
    replies = (batch["labels"] != IGNORE_INDEX).sum(-1)
    prompts, _ = split_pairs(lengths - replies)
    chosen, rejected = split_pairs(replies)
    rows = row_lengths(prompts.tolist(), chosen.tolist(), rejected.tolist(), packed)
    return max(rows) if packed else int(batch["input_ids"].shape[1])


def batch_tokens(batch: dict, packed: bool, causal_lm) -> int:
    """Tokens the policy runs for a collated batch: its padded rows, or under ``share_prompt`` its
    packed rows, padded or laid end to end as ``lit_dpo.train.forward`` lays them."""
    if not packed:
        return int(batch["input_ids"].numel())
    rows = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"])
    if lays_pairs_end_to_end(causal_lm, rows):
        return int((rows.segments != PAD).sum())
    return int(rows.segments.numel())


def _steady(seconds: list[float]) -> float:
    kept = seconds[1:] or seconds
    return sum(kept) / max(1, len(kept))


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
