"""The table ``fit`` prints when it ends: work done, speed, memory, validation, alarms, files."""

from __future__ import annotations

import time
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from lit_dpo.callbacks.adapters import SaveAdapter
from lit_dpo.callbacks.health import HealthAlarms
from lit_dpo.callbacks.history import MetricHistory
from lit_dpo.callbacks.loggers import logger_destinations
from lit_dpo.callbacks.plot_metrics import PlotMetrics
from lit_dpo.callbacks.progress_log import peak_memory
from lit_dpo.models.reference import describe_reference
from lit_dpo.progress import duration
from lit_dpo.train.pairs import num_pairs


class RunSummary(Callback):
    """Print one short table when fit ends: work done, speed, memory, validation, alarms, files.

    The validation rows come from the run's :class:`MetricHistory`, whatever the logger."""

    def __init__(self) -> None:
        self.pairs = 0
        self.batches = 0
        self._start = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        MetricHistory.of(trainer)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # at each step every rank trains on a batch of this size (PairSampler evens them out)
        self.pairs += num_pairs(batch) * trainer.world_size
        self.batches += 1

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # log_dir is a broadcast under DDP: every rank must read it
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        alarms = next((c.raised for c in trainer.callbacks if isinstance(c, HealthAlarms)), {})
        adapter = next((c.dirpath for c in trainer.callbacks if isinstance(c, SaveAdapter)), None)
        root = Path(trainer.default_root_dir)
        # numbered by optimizer steps done, as checkpoints are (step=10.ckpt)
        validations = [
            {**v, "step": v["optimizer_steps"]} for v in MetricHistory.of(trainer).validations()
        ]
        # what this fit leaves behind: the CLI writes fit_metrics.json after fit when it validated
        reports = [str(root / "fit_metrics.json")] if validations else []
        reports += [
            str(Path(log_dir or root) / c.filename)
            for c in trainer.callbacks
            if isinstance(c, PlotMetrics)
        ]
        reports += logger_destinations(trainer)
        print(
            summary_table(
                steps=trainer.global_step,
                batches=self.batches,
                pairs=self.pairs,
                seconds=time.perf_counter() - self._start,
                peak_memory=peak_memory(pl_module),
                validations=validations,
                alarms=alarms,
                adapter=str(adapter or root / "adapter"),
                reports=reports,
                reference=describe_reference(getattr(pl_module, "reference_adapter", None)),
            ),
            flush=True,
        )


VAL_ROWS = (
    ("val log-prob accuracy, policy", "val/logps_accuracy/policy"),
    ("val log-prob accuracy, reference", "val/logps_accuracy/reference"),
    ("val reward accuracy", "val/rewards/accuracies"),
    ("val reward margin", "val/rewards/margins"),
)


def summary_table(
    steps: int,
    batches: int,
    pairs: int,
    seconds: float,
    peak_memory: tuple[str, float],
    validations: list[dict[str, float]],
    alarms: dict[str, tuple[int, str]],
    adapter: str,
    reports: list[str],
    reference: str = "the base (adapters off)",
) -> str:
    """The run summary: one line per fact, best validation values with their step; ``reference``
    says what the policy was measured against."""
    label, peak = peak_memory
    rows = [
        ("steps", f"{steps} optimizer steps ({batches} batches)"),
        ("pairs seen", f"{pairs}"),
        ("wall time", duration(seconds)),
        ("pairs/s", f"{pairs / seconds:.2f}" if seconds > 0 else "-"),
        ("peak memory", f"{peak / 2**30:.2f} GiB ({label})"),
        ("reference", reference),
    ]
    for name, key in VAL_ROWS:
        values = [(v[key], int(v["step"])) for v in validations if key in v]
        if values:
            best, best_step = max(values)
            rows.append((name, f"final {values[-1][0]:.3f}, best {best:.3f} (step {best_step})"))
        else:  # sft alone defines no reward
            rows.append((name, "not logged" if validations else "no validation ran"))
    if alarms:
        raised = ", ".join(f"{name} (step {step})" for name, (step, _) in alarms.items())
        rows.append(("alarms", f"{len(alarms)}: {raised}"))
    else:
        rows.append(("alarms", "none"))
    rows += [("adapter", adapter), ("reports", ", ".join(reports) or "none")]
    return "\n".join(["\nrun summary"] + [f"  {name:34}{value}" for name, value in rows])
