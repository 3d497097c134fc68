"""The optimizer over a policy's trainable (LoRA) weights and its learning-rate schedule.

The optimizer comes in as LightningCLI's ``OptimizerCallable`` (``model.optimizer``); the schedule
is transformers' (``get_scheduler``: warmup, then cosine, linear or constant), stepped once per
optimizer step, as TRL's trainer steps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from transformers import get_scheduler

from lit_dpo.train.settings import OptimizationSettings

# transformers' name of each schedule, where it differs
SCHEDULE_NAMES = {"constant": "constant_with_warmup"}


def default_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW at 5e-6 (TRL's DPOConfig default), for a DPOModule built without an optimizer."""
    return torch.optim.AdamW(params, lr=5e-6)


def optimizer_config(
    optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    trainable: list[torch.nn.Parameter],
    settings: OptimizationSettings,
    total_steps: int,
) -> dict[str, Any]:
    """``configure_optimizers``' answer: the optimizer and its schedule, stepped every step.

    Args:
        optimizer: builds the optimizer from the parameters (``model.optimizer``).
        trainable: the parameters it updates.
        settings: the schedule (``lr_schedule``) and its warmup share (``warmup_ratio``).
        total_steps: the fit's optimizer steps (``trainer.estimated_stepping_batches``).
    """
    built = optimizer(trainable)
    scheduler = get_scheduler(
        SCHEDULE_NAMES.get(settings.lr_schedule, settings.lr_schedule),
        built,
        num_warmup_steps=int(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
