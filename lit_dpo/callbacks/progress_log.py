"""Progress a log file can hold: one plain line every few steps while fit and validate run.

Lightning's live bar redraws itself in place: on a terminal that is what a user wants, sent to a
file (a batch job, SLURM, ``nohup``, ``make demo > log``) it prints nothing until the end, or a
stream of carriage-return frames. Where stdout is not a terminal, ``ProgressLog`` turns the bar off
and prints lines instead:

    step 5/20 (25%) | epoch 1/1 | loss 0.6812 | reward accuracy 0.625 | 1.93 pairs/s | elapsed 2 min 10 s | ETA 6 min 30 s | peak memory 0.55 GiB (peak RSS)
"""  # noqa: E501

from __future__ import annotations

import resource
import sys
import time
from typing import Literal

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from lit_dpo.progress import duration, is_terminal, quiet_library_bars
from lit_dpo.train.pairs import num_pairs

ProgressMode = Literal["auto", "lines", "bar"]


class ProgressLog(Callback):
    """Print one plain line of how fit or validate goes, where stdout is not a terminal.

    A line is printed at the first optimizer step, then once both ``every_n_steps`` steps and
    ``every_seconds`` seconds have passed since the previous one (whichever is rarer), and at the
    last step; validation prints its own lines by batch, and one with its metrics when it ends.
    Loss and reward accuracy are means over the steps since the previous line.

    Args:
        mode: ``auto``: lines and no live bar when stdout is not a terminal, and the progress bars
            of datasets and transformers off when stderr is not one; on a terminal Lightning's
            bar as usual. ``lines``: always lines, no bars. ``bar``: bars only, no lines.
        every_n_steps: least optimizer steps (validation batches) between two lines. With 1, the
            seconds decide where steps are fast, and a step that takes longer gets its own line.
        every_seconds: least seconds between two lines.
    """

    def __init__(
        self, mode: ProgressMode = "auto", every_n_steps: int = 1, every_seconds: float = 30.0
    ) -> None:
        self.mode = mode
        self.every_n_steps = every_n_steps
        self.every_seconds = every_seconds
        self.lines = False
        self._clock = time.monotonic
        self._reset_window()
        self._train_start = self._validation_start = 0.0
        self._start_step = self._last_step = 0
        self._total_steps: int | float = 0
        self._validation_batches = 0
        self._validation_total = 0
        self._validation_line_time = 0.0
        self._is_global_zero = True

    def apply(self, trainer: Trainer | None = None) -> None:
        """Decide between lines and bars, and turn off the bars lines replace.

        The CLI calls it before a run starts, so that preparing data (tokenizing) and converting
        the embedded model already print lines; ``setup`` calls it again for a Trainer built in
        Python."""
        if self.mode == "bar":
            self.lines = False
            return
        self.lines = self.mode == "lines" or not is_terminal(sys.stdout)
        if self.mode == "lines" or not is_terminal(sys.stderr):
            quiet_library_bars()
        bar = trainer.progress_bar_callback if trainer is not None else None
        if self.lines and bar is not None:
            bar.disable()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.apply(trainer)
        self._is_global_zero = trainer.is_global_zero

    # ----------------------------------------------------------------------------------- train

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._train_start = self._window_start = self._clock()
        self._start_step = self._last_step = trainer.global_step
        self._total_steps = trainer.estimated_stepping_batches
        self._reset_window()
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        steps = f" and {self.every_n_steps} steps" if self.every_n_steps > 1 else ""
        self._print(
            f"training: {self._total_steps} optimizer steps, {epochs} epoch(s), from step "
            f"{self._start_step}; a line at most every {self.every_seconds:g} s{steps}"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self._pairs += num_pairs(batch) * trainer.world_size
        for key in ("train/loss", "train/rewards/accuracies"):
            if key in metrics:
                self._sums[key] = self._sums.get(key, 0.0) + float(metrics[key])
        self._batches += 1
        step = trainer.global_step
        if step == self._last_step:
            return  # a micro-batch of gradient accumulation: no optimizer step yet
        first = self._last_step == self._start_step
        last = step >= self._total_steps
        if first or last or self._due(step - self._last_step):
            self._print(self._train_line(trainer, pl_module))
            self._last_step = step
            self._reset_window()

    def _train_line(self, trainer: Trainer, pl_module: LightningModule) -> str:
        now = self._clock()
        step, total = trainer.global_step, self._total_steps
        done = step - self._start_step
        elapsed = now - self._train_start
        known = total != float("inf")
        parts = [f"step {step}/{total}" + (f" ({step / total:.0%})" if known else "")]
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        parts.append(f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs else ""))
        if "train/loss" in self._sums:
            parts.append(f"loss {self._sums['train/loss'] / self._batches:.4f}")
        if "train/rewards/accuracies" in self._sums:
            parts.append(
                f"reward accuracy {self._sums['train/rewards/accuracies'] / self._batches:.3f}"
            )
        training_seconds = now - self._window_start - self._paused
        if training_seconds > 0:
            parts.append(f"{self._pairs / training_seconds:.2f} pairs/s")
        parts.append(f"elapsed {duration(elapsed)}")
        if done and known and step < total:
            parts.append(f"ETA {duration(elapsed / done * (total - step))}")
        label, peak = peak_memory(pl_module)
        parts.append(f"peak memory {peak / 2**30:.2f} GiB ({label})")
        return " | ".join(parts)

    # ------------------------------------------------------------------------------ validation

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validation_start = self._validation_line_time = self._clock()
        self._validation_batches = 0
        self._validation_total = sum(trainer.num_val_batches)
        total = self._validation_total
        self._print(f"validation at step {trainer.global_step}: {total} batch{'es' * (total != 1)}")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking:
            return
        self._validation_batches += 1
        done, total = self._validation_batches, self._validation_total
        if done >= total or done % self.every_n_steps:
            return
        now = self._clock()
        if now - self._validation_line_time < self.every_seconds:
            return
        self._validation_line_time = now
        elapsed = now - self._validation_start
        self._print(
            f"validation batch {done}/{total} ({done / total:.0%}) | elapsed {duration(elapsed)}"
            f" | ETA {duration(elapsed / done * (total - done))}"
        )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = self._clock() - self._validation_start
        if trainer.state.fn == TrainerFn.FITTING:
            self._paused += seconds  # the step rate counts training time only
        metrics = trainer.callback_metrics
        parts = [f"validation at step {trainer.global_step} done in {duration(seconds)}"]
        for label, key in (
            ("loss", "val/loss"),
            ("reward accuracy", "val/rewards/accuracies"),
            ("log-prob accuracy policy", "val/logps_accuracy/policy"),
            ("reference", "val/logps_accuracy/reference"),
        ):
            if key in metrics:
                parts.append(f"{label} {float(metrics[key]):.4f}")
        self._print(" | ".join(parts))

    # --------------------------------------------------------------------------------- helpers

    def _due(self, steps: int) -> bool:
        return steps >= self.every_n_steps and self._clock() - self._line_time >= self.every_seconds

    def _reset_window(self) -> None:
        self._sums: dict[str, float] = {}
        self._batches = 0
        self._pairs = 0
        self._paused = 0.0
        self._window_start = self._line_time = self._clock()

    def _print(self, line: str) -> None:
        if self.lines and self._is_global_zero:
            print(line, flush=True)


def peak_memory(pl_module: LightningModule) -> tuple[str, float]:
    """(what was measured, bytes): CUDA's peak reserved memory, or the process's peak RSS."""
    import torch

    if pl_module.device.type == "cuda":
        return "CUDA, max reserved", float(torch.cuda.max_memory_reserved(pl_module.device))
    # Linux reports ru_maxrss in KiB
    return "peak RSS", float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
