"""LightningModule for DPO: wires policy -> log-probs -> loss -> metrics -> optimizer.

One step runs the policy on chosen and rejected together (2B sequences, one forward), then the
same network with adapters disabled and no gradient for the reference log-probs.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from transformers import get_scheduler

from lit_dpo.errors import ConfigError
from lit_dpo.logps import sequence_logps
from lit_dpo.loss import LossType, dpo_loss
from lit_dpo.metrics import ACCURACY_KEYS, MEAN_KEYS, preference_metrics
from lit_dpo.policy import DType, Quantization, load_policy, trainable_summary
from lit_dpo.sources import DEFAULT_MODEL

log = logging.getLogger(__name__)


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=5e-6)


class DPOModule(LightningModule):
    """Direct Preference Optimization of a 4-bit LoRA policy against its own adapter-free base.

    Args:
        model: hub id, local folder or ``embedded:SmolLM2-135M-Instruct``.
        adapter: a saved PEFT adapter to start from (e.g. to validate a trained one).
        quantization: ``nf4`` for QLoRA, ``none`` to keep the base in ``compute_dtype``.
        compute_dtype: dtype of 4-bit matmuls and non-quantized weights; float16 on a T4.
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (updates scale by alpha / r).
        lora_dropout: dropout on LoRA inputs.
        target_modules: modules to adapt; ``all-linear`` is every attention and MLP projection.
        gradient_checkpointing: trade compute for activation memory.
        beta: DPO temperature; larger keeps the policy closer to the reference.
        loss_type: ``sigmoid`` (DPO, cDPO with label_smoothing), ``ipo`` or ``hinge``.
        label_smoothing: cDPO's assumed share of flipped labels, sigmoid only.
        optimizer: optimizer over the LoRA weights, e.g. ``torch.optim.AdamW`` or
            ``bitsandbytes.optim.PagedAdamW8bit`` with its ``lr``.
        lr_schedule: ``cosine``, ``linear`` or ``constant`` after warmup (transformers' schedules).
        warmup_ratio: share of optimizer steps spent warming the learning rate up from zero.
        trust_remote_code: allow model code from the hub.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapter: str | None = None,
        quantization: Quantization = "nf4",
        compute_dtype: DType = "float32",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        target_modules: list[str] | str = "all-linear",
        gradient_checkpointing: bool = True,
        beta: float = 0.1,
        loss_type: LossType = "sigmoid",
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = default_optimizer,
        lr_schedule: Literal["cosine", "linear", "constant"] = "cosine",
        warmup_ratio: float = 0.1,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        problems = []
        if beta <= 0:
            problems.append(f"beta must be positive, got {beta}")
        if not 0 <= label_smoothing < 0.5:
            problems.append(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        if label_smoothing and loss_type != "sigmoid":
            problems.append("label_smoothing applies to loss_type sigmoid only")
        if lora_r < 1:
            problems.append(f"lora_r must be at least 1, got {lora_r}")
        if not 0 <= warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if problems:
            raise ConfigError("model settings: " + "; ".join(problems))
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.policy = None
        self.train_metrics = preference_metrics()
        self.val_metrics = preference_metrics()
        # Checkpoints hold only the trainable LoRA weights (see on_save_checkpoint).
        self.strict_loading = False

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        hp = self.hparams
        self.policy = load_policy(
            hp.model,
            quantization=hp.quantization,
            compute_dtype=hp.compute_dtype,
            adapter=hp.adapter,
            lora_r=hp.lora_r,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules=hp.target_modules,
            gradient_checkpointing=hp.gradient_checkpointing,
            trust_remote_code=hp.trust_remote_code,
            device=self.trainer.strategy.root_device if self._trainer else None,
        )
        log.info("%s: %s", hp.model, trainable_summary(self.policy))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.policy(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        stats = self._dpo_step(batch)
        pairs = batch["input_ids"].shape[0] // 2
        for key in MEAN_KEYS + ("rewards/accuracies",):
            metric = self.train_metrics[key.replace("/", ":")]
            # forward (not update) so Lightning can log this step's value
            metric(*_metric_inputs(key, stats))
            self.log(
                f"train/{key}",
                metric,
                on_step=True,
                on_epoch=False,
                batch_size=pairs,
                prog_bar=key in ("loss", "rewards/accuracies"),
            )
        return stats["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        stats = self._dpo_step(batch)
        pairs = batch["input_ids"].shape[0] // 2
        for key in MEAN_KEYS + ACCURACY_KEYS:
            metric = self.val_metrics[key.replace("/", ":")]
            metric.update(*_metric_inputs(key, stats))
            self.log(f"val/{key}", metric, on_step=False, on_epoch=True, batch_size=pairs)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Per-pair implicit rewards and log-probs of policy and reference."""
        stats = self._dpo_step(batch)
        return {key: value.cpu() for key, value in stats.items() if key != "loss"}

    def configure_optimizers(self):
        if self.policy is None:
            raise ConfigError("configure_model must run before configure_optimizers")
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        optimizer = self.optimizer(trainable)
        total = self.trainer.estimated_stepping_batches
        name = {"constant": "constant_with_warmup"}.get(
            self.hparams.lr_schedule, self.hparams.lr_schedule
        )
        scheduler = get_scheduler(
            name,
            optimizer,
            num_warmup_steps=int(self.hparams.warmup_ratio * total),
            num_training_steps=total,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen base (hundreds of MB, 4-bit) is reloaded from its source; a checkpoint keeps
        # what training changed: the LoRA weights, plus optimizer and scheduler state.
        trainable = {f"policy.{n}" for n, p in self.policy.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k in trainable or "metrics" in k
        }

    def _dpo_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        policy_logps, counts = sequence_logps(logits, batch["labels"])
        del logits
        with torch.no_grad(), self.policy.disable_adapter():
            reference_logits = self(batch["input_ids"], batch["attention_mask"])
            reference_logps, _ = sequence_logps(reference_logits, batch["labels"])
            del reference_logits
        if self.hparams.loss_type == "ipo":
            # IPO is defined on length-normalised log-ratios (as in TRL).
            scale = counts.clamp(min=1)
            policy_in, reference_in = policy_logps / scale, reference_logps / scale
        else:
            policy_in, reference_in = policy_logps, reference_logps
        pairs = policy_logps.shape[0] // 2
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            policy_in[:pairs],
            policy_in[pairs:],
            reference_in[:pairs],
            reference_in[pairs:],
            beta=self.hparams.beta,
            loss_type=self.hparams.loss_type,
            label_smoothing=self.hparams.label_smoothing,
        )
        policy_logps, reference_logps = policy_logps.detach(), reference_logps.detach()
        per_token_policy = policy_logps / counts.clamp(min=1)
        per_token_reference = reference_logps / counts.clamp(min=1)
        return {
            "loss": losses.mean(),
            "losses": losses.detach(),
            "rewards/chosen": chosen_rewards,
            "rewards/rejected": rejected_rewards,
            "rewards/margins": chosen_rewards - rejected_rewards,
            "logps/chosen": policy_logps[:pairs],
            "logps/rejected": policy_logps[pairs:],
            "reference_logps/chosen": reference_logps[:pairs],
            "reference_logps/rejected": reference_logps[pairs:],
            "logps_per_token/chosen": per_token_policy[:pairs],
            "logps_per_token/rejected": per_token_policy[pairs:],
            "reference_logps_per_token/chosen": per_token_reference[:pairs],
            "reference_logps_per_token/rejected": per_token_reference[pairs:],
        }


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


def _metric_inputs(key: str, stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """What the metric logged as ``key`` is updated with."""
    if key in PAIR_SCORES:
        return tuple(stats[name] for name in PAIR_SCORES[key])
    return (stats["losses"] if key == "loss" else stats[key],)
