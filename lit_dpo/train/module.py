"""LightningModule for DPO: wires policy -> log-probs -> loss -> metrics -> optimizer.

A step (``step_statistics``) reads as one pass: the batch -> the policy's scored tokens of chosen
and rejected in one forward (``forward.batch_token_logps``) and the reference's, from the same
network with its adapters off or its frozen reference adapter on (``models.reference``), without
gradient (or from a table computed once, ``reference_table``) -> the objective and its statistics
(``step.objective_step``, pure maths: the losses of ``losses`` with the SFT term, WPO weights,
LD-DPO and BCO's running shift) -> the metrics logged (``metrics``). A reference-free objective
runs no reference in training; in validation the reference still runs once, so its log-prob
accuracy is reported beside the policy's. Three switches make a step cheaper without changing
what it computes (tests/test_techniques.py checks each against the plain path):

- ``logps_chunk_size``: the output head runs only on scored positions, in chunks, so the batch's
  full-vocabulary logits never exist (``logps.completion_tokens``);
- ``share_prompt``: a pair is one row holding the prompt once (``packing.pack_pairs``);
- ``precompute_reference``: reference log-probs come from a table computed once before training
  and cached on disk (``reference_table.ReferenceTables``), so steps skip the reference forward.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from transformers import get_scheduler

from lit_dpo.compat import attached_trainer
from lit_dpo.device import PackedAttention, packed_attention_for, trainer_device
from lit_dpo.errors import ConfigError, NonFiniteError
from lit_dpo.host_memory import (
    DEFAULT_FREED_MEMORY,
    FreedMemory,
    freed_memory_mode,
    release_freed_memory_promptly,
    trim_freed_memory,
)
from lit_dpo.models.policy import DType, Quantization, load_policy, trainable_summary
from lit_dpo.models.reference import REFERENCE_ADAPTER, as_reference, describe_reference
from lit_dpo.sources import DEFAULT_MODEL
from lit_dpo.train import nonfinite
from lit_dpo.train.forward import (
    DEFAULT_CHUNK_SIZE,
    ScoringPath,
    batch_logps,
    batch_token_logps,
    check_hidden_state_scoring,
)
from lit_dpo.train.losses import FDivergence, LossType, Objective
from lit_dpo.train.losses.kto import weight_warning
from lit_dpo.train.metrics import (
    logged_keys,
    metric_inputs,
    preference_metrics,
    unpaired_metric_inputs,
    unpaired_metrics,
)
from lit_dpo.train.nonfinite import OnNonFinite
from lit_dpo.train.pairs import num_pairs
from lit_dpo.train.reference_table import ReferenceTables, lookup
from lit_dpo.train.run_checks import check_run, setting_problems, unpaired_data_problem
from lit_dpo.train.step import BCOShiftState, objective_step
from lit_dpo.train.unpaired_step import paired_step, unpaired_step

log = logging.getLogger(__name__)


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=5e-6)


class DPOModule(LightningModule):
    """Direct Preference Optimization of a 4-bit LoRA policy against its reference: the base
    (adapters off) or a frozen SFT adapter on the same base.

    Args:
        model: hub id, local folder or ``embedded:SmolLM2-135M-Instruct``.
        adapter: a saved PEFT adapter folder to start from (e.g. to validate a trained one); it
            must fit the model (same layer shapes).
        reference: what the policy is measured against: ``base``, the model with its adapters
            off, or ``adapter``, the frozen ``reference_adapter`` (an SFT LoRA adapter).
        reference_adapter: the reference adapter folder, with ``reference: adapter``. The policy
            starts as a trainable copy of it, unless ``adapter`` is set (a run trained from it),
            which must then be the same LoRA on the same base.
        quantization: ``nf4`` for QLoRA, ``none`` to keep the base in ``compute_dtype``.
        compute_dtype: dtype of 4-bit matmuls and non-quantized weights; float16 on a T4.
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (updates scale by alpha / r).
        lora_dropout: dropout on LoRA inputs.
        target_modules: modules to adapt; ``all-linear`` is every attention and MLP projection.
        gradient_checkpointing: trade compute for activation memory.
        beta: DPO temperature; larger keeps the policy closer to the reference (the reward
            scale of SimPO, CPO and ORPO: ORPO's lambda, IPO's tau).
        loss_type: the objective, or a list of objectives summed with ``loss_weights``
            (docs/configuration.md lists them): DPO-family ``sigmoid`` (DPO; cDPO with
            label_smoothing), ``hinge``, ``ipo``, ``exo_pair``, ``nca_pair``, ``robust``,
            ``bco_pair``, ``sppo_hard``, ``aot``, ``aot_unpaired``, ``apo_zero``, ``apo_down``,
            ``discopop``, ``sigmoid_norm``; ``sft`` (NLL of the chosen replies); reference-free
            ``simpo``, ``cpo``, ``orpo``, which run no reference forward in training.
        loss_weights: one weight per loss_type entry; null weighs each 1.
        label_smoothing: assumed share of flipped labels: cDPO with sigmoid, and robust, aot,
            aot_unpaired, simpo, cpo; EXO's epsilon (exo_pair needs it above 0, e.g. 1e-3).
        ld_alpha: LD-DPO: the tokens of the longer reply past the length it shares with the other
            count this much (0 to 1) in the log-probs of policy and reference; null: plain sums.
        use_weighting: WPO: weigh each pair by how likely the policy is to write it now (not with
            aot, aot_unpaired).
        f_divergence_type: divergence from the reference the rewards derive from (f-DPO):
            ``reverse_kl`` (DPO), ``forward_kl``, ``js_divergence``, ``alpha_divergence``; only
            with sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, discopop, sft.
        f_alpha_divergence_coef: alpha of ``alpha_divergence``, in (0, 1]: near 0 reverse KL,
            1 forward KL (the paper's convention; TRL 1.16's alpha is one minus this).
        discopop_tau: DiscoPOP's temperature.
        simpo_gamma: SimPO's target reward margin (the paper: 0.3 to 0.5 times beta, beta 2-2.5).
        cpo_alpha: weight of CPO's NLL term on the chosen replies.
        sft_weight: weight of an SFT term, the NLL per token of the chosen replies, added to any
            objective (logged as ``sft_loss``); 0.1 to 1 counters falling chosen log-probs.
        desirable_weight: ``kto`` and ``apo_zero_unpaired``: the weight of desirable replies'
            losses (KTO's lambda_D); raise it when desirable rows are fewer, so that
            desirable_weight x desirable rows / (undesirable_weight x undesirable rows) is in
            [1, 4/3] (a warning says when it is not).
        undesirable_weight: the weight of undesirable replies' losses (lambda_U).
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
            rank 0 writes the cache; not available under FSDP. A reference-free objective
            (``simpo``, ``cpo``, ``orpo``, ``sft``) tables the validation pairs only.
        quant_storage: dtype holding the packed 4-bit weights; ``bfloat16`` (with
            ``compute_dtype: bfloat16`` and ``trainer.precision: bf16-true``) for FSDP, which
            shards float tensors of one dtype per wrapped block; null keeps uint8.
        on_nonfinite: what a NaN or infinite loss or gradient does: ``stop`` raises, naming the
            step and what to try; ``skip`` drops that optimizer step, warns and counts it in
            ``train/skipped_steps``. Either way the bad step is never applied.
        allow_pickle: also load model and adapter weights stored as pickles (``.bin``); off,
            only safetensors are read.
        return_freed_memory: on a CPU, what glibc does with freed tensor memory during the fit
            (``lit_dpo.host_memory.FreedMemory``). ``between_steps`` (default): the heap is
            trimmed after each training batch, so each step starts from its live tensors; the
            pages come back once per step, at no measurable cost in speed (28% less peak
            memory in ``tools/bench.py``). ``keep`` (false): glibc keeps a forward's worth of freed
            activations resident for reuse (about as much again as the live ones). ``promptly``
            (true): as well as the trim, each freed activation is unmapped at once: least memory,
            but it roughly halves CPU steps per second (every allocation's pages are zeroed
            again). No effect on a GPU or where glibc is not the allocator.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapter: str | None = None,
        reference: Literal["base", "adapter"] = "base",
        reference_adapter: str | None = None,
        quantization: Quantization = "nf4",
        compute_dtype: DType = "float32",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        target_modules: list[str] | str = "all-linear",
        gradient_checkpointing: bool = True,
        beta: float = 0.1,
        loss_type: LossType | list[LossType] = "sigmoid",
        loss_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        ld_alpha: float | None = None,
        use_weighting: bool = False,
        f_divergence_type: FDivergence = "reverse_kl",
        f_alpha_divergence_coef: float = 0.5,
        discopop_tau: float = 0.05,
        simpo_gamma: float = 0.5,
        cpo_alpha: float = 1.0,
        sft_weight: float = 0.0,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        optimizer: OptimizerCallable = default_optimizer,
        lr_schedule: Literal["cosine", "linear", "constant"] = "cosine",
        warmup_ratio: float = 0.1,
        trust_remote_code: bool = False,
        logps_chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        share_prompt: bool = True,
        packed_attention: PackedAttention = "auto",
        precompute_reference: bool = False,
        quant_storage: DType | None = None,
        on_nonfinite: OnNonFinite = "stop",
        allow_pickle: bool = False,
        return_freed_memory: bool | FreedMemory = DEFAULT_FREED_MEMORY,
    ) -> None:
        super().__init__()
        problems = setting_problems(locals())
        if problems:
            raise ConfigError("model settings: " + "; ".join(problems))
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.policy = None
        # built once from the settings, never changed: what a step optimises and how it scores
        self.objective = Objective.from_settings(self.hparams)
        self.scoring = ScoringPath(logps_chunk_size, share_prompt)
        # what is logged follows the objective; a step's logged value covers every rank's batch
        # (one all-gather per metric under DDP)
        self.train_metrics = preference_metrics(
            *logged_keys(self.objective, "train"), dist_sync_on_step=True
        )
        self.val_metrics = preference_metrics(*logged_keys(self.objective, "val"))
        if self.objective.unpaired:
            # KTO trains on unpaired rows; it validates on pairs (val_metrics, DPO's keys) or on
            # unpaired rows (these, with the reward AUC), whichever the validation split holds
            self.train_metrics = unpaired_metrics("train", dist_sync_on_step=True)
            self.val_unpaired_metrics = unpaired_metrics("val")
        # the KL baseline of the last training step: KTO's reference point on held-out pairs
        self.last_kl = 0.0
        # Checkpoints hold only the trainable LoRA weights (see on_save_checkpoint).
        self.strict_loading = False
        # reference log-probs by stage and pair_index, when precompute_reference is on
        self.reference_tables = ReferenceTables()
        # optimizer steps dropped for a non-finite loss or gradient (on_nonfinite skip)
        self.skipped_steps = 0
        self._skip_optimizer_step = False
        # bco_pair's reward shift, kept in the state dict (and so in checkpoints)
        self.bco_shift = BCOShiftState()
        # id of the trainer whose device and strategy these settings were checked against
        self._checked_trainer = None

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        hp, trainer = self.hparams, attached_trainer(self)
        if trainer is not None:
            self.check_run(trainer)
        device = trainer_device(trainer.strategy.root_device if trainer else torch.device("cpu"))
        flex = hp.share_prompt and packed_attention_for(hp.packed_attention, device) == "flex"
        if freed_memory_mode(hp.return_freed_memory) == "promptly" and device.kind == "cpu":
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
            reference_adapter=self.reference_adapter,
        )
        log.info("%s: %s", hp.model, trainable_summary(self.policy))
        log.info("reference: %s", describe_reference(self.reference_adapter))
        if hp.logps_chunk_size is not None:
            check_hidden_state_scoring(self.policy, hp.share_prompt)

    def check_run(self, trainer) -> None:
        """Check these settings against the trainer's device and strategy, once per trainer
        (``lit-dpo`` does before data loads; ``configure_model`` for a trainer it did not).

        Raises:
            ConfigError: every problem, in one message.
        """
        if self._checked_trainer != id(trainer):
            check_run(self.hparams, trainer)
            self._checked_trainer = id(trainer)

    def setup(self, stage: str) -> None:
        # the data module has prepared its splits: whether they are pairs or unpaired rows and
        # how many of each label is known now, before the model loads
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        unpaired = getattr(datamodule, "unpaired", None)
        if stage != "fit" or not unpaired or "train" not in unpaired:
            return
        problem = unpaired_data_problem(self.objective, unpaired["train"])
        if problem:
            raise ConfigError(problem)
        report = datamodule.report.get("train", {})
        if self.objective.unpaired and "desirable" in report:
            warning = weight_warning(
                report["desirable"], report["undesirable"], self.objective.desirable_weight,
                self.objective.undesirable_weight,
            )
            if warning:
                log.warning(warning)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        stats = self.step_statistics(batch, "train")
        # one flag reduced over ranks, so that all stop or skip together
        finite = bool(torch.isfinite(stats["loss"]))
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            return self._nonfinite_loss(stats["loss"], batch, batch_idx)
        pairs = num_pairs(batch)
        for name, metric in self.train_metrics.items():
            key = name.replace(":", "/")
            # forward (not update) so Lightning can log this step's value
            metric(*self._metric_inputs(key, stats))
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
        stats = self.step_statistics(batch, stage)
        pairs = num_pairs(batch)
        metrics = self.val_unpaired_metrics if "label" in batch else self.val_metrics
        for name, metric in metrics.items():
            key = name.replace(":", "/")
            metric.update(*self._metric_inputs(key, stats))
            self.log(f"val/{key}", metric, on_step=False, on_epoch=True, batch_size=pairs)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Per-pair implicit rewards and log-probs of policy and reference."""
        stats = self.step_statistics(batch, "predict")
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
        # metric states, and BCO's reward shift where the objective has one
        kept = ("metrics",)
        if "bco_pair" in self.objective.loss_types:
            kept += ("bco_shift.",)
        checkpoint["state_dict"] = {
            k: v
            for k, v in checkpoint["state_dict"].items()
            if k in trainable or any(part in k for part in kept)
        }
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = checkpoint.get("skipped_steps", 0)
        if "bco_reward_mean" in checkpoint:
            # a 0.2 checkpoint kept the shift beside the state dict; loaded for one release
            mean, steps = checkpoint["bco_reward_mean"]
            state = {"mean": mean, "steps": steps}
            checkpoint["state_dict"].setdefault("bco_shift._extra_state", state)

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
        mode = freed_memory_mode(self.hparams.return_freed_memory)
        if mode != "keep" and self.device.type == "cpu":
            # what the step freed and the heap still holds, so the next step starts from less
            trim_freed_memory()

    def on_train_start(self) -> None:
        # a reference-free objective runs no reference in training: only validation's table
        if self.hparams.precompute_reference and self.objective.needs_reference:
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

    def step_statistics(
        self, batch: dict[str, torch.Tensor], stage: str, scoring: ScoringPath | None = None
    ) -> dict[str, torch.Tensor]:
        """One pass: batch -> scored tokens of policy and reference -> objective -> statistics.

        Args:
            batch: ``collate_pairs`` output (2B rows), with ``pair_index`` for a reference table.
            stage: ``train``, ``val``, ``test`` or ``predict``.
            scoring: how log-probs are computed; None: as the settings say (``self.scoring``).
                A test or ``tools/gpu_check.py`` passes another to compare paths.
        """
        scoring = scoring or self.scoring
        policy = batch_token_logps(
            self.policy, batch, *scoring, log_sum_sq=self.objective.use_weighting
        )
        training = stage == "train"
        trainer = attached_trainer(self)
        several = trainer is not None and trainer.world_size > 1
        if self.objective.unpaired:
            return self._unpaired_statistics(batch, policy, stage, scoring, several)
        result = objective_step(
            self.objective,
            policy,
            self._reference_side(batch, stage, scoring),
            self.bco_shift.shift,
            training=training,
            mean_over_ranks=(
                (lambda x: trainer.strategy.reduce(x, reduce_op="mean")) if several else None
            ),
        )
        self.bco_shift.shift = result.bco_shift
        return result.statistics

    def _unpaired_statistics(
        self, batch: dict[str, torch.Tensor], policy, stage: str, scoring: ScoringPath,
        several: bool,
    ) -> dict[str, torch.Tensor]:
        """KTO's step: a batch of unpaired rows (completions and their KL rows, scored in one
        pass, the KL rows' log-probs detached by the baseline as TRL's no-grad pass), or, in
        validation, a batch of pairs scored against the last training KL baseline."""
        reference = self._reference_side(batch, stage, scoring)
        if "label" not in batch:
            if stage == "train":
                raise ConfigError(unpaired_data_problem(self.objective, False))
            return paired_step(self.objective, policy, reference, self.last_kl)
        stats = unpaired_step(
            self.objective, policy, reference, batch["label"],
            gather=self.all_gather if several else None,
        )
        if stage == "train":
            self.last_kl = float(stats["kl"])
        return stats

    def _metric_inputs(self, key: str, stats: dict[str, torch.Tensor]) -> tuple:
        if "labels" in stats:
            return unpaired_metric_inputs(key, stats)
        return metric_inputs(key, stats)

    def _reference_side(
        self, batch: dict[str, torch.Tensor], stage: str, scoring: ScoringPath
    ) -> torch.Tensor | None:
        """(2B,) reference log-probs: from the table if one was computed, else a reference pass;
        None in training for an objective that needs no reference (no reference forward runs).
        """
        if stage == "train" and not self.objective.needs_reference:
            return None
        table = self.reference_tables.get(stage)
        if table is not None:
            return lookup(table, batch["pair_index"]).to(self.device)
        return self._reference_logps(batch, scoring)

    def _reference_logps(
        self, batch: dict[str, torch.Tensor], scoring: ScoringPath | None = None
    ) -> torch.Tensor:
        """(2B,) summed completion log-probs under the reference: the same network with its
        adapters off, or with its frozen reference adapter on, without gradient (LD-DPO weighted
        with ``ld_alpha``, as the policy's)."""
        with torch.no_grad(), as_reference(self.policy):
            return batch_logps(
                self.policy, batch, *(scoring or self.scoring), ld_alpha=self.objective.ld_alpha
            )

    @property
    def reference_adapter(self) -> str | None:
        """The reference adapter folder, or None when the reference is the base."""
        hp = self.hparams
        return hp.get("reference_adapter") if hp.get("reference", "base") == "adapter" else None

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
        adapter = None
        if self.reference_adapter is not None:
            # the key holds the reference adapter's weights (fingerprinted with the base's) and
            # the config that scales them, so a base table is never read for an adapter reference
            adapter = REFERENCE_ADAPTER
            config = self.policy.peft_config[REFERENCE_ADAPTER]
            settings["reference_adapter"] = {
                key: getattr(config, key, None)
                for key in ("r", "lora_alpha", "use_rslora", "use_dora")
            }
        if hp.ld_alpha is not None:  # the table then holds LD-DPO weighted sums
            settings["ld_alpha"] = hp.ld_alpha
        self.reference_tables.prepare(
            stage, loader, self.trainer, self.policy.get_base_model(), settings, score, adapter
        )
