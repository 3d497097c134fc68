"""LightningModule for DPO: wires policy -> log-probs -> loss -> metrics -> optimizer.

A step (``step_statistics``) reads as one pass: the batch -> the policy's scored tokens of chosen
and rejected in one forward (``forward.batch_token_logps``) and the reference's, from the same
network with its adapters off or its frozen reference adapter on (``models.reference``), without
gradient (or from a table computed once, ``reference_table``) -> the objective and its statistics
(``step.objective_step``, pure maths: the losses of ``losses`` with the SFT term, WPO weights,
LD-DPO and BCO's running shift) -> the metrics logged (``metrics``). A reference-free objective
runs no reference in training; in validation the reference still runs once, so its log-prob
accuracy is reported beside the policy's.

The settings come in groups (``settings``); what the module does not compute itself lives beside
it: loading the policy (``policy_setup``), the optimizer and its schedule (``optimization``), a
non-finite step (``nonfinite``), the checks of the settings (``run_checks``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from lit_dpo.compat import attached_trainer
from lit_dpo.errors import ConfigError
from lit_dpo.host_memory import freed_memory_mode, trim_freed_memory
from lit_dpo.models.reference import as_reference
from lit_dpo.sources import DEFAULT_MODEL
from lit_dpo.train.checkpoint_state import kept_state, read_0_2_state
from lit_dpo.train.forward import ScoringPath, batch_logps, batch_token_logps
from lit_dpo.train.metrics import metric_inputs, module_metrics, update_metrics
from lit_dpo.train.nonfinite import NonFiniteGuard, loss_where
from lit_dpo.train.optimization import default_optimizer, optimizer_config
from lit_dpo.train.pairs import num_pairs
from lit_dpo.train.policy_setup import load_run_policy
from lit_dpo.train.reference_table import ReferenceTables, lookup, reference_key
from lit_dpo.train.run_checks import (
    check_data,
    check_run,
    check_settings,
    objective_of,
    unpaired_data_problem,
)
from lit_dpo.train.settings import (
    EfficiencySettings,
    LoadSettings,
    LoRASettings,
    ObjectiveSettings,
    OptimizationSettings,
    Settings,
)
from lit_dpo.train.step import BCOShiftState, objective_step
from lit_dpo.train.unpaired_step import paired_step, unpaired_step

log = logging.getLogger(__name__)


class DPOModule(LightningModule):
    """Direct Preference Optimization of a 4-bit LoRA policy against its reference: the base
    (adapters off) or a frozen SFT adapter on the same base.

    Args:
        model: hub id, local folder or ``embedded:SmolLM2-135M-Instruct``.
        load: what is loaded beside the model, and how: the adapter to start from, the
            reference, the base's precision (``settings.LoadSettings``).
        lora: the LoRA adapter trained (``settings.LoRASettings``).
        objective: what a step optimises (``settings.ObjectiveSettings``).
        optimization: the learning-rate schedule and what a non-finite step does
            (``settings.OptimizationSettings``).
        efficiency: how a step runs, never what it computes (``settings.EfficiencySettings``).
        optimizer: optimizer over the LoRA weights, e.g. ``torch.optim.AdamW`` or
            ``bitsandbytes.optim.PagedAdamW8bit`` with its ``lr``.
        old_keys: lit-dpo 0.2's flat settings (``beta=0.2``), each put in its group with a
            FutureWarning naming the new place; they go in lit-dpo 0.4.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        load: LoadSettings = LoadSettings(),  # noqa: B008 (frozen: one shared default is safe)
        lora: LoRASettings = LoRASettings(),  # noqa: B008
        objective: ObjectiveSettings = ObjectiveSettings(),  # noqa: B008
        optimization: OptimizationSettings = OptimizationSettings(),  # noqa: B008
        efficiency: EfficiencySettings = EfficiencySettings(),  # noqa: B008
        optimizer: OptimizerCallable = default_optimizer,
        **old_keys: Any,
    ) -> None:
        super().__init__()
        self.settings = Settings.from_arguments(
            dict(model=model, load=load, lora=lora, objective=objective, optimization=optimization,
                 efficiency=efficiency, **old_keys)
        )
        check_settings(self.settings)
        self.save_hyperparameters(self.settings.as_dict())
        self.optimizer = optimizer
        self.policy = None
        # built once from the settings, never changed: what a step optimises and how it scores
        self.objective = objective_of(self.settings)
        efficiency = self.settings.efficiency
        self.scoring = ScoringPath(efficiency.logps_chunk_size, efficiency.share_prompt)
        metrics = module_metrics(self.objective)  # what is logged follows the objective
        self.train_metrics, self.val_metrics, self.val_unpaired_metrics = metrics
        # the KL baseline of the last training step: KTO's reference point on held-out pairs
        self.last_kl = 0.0
        # Checkpoints hold only the trainable LoRA weights (see on_save_checkpoint).
        self.strict_loading = False
        # reference log-probs by stage and pair_index, when precompute_reference is on
        self.reference_tables = ReferenceTables()
        # stops or skips a step whose loss or gradient is NaN or infinite (on_nonfinite)
        self.nonfinite = NonFiniteGuard(self.settings.optimization.on_nonfinite)
        # bco_pair's reward shift, kept in the state dict (and so in checkpoints)
        self.bco_shift = BCOShiftState()
        # id of the trainer whose device and strategy these settings were checked against
        self._checked_trainer = None

    def configure_model(self) -> None:
        if self.policy is not None:
            return
        trainer = attached_trainer(self)
        if trainer is not None:
            self.check_run(trainer)
        self.policy = load_run_policy(self.settings, trainer and trainer.strategy.root_device)

    def check_run(self, trainer, batch_size: int | None = None) -> None:
        """``run_checks.check_run`` once per trainer: ``lit-dpo`` runs it before data loads (with
        the data's batch size), ``configure_model`` for a trainer it did not."""
        if self._checked_trainer != id(trainer):
            check_run(self.settings, trainer, batch_size)
            self._checked_trainer = id(trainer)

    def setup(self, stage: str) -> None:
        # the data module has prepared its splits: pairs or unpaired rows, how many of each label
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        warning = check_data(self.objective, datamodule) if stage == "fit" else None
        if warning:
            log.warning(warning)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        stats = self.step_statistics(batch, "train")
        # one flag reduced over ranks, so that all stop or skip together
        finite = bool(torch.isfinite(stats["loss"]))
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            # stop, or skip this optimizer step and back-propagate zero
            pairs = batch.get("pair_index")
            where = loss_where(stats["loss"], self.current_epoch, batch_idx, pairs)
            trainable = (p for p in self.policy.parameters() if p.requires_grad)
            precision = str(self.trainer.precision)
            return self.nonfinite.bad_loss(where, self.global_step, precision, trainable)
        for name, metric in self.train_metrics.items():
            key = name.replace(":", "/")
            metric(*metric_inputs(key, stats))  # forward, not update: this step's value is logged
            shown = key in ("loss", "rewards/accuracies")
            self.log(f"train/{key}", metric, on_step=True, on_epoch=False,
                     batch_size=num_pairs(batch), prog_bar=shown)
        return stats["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def _evaluation_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        # test logs under val/ too: the same metrics, on whichever split the loader holds
        stats = self.step_statistics(batch, stage)
        metrics = self.val_unpaired_metrics if "label" in batch else self.val_metrics
        # the same update as compare's held-out evaluation
        update_metrics(metrics, stats)
        for name, metric in metrics.items():
            self.log(
                f"val/{name.replace(':', '/')}", metric, on_epoch=True, batch_size=num_pairs(batch)
            )

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Per-pair implicit rewards and log-probs of policy and reference."""
        stats = self.step_statistics(batch, "predict")
        return {key: value.cpu() for key, value in stats.items() if key != "loss"}

    def configure_optimizers(self) -> dict[str, Any]:
        if self.policy is None:
            raise ConfigError("configure_model must run before configure_optimizers")
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        total_steps = self.trainer.estimated_stepping_batches
        return optimizer_config(self.optimizer, trainable, self.settings.optimization, total_steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_bco_shift = "bco_pair" in self.objective.loss_types
        checkpoint["state_dict"] = kept_state(checkpoint["state_dict"], self.policy, keep_bco_shift)
        checkpoint["skipped_steps"] = self.nonfinite.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.skipped_steps = checkpoint.get("skipped_steps", 0)
        read_0_2_state(checkpoint)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # After backward (and DDP's all-reduce) and AMP unscaling, before the step; a gradient
        # scaler skips infinite gradients itself.
        named = [(n, p.grad) for n, p in self.policy.named_parameters() if p.grad is not None]
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        precision = str(self.trainer.precision)
        if self.nonfinite.skip_step(named, self.global_step, precision, scaler is None):
            # optimizers leave parameters without a gradient untouched (no momentum, no decay)
            optimizer.zero_grad(set_to_none=True)
        skipped = float(self.nonfinite.skipped_steps)
        self.log("train/skipped_steps", skipped, on_step=True, batch_size=1)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        mode = freed_memory_mode(self.settings.efficiency.return_freed_memory)
        if mode != "keep" and self.device.type == "cpu":
            # what the step freed and the heap still holds, so the next step starts from less
            trim_freed_memory()

    def on_train_start(self) -> None:
        # a reference-free objective runs no reference in training: only validation's table
        if self.settings.efficiency.precompute_reference and self.objective.needs_reference:
            self._prepare_reference_table("train", self.trainer.train_dataloader)

    def on_validation_start(self) -> None:
        loaders = self.trainer.val_dataloaders
        # with several validation loaders a batch does not say whose pair_index it carries
        if self.settings.efficiency.precompute_reference and not isinstance(loaders, list | tuple):
            self._prepare_reference_table("val", loaders)

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps dropped for a non-finite loss or gradient (``on_nonfinite skip``)."""
        return self.nonfinite.skipped_steps

    @property
    def reference_adapter(self) -> str | None:
        """The reference adapter folder, or None when the reference is the base."""
        return self.settings.load.reference_folder

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
        reference = self._reference_side(batch, stage, scoring)
        trainer = attached_trainer(self)
        several = trainer is not None and trainer.world_size > 1
        if self.objective.unpaired and "label" in batch:  # KTO: completions and their KL rows
            gather = self.all_gather if several else None
            stats = unpaired_step(self.objective, policy, reference, batch["label"], gather=gather)
            self.last_kl = float(stats["kl"]) if stage == "train" else self.last_kl
            return stats
        if self.objective.unpaired:  # pairs, scored against the last training KL baseline
            if stage == "train":
                raise ConfigError(unpaired_data_problem(self.objective, False))
            return paired_step(self.objective, policy, reference, self.last_kl)
        mean = (lambda x: trainer.strategy.reduce(x, reduce_op="mean")) if several else None
        result = objective_step(
            self.objective, policy, reference, self.bco_shift.shift,
            training=stage == "train", mean_over_ranks=mean, sft_pairs=batch.get("sft"),
        )
        self.bco_shift.shift = result.bco_shift
        return result.statistics

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

    def _prepare_reference_table(self, stage: str, loader) -> None:
        """Reference log-probs of every pair of ``stage``, from the disk cache or one pass."""
        # hooks run outside the precision plugin's autocast, which a step's reference pass has
        forward_context = self.trainer.precision_plugin.forward_context

        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with forward_context():
                return self._reference_logps({k: v.to(self.device) for k, v in batch.items()})

        precision = str(self.trainer.precision)
        key, adapter = reference_key(self.settings, self.device.type, precision, self.policy)
        self.reference_tables.prepare(
            stage, loader, self.trainer, self.policy.get_base_model(), key, score, adapter
        )
