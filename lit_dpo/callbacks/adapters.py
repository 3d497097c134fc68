"""Callbacks that write what a user keeps: PEFT adapters beside checkpoints and at the end of fit.

Adapters are written in PEFT's own format with the tokenizer and a model card (``README.md``,
:mod:`lit_dpo.reporting.model_card`), so ``PeftModel.from_pretrained(base, path)`` loads them
without lit-dpo. Only the policy's adapter is written, never a frozen reference adapter beside it;
what the reference was goes in ``lit_dpo_reference.json`` (:mod:`lit_dpo.models.reference`), for
``compare`` and ``serve``. Each is written to a temporary folder and renamed into place: a crash
mid-write never leaves half an adapter where a good one was. Weights that are NaN or infinite are
never written, so a good adapter is never replaced by a broken one.

Under DDP every rank holds the same adapter and rank 0 alone writes files. Under FSDP each rank
holds a shard of it: every rank takes part in gathering it, then rank 0 writes
(:func:`gathered_policy_state`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import FSDPStrategy

from lit_dpo.callbacks.history import MetricHistory
from lit_dpo.compat import check_model_checkpoint_hooks
from lit_dpo.errors import NonFiniteError
from lit_dpo.files import staged_folder
from lit_dpo.models.reference import POLICY_ADAPTER, write_reference_record
from lit_dpo.reporting.model_card import adapter_card
from lit_dpo.reporting.run_facts import run_facts, write_facts
from lit_dpo.train.nonfinite import advice, first_nonfinite

log = logging.getLogger(__name__)


def save_adapter(
    pl_module: LightningModule, trainer: Trainer, path: str | Path, state_dict: dict | None = None
) -> Path:
    """Write the policy's adapter (and the data module's tokenizer, if any) to ``path``.

    ``state_dict``: the policy's weights when the policy does not hold them whole (FSDP).

    Raises:
        NonFiniteError: a LoRA weight is NaN or infinite; nothing is written.
    """
    from peft import get_peft_model_state_dict

    path = Path(path)
    adapter_state = get_peft_model_state_dict(
        pl_module.policy, state_dict=state_dict, adapter_name=POLICY_ADAPTER
    )
    bad = first_nonfinite(adapter_state.items())
    if bad is not None:
        kept = "the adapter already there is kept" if path.exists() else "nothing was written"
        raise NonFiniteError(
            f"refusing to write the adapter {path}: the weight {bad[0]} holds {bad[1]} values "
            f"({kept}). Try: {advice(str(getattr(trainer, 'precision', '')), 'weights')}"
        )
    # written beside ``path`` and swapped in whole: a crash or a full disk keeps the old adapter
    with staged_folder(path) as staging:
        pl_module.policy.save_pretrained(
            staging, state_dict=state_dict, selected_adapters=[POLICY_ADAPTER]
        )
        write_reference_record(staging, getattr(pl_module, "reference_adapter", None))
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        # in place of PEFT's empty template: the card of this run, and its facts for export
        facts = run_facts(trainer, pl_module, MetricHistory.of(trainer).validations())
        write_facts(staging, facts)
        (staging / "README.md").write_text(adapter_card(facts, path), encoding="utf-8")
    return path


def gathered_policy_state(trainer: Trainer) -> dict | None:
    """The policy's full state dict on rank 0 under FSDP (None elsewhere), else None.

    FSDP leaves each rank a shard of every weight outside its forward; this gathers them, unit by
    unit, into rank 0's CPU memory. It is a collective: every rank must call it. Other strategies
    need nothing gathered: the policy itself holds its weights.
    """
    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(trainer.strategy.model, StateDictType.FULL_STATE_DICT, config):
        state = trainer.strategy.model.state_dict()
    return {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}


def adapter_path(checkpoint_path: str | Path) -> Path:
    """``.../epoch=0-step=10.ckpt`` -> ``.../epoch=0-step=10.adapter``."""
    return Path(checkpoint_path).with_suffix(".adapter")


# AdapterCheckpoint overrides two private methods; fail at import if Lightning changed them.
check_model_checkpoint_hooks(ModelCheckpoint)


class AdapterCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also writes a PEFT adapter folder beside every checkpoint it keeps.

    ``best_model_path`` names the best checkpoint; its adapter is ``adapter_path(best_model_path)``.
    """

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        state = gathered_policy_state(trainer)
        if trainer.is_global_zero:
            save_adapter(trainer.lightning_module, trainer, adapter_path(filepath), state)

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            shutil.rmtree(adapter_path(filepath), ignore_errors=True)


class SaveAdapter(Callback):
    """Write the final adapter when training ends.

    When training stops on a non-finite loss or gradient (``model.optimization.on_nonfinite stop``),
    the step was not applied: the weights of the last good step are written beside, to
    ``<dirpath>-step<N>``, and an adapter already at ``dirpath`` is left as it was.

    Args:
        dirpath: where the adapter goes; ``<trainer.default_root_dir>/adapter`` when None.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath

    def path(self, trainer: Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "adapter")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        state = gathered_policy_state(trainer)
        if not trainer.is_global_zero:
            return
        path = save_adapter(pl_module, trainer, self.path(trainer), state)
        log.info("adapter saved to %s", path)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, NonFiniteError) or not trainer.is_global_zero:
            return
        if trainer.global_step == 0 or getattr(pl_module, "policy", None) is None:
            return  # nothing trained yet
        if isinstance(trainer.strategy, FSDPStrategy):
            return  # gathering the shards is a collective, out of reach in an exception hook
        final = self.path(trainer)
        try:
            path = save_adapter(
                pl_module, trainer, final.with_name(f"{final.name}-step{trainer.global_step}")
            )
        except NonFiniteError as error:  # the weights themselves went bad: report, write nothing
            log.warning("%s", error)
            return
        log.warning("the adapter of the last good step (%d) saved to %s", trainer.global_step, path)


def final_adapter_path(trainer: Trainer) -> Path:
    """Where the fit's adapter goes: SaveAdapter's folder, else ``<default_root_dir>/adapter``."""
    for callback in trainer.callbacks:
        if isinstance(callback, SaveAdapter):
            return callback.path(trainer)
    return Path(trainer.default_root_dir) / "adapter"
