"""Where a run's loggers put its metrics, said the way a user opens them.

Any Lightning logger works from the config (``trainer.logger``: CSVLogger, TensorBoardLogger,
MLFlowLogger, WandbLogger, several at once, or ``false``); lit-dpo's own reports read the run's
:class:`~lit_dpo.callbacks.history.MetricHistory` instead of any of them. This names, for the run
summary, what each logger wrote.
"""

from __future__ import annotations

from pathlib import Path

from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger


def logger_destinations(trainer: Trainer) -> list[str]:
    """One line per logger of ``trainer``: its files, or its store and run, and how to open them.

    Call it on rank 0 only: the experiment of MLflow and W&B exists there alone."""
    lines = []
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            lines.append(str(Path(logger.log_dir) / "metrics.csv"))
        elif isinstance(logger, TensorBoardLogger):
            lines.append(f"{logger.log_dir} (tensorboard --logdir {logger.root_dir})")
        elif isinstance(logger, MLFlowLogger):
            uri = logger.experiment.tracking_uri
            lines.append(
                f"MLflow run {logger.run_id} in {uri} (mlflow ui --backend-store-uri {uri})"
            )
        elif isinstance(logger, WandbLogger):
            run = logger.experiment
            folder = Path(run.dir).parent
            sync = f"; upload with wandb sync {folder}" if run.offline else ""
            lines.append(f"W&B run {run.id} in {folder}{sync}")
        else:
            lines.append(type(logger).__name__)
    return lines
