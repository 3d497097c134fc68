"""The run's own record of its metrics, kept in memory as it goes, whatever the logger.

``MetricHistory`` keeps every ``train/*`` value of every batch and every ``val/*`` value of every
validation as ``(step, name, value)``, with the step Lightning gives loggers (so a point here is
the point at that step in metrics.csv, TensorBoard, MLflow or W&B). The plot (``PlotMetrics``),
the run summary (``RunSummary``), the reference-vs-policy table and the model card read it, so
they work with any logger, several, or none (``--trainer.logger false``). It is saved in
checkpoints: a resumed fit's plot holds the steps before the interruption too.
"""

from __future__ import annotations

from lightning import Callback, LightningModule, Trainer

from lit_dpo.compat import logged_step
from lit_dpo.reporting.curves import Series


class MetricHistory(Callback):
    """Every ``train/*`` value per batch and ``val/*`` value per validation, as (step, name,
    value), in the order logged."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []
        # logged step of a validation -> optimizer steps done when it ran (checkpoint names use
        # these: step=10.ckpt holds the weights validated at logged step 9)
        self.optimizer_steps: dict[int, int] = {}

    @staticmethod
    def of(trainer: Trainer) -> MetricHistory:
        """The trainer's MetricHistory; one is added to its callbacks when it has none."""
        for callback in trainer.callbacks:
            if isinstance(callback, MetricHistory):
                return callback
        history = MetricHistory()
        trainer.callbacks.append(history)
        return history

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record(trainer, "train/")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val/")
            self.optimizer_steps[logged_step(trainer)] = trainer.global_step

    def _record(self, trainer: Trainer, prefix: str) -> None:
        step = logged_step(trainer)
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix):
                self.rows.append((step, name, float(value)))

    def series(self) -> Series:
        """``{name: [(step, value), ...]}``, the form :mod:`lit_dpo.reporting.curves` draws."""
        series: Series = {}
        for step, name, value in self.rows:
            series.setdefault(name, []).append((step, value))
        return series

    def validations(self) -> list[dict[str, float]]:
        """One dict per validation run, in order: ``{"step": logged step, "optimizer_steps":
        steps done when it ran, "val/loss": ...}``."""
        runs: dict[int, dict[str, float]] = {}
        for step, name, value in self.rows:
            if name.startswith("val/"):
                run = runs.setdefault(
                    step, {"step": step, "optimizer_steps": self.optimizer_steps.get(step, step)}
                )
                run[name] = value
        return list(runs.values())

    def last_validation(self) -> dict[str, float]:
        """The ``val/*`` values of the latest validation (no ``step``); empty when none ran."""
        runs = self.validations()
        return {k: v for k, v in runs[-1].items() if k.startswith("val/")} if runs else {}

    def state_dict(self) -> dict[str, list]:
        steps, names, values = zip(*self.rows, strict=True) if self.rows else ((), (), ())
        return {
            "steps": list(steps),
            "names": list(names),
            "values": list(values),
            "optimizer_steps": sorted(self.optimizer_steps.items()),
        }

    def load_state_dict(self, state_dict: dict[str, list]) -> None:
        self.rows = list(
            zip(state_dict["steps"], state_dict["names"], state_dict["values"], strict=True)
        )
        self.optimizer_steps = dict(state_dict.get("optimizer_steps", []))
