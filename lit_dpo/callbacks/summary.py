"""The table ``fit`` prints when it ends: work done, speed, memory, validation, alarms, files."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_dpo.callbacks.adapters import SaveAdapter
from lit_dpo.callbacks.health import HealthAlarms


class RunSummary(Callback):
    """Print one short table when fit ends: work done, speed, memory, validation, alarms, files."""

    def __init__(self) -> None:
        self.pairs = 0
        self.batches = 0
        self.validations: list[dict[str, float]] = []
        self._start = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # at each step every rank trains on a batch of this size (PairSampler evens them out)
        self.pairs += batch["input_ids"].shape[0] // 2 * trainer.world_size
        self.batches += 1

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.validations.append({"step": trainer.global_step, **metrics})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # log_dir is a broadcast under DDP: every rank must read it
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        alarms = next((c.raised for c in trainer.callbacks if isinstance(c, HealthAlarms)), {})
        adapter = next((c.dirpath for c in trainer.callbacks if isinstance(c, SaveAdapter)), None)
        root = Path(trainer.default_root_dir)
        # what this fit leaves behind: the CLI writes fit_metrics.json after fit when it validated
        reports = [str(root / "fit_metrics.json")] if self.validations else []
        if any(isinstance(logger, CSVLogger) for logger in trainer.loggers):
            reports.append(str(Path(log_dir) / "metrics.csv"))
        print(
            summary_table(
                steps=trainer.global_step,
                batches=self.batches,
                pairs=self.pairs,
                seconds=time.perf_counter() - self._start,
                peak_memory=_peak_memory(pl_module),
                validations=self.validations,
                alarms=alarms,
                adapter=str(adapter or root / "adapter"),
                reports=reports,
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
) -> str:
    """The run summary: one line per fact, best validation values with their step."""
    label, peak = peak_memory
    rows = [
        ("steps", f"{steps} optimizer steps ({batches} batches)"),
        ("pairs seen", f"{pairs}"),
        ("wall time", _duration(seconds)),
        ("pairs/s", f"{pairs / seconds:.2f}" if seconds > 0 else "-"),
        ("peak memory", f"{peak / 2**30:.2f} GiB ({label})"),
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


def _peak_memory(pl_module: LightningModule) -> tuple[str, float]:
    import torch

    if pl_module.device.type == "cuda":
        return "CUDA, max reserved", float(torch.cuda.max_memory_reserved(pl_module.device))
    # Linux reports ru_maxrss in KiB
    return "peak RSS", float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
