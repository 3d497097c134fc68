"""LightningModule for DPO: wires policy -> log-probs -> loss -> metrics -> optimizer.

A step reads as one pass down ``lit_dpo/train``: the policy's log-probs of chosen and rejected in
one forward (``forward.batch_logps``), the reference's from the same network with its adapters off
and no gradient (or from a table computed once, ``reference``), the loss (``loss``), the metrics
(``metrics``). Three switches make a step cheaper without changing what it computes
(tests/test_techniques.py checks each against the plain path):

- ``logps_chunk_size``: the output head runs only on scored positions, in chunks, so the batch's
  full-vocabulary logits never exist (``logps.completion_logps``);
- ``share_prompt``: a pair is one row holding the prompt once (``packing.pack_pairs``);
- ``precompute_reference``: reference log-probs come from a table computed once before training
  and cached on disk (``reference.ReferenceTables``), so steps skip the reference forward.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.strategies import FSDPStrategy
from transformers import get_scheduler

from lit_dpo.compat import attached_trainer
from lit_dpo.data.batches import IGNORE_INDEX
from lit_dpo.device import PackedAttention, packed_attention_for, trainer_device
from lit_dpo.errors import ConfigError, NonFiniteError
from lit_dpo.host_memory import release_freed_memory_promptly, trim_freed_memory
from lit_dpo.models.policy import DType, Quantization, load_policy, trainable_summary
from lit_dpo.sources import DEFAULT_MODEL
from lit_dpo.train import nonfinite
from lit_dpo.train.forward import batch_logps, check_hidden_state_scoring
from lit_dpo.train.loss import LossType, dpo_loss
from lit_dpo.train.metrics import ACCURACY_KEYS, MEAN_KEYS, metric_inputs, preference_metrics
from lit_dpo.train.nonfinite import OnNonFinite
from lit_dpo.train.reference import ReferenceTables, lookup
from lit_dpo.train.run_checks import check_run

log = logging.getLogger(__name__)


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=5e-6)


class DPOModule(LightningModule):
    """Direct Preference Optimization of a 4-bit LoRA policy against its reference (adapters off).

    Args:
        model: hub id, local folder or ``embedded:SmolLM2-135M-Instruct``.
        adapter: a saved PEFT adapter folder to start from (e.g. to validate a trained one); it
            must fit the model (same layer shapes).
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
        logps_chunk_size: apply the output head only to scored (completion) positions, this many
            at a time, from the last hidden states: no full-vocabulary logits. null scores full
            logits (needed when the output head itself is adapted).
        share_prompt: run each pair as one row holding the shared prompt once, chosen and
            rejected after it, with a mask that hides chosen from rejected. Needs
            logps_chunk_size and an ``sdpa``, ``eager`` or ``flex_attention`` attention.
        packed_attention: how a packed pair's attention runs: ``mask``, the model's sdpa
            attention with a dense (B, 1, L, L) mask (which keeps sdpa off its fused flash
            kernel on a GPU); ``flex``, FlexAttention with a block mask (a fused kernel that skips
            masked blocks; CUDA only, the whole model then runs it); ``auto``, flex on CUDA GPUs
            of compute capability 8.0 and newer, mask elsewhere (CPU, T4).
        precompute_reference: compute the reference log-probs of the train and validation pairs
            in one no-grad pass before training, cache them on disk (``LIT_DPO_CACHE``) and skip
            the reference forward in every step. Needs batches carrying ``pair_index``
            (PreferenceDataModule's do). Under DDP each rank scores its share of the pairs and
            rank 0 writes the cache; not available under FSDP.
        quant_storage: dtype holding the packed 4-bit weights; ``bfloat16`` (with
            ``compute_dtype: bfloat16`` and ``trainer.precision: bf16-true``) for FSDP, which
            shards float tensors of one dtype per wrapped block; null keeps uint8.
        on_nonfinite: what a NaN or infinite loss or gradient does: ``stop`` raises, naming the
            step and what to try; ``skip`` drops that optimizer step, warns and counts it in
            ``train/skipped_steps``. Either way the bad step is never applied.
        allow_pickle: also load model and adapter weights stored as pickles (``.bin``); off,
            only safetensors are read.
        return_freed_memory: on a CPU, have glibc hand freed tensor memory back to the system
            as it is freed and trim its heap after each training batch, instead of keeping a
            forward's worth of freed activations resident (about as much again as the live
            ones); no effect on a GPU or where glibc is not the allocator.
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
        logps_chunk_size: int | None = 512,
        share_prompt: bool = True,
        packed_attention: PackedAttention = "auto",
        precompute_reference: bool = False,
        quant_storage: DType | None = None,
        on_nonfinite: OnNonFinite = "stop",
        allow_pickle: bool = False,
        return_freed_memory: bool = True,
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
        if logps_chunk_size is not None and logps_chunk_size < 1:
            problems.append(f"logps_chunk_size must be positive or null, got {logps_chunk_size}")
        if share_prompt and logps_chunk_size is None:
            problems.append("share_prompt needs logps_chunk_size (scores hidden states)")
        if packed_attention != "auto" and not share_prompt:
            problems.append(f"packed_attention {packed_attention} applies to share_prompt only")
        if quant_storage is not None and quantization != "nf4":
            problems.append("quant_storage applies to quantization nf4 only")
        if problems:
            raise ConfigError("model settings: " + "; ".join(problems))
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.policy = None
        # a step's logged value covers every rank's batch (one all-gather per metric under DDP)
        self.train_metrics = preference_metrics(dist_sync_on_step=True)
        self.val_metrics = preference_metrics()
        # Checkpoints hold only the trainable LoRA weights (see on_save_checkpoint).
        self.strict_loading = False
        # reference log-probs by stage and pair_index, when precompute_reference is on
        self.reference_tables = ReferenceTables()
        # optimizer steps dropped for a non-finite loss or gradient (on_nonfinite skip)
        self.skipped_steps = 0
        self._skip_optimizer_step = False

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        hp, trainer = self.hparams, attached_trainer(self)
        if hp.precompute_reference and trainer and isinstance(trainer.strategy, FSDPStrategy):
            # its pass runs in a hook, outside FSDP's forward, where each rank holds a shard only
            raise ConfigError(
                "model.precompute_reference does not work with the fsdp strategy; set it false "
                "or train with trainer.strategy ddp"
            )
        if trainer is not None:
            check_run(hp, trainer)
        device = trainer_device(trainer.strategy.root_device if trainer else torch.device("cpu"))
        flex = hp.share_prompt and packed_attention_for(hp.packed_attention, device) == "flex"
        if hp.return_freed_memory and device.kind == "cpu":
            # before loading, so that no freed block of the load or the steps stays resident
            release_freed_memory_promptly()
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
            device=trainer.strategy.root_device if trainer else None,
            quant_storage=hp.quant_storage,
            allow_pickle=hp.allow_pickle,
            attn_implementation="flex_attention" if flex else None,
        )
        log.info("%s: %s", hp.model, trainable_summary(self.policy))
        if hp.logps_chunk_size is not None:
            check_hidden_state_scoring(self.policy, hp.share_prompt)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.policy(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        stats = self._dpo_step(batch, "train")
        # one flag reduced over ranks, so that all stop or skip together
        finite = bool(torch.isfinite(stats["loss"]))
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            return self._nonfinite_loss(stats["loss"], batch, batch_idx)
        pairs = batch["input_ids"].shape[0] // 2
        for key in MEAN_KEYS + ("rewards/accuracies",):
            metric = self.train_metrics[key.replace("/", ":")]
            # forward (not update) so Lightning can log this step's value
            metric(*metric_inputs(key, stats))
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
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def _evaluation_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        # test logs under val/ too: the same metrics, on whichever split the loader holds
        stats = self._dpo_step(batch, stage)
        pairs = batch["input_ids"].shape[0] // 2
        for key in MEAN_KEYS + ACCURACY_KEYS:
            metric = self.val_metrics[key.replace("/", ":")]
            metric.update(*metric_inputs(key, stats))
            self.log(f"val/{key}", metric, on_step=False, on_epoch=True, batch_size=pairs)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Per-pair implicit rewards and log-probs of policy and reference."""
        stats = self._dpo_step(batch, "predict")
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
        trainable = {
            # FSDP's wrappers are in the module's names but not in the state dict's
            f"policy.{n.replace('_fsdp_wrapped_module.', '')}"
            for n, p in self.policy.named_parameters()
            if p.requires_grad
        }
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k in trainable or "metrics" in k
        }
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = checkpoint.get("skipped_steps", 0)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Runs after backward (and DDP's all-reduce) and after AMP unscaling, before the step.
        skip, self._skip_optimizer_step = self._skip_optimizer_step, False
        if not skip and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            named = [(n, p.grad) for n, p in self.policy.named_parameters() if p.grad is not None]
            if not nonfinite.all_finite(grad for _, grad in named):
                name, kind = nonfinite.first_nonfinite(named)
                where = f"gradient of {name} is {kind}"
                if self.hparams.on_nonfinite == "stop":
                    raise NonFiniteError(
                        nonfinite.stop_message(
                            "gradient", where, self.global_step, str(self.trainer.precision)
                        )
                    )
                log.warning("step %d skipped: %s", self.global_step + 1, where)
                skip = True
        if skip:
            # optimizers leave parameters without a gradient untouched (no momentum, no decay)
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, batch_size=1)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.hparams.return_freed_memory and self.device.type == "cpu":
            # what the step freed below the mmap threshold, so the next step starts from less
            trim_freed_memory()

    def on_train_start(self) -> None:
        if self.hparams.precompute_reference:
            self._prepare_reference_table("train", self.trainer.train_dataloader)

    def on_validation_start(self) -> None:
        loaders = self.trainer.val_dataloaders
        # with several validation loaders a batch does not say whose pair_index it carries
        if self.hparams.precompute_reference and not isinstance(loaders, list | tuple):
            self._prepare_reference_table("val", loaders)

    def _nonfinite_loss(
        self, loss: torch.Tensor, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """Stop, or mark this optimizer step skipped and back-propagate zero."""
        value = f"is {loss.item()}" if not torch.isfinite(loss) else "is not finite on another rank"
        where = f"the loss {value}; epoch {self.current_epoch}, batch {batch_idx}"
        if "pair_index" in batch:
            where += f", train pairs {batch['pair_index'].tolist()}"
        if self.hparams.on_nonfinite == "stop":
            raise NonFiniteError(
                nonfinite.stop_message("loss", where, self.global_step, str(self.trainer.precision))
            )
        log.warning("step %d skipped: %s", self.global_step + 1, where)
        self._skip_optimizer_step = True
        return nonfinite.zero_loss(p for p in self.policy.parameters() if p.requires_grad)

    def _dpo_step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        """One pass down the layers: log-probs of policy and reference -> loss -> statistics."""
        policy_logps = self._policy_logps(batch)
        counts = (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1)
        table = self.reference_tables.get(stage)
        if table is not None:
            reference_logps = lookup(table, batch["pair_index"]).to(policy_logps)
        else:
            reference_logps = self._reference_logps(batch)
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

    def _policy_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(2B,) summed completion log-probs under the policy (adapters on), with gradient."""
        hp = self.hparams
        return batch_logps(self.policy, batch, hp.logps_chunk_size, hp.share_prompt)

    def _reference_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(2B,) summed completion log-probs under the reference: the same network with its
        adapters off, without gradient."""
        hp = self.hparams
        with torch.no_grad(), self.policy.disable_adapter():
            return batch_logps(self.policy, batch, hp.logps_chunk_size, hp.share_prompt)

    def _prepare_reference_table(self, stage: str, loader) -> None:
        """Reference log-probs of every pair of ``stage``, from the disk cache or one pass."""
        hp = self.hparams
        # hooks run outside the precision plugin's autocast, which a step's reference pass has
        precision_context = self.trainer.precision_plugin.forward_context

        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with precision_context():
                return self._reference_logps(batch)

        settings = {
            "model": hp.model,
            "quantization": hp.quantization,
            "compute_dtype": hp.compute_dtype,
            "device": self.device.type,
            "precision": str(self.trainer.precision),
        }
        self.reference_tables.prepare(
            stage, loader, self.trainer, self.policy.get_base_model(), settings, score
        )
