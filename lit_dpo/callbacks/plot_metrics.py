"""``PlotMetrics``: the run's training curves as a PNG when fit ends (drawn by
:mod:`lit_dpo.reporting.curves`, which ``lit-dpo plot`` uses too)."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from lit_dpo.callbacks.history import MetricHistory
from lit_dpo.reporting.curves import plot_metrics

log = logging.getLogger(__name__)


class PlotMetrics(Callback):
    """Write ``<log_dir>/metrics.png`` when fit ends, from the run's own metric history
    (:class:`~lit_dpo.callbacks.history.MetricHistory`): with any logger, or none, it holds every
    step's training values and every validation.

    Args:
        filename: name of the PNG in the logger's folder (``trainer.default_root_dir`` without a
            logger).
    """

    def __init__(self, filename: str = "metrics.png") -> None:
        self.filename = filename

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        MetricHistory.of(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # log_dir is a broadcast under DDP: every rank must read it
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        series = MetricHistory.of(trainer).series()
        if not series:
            log.warning("PlotMetrics: no metrics were logged; no plot")
            return
        path = plot_metrics(series, log_dir / self.filename, str(log_dir))
        log.info("training curves written to %s", path)
