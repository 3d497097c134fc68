"""Every private API of lit_dpo.compat, exercised against the installed Lightning, transformers
and datasets: a release that changes one fails here, by name."""

from __future__ import annotations

import pytest
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_dpo import compat

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, callbacks, steps: int = 4) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )


class Record(Callback):
    """What the accessors say at each training batch's end."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.trainers, self.processed = stop_after, [], []
        self.logged_steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.trainers.append(compat.attached_trainer(pl_module))
        self.processed.append(compat.epoch_batches_processed(trainer))
        self.logged_steps.append(compat.logged_step(trainer))
        if self.stop_after is not None and batch_idx + 1 == self.stop_after:
            compat.request_sigterm_exit(trainer)
            assert trainer.received_sigterm  # Lightning's public view of the same flag


def test_attached_trainer_and_batches_processed(tmp_path):
    model, record = BoringModel(), Record()
    assert compat.attached_trainer(model) is None
    trainer = _trainer(tmp_path, [record])
    trainer.fit(model)
    assert record.trainers == [trainer] * 4
    # the batch whose end is being handled counts as processed
    assert record.processed == [1, 2, 3, 4]
    # loggers get a batch's metrics at the steps done before it (test_loggers: the same steps)
    assert record.logged_steps == [0, 1, 2, 3]


def test_requested_sigterm_exit_stops_after_the_batch(tmp_path):
    record = Record(stop_after=2)
    trainer = _trainer(tmp_path, [record], steps=10)
    with pytest.raises(SIGTERMException):
        trainer.fit(BoringModel())
    assert trainer.global_step == 2


def test_last_checkpoints_and_the_checkpoint_file_hooks(tmp_path):
    saved, removed = [], []

    class Watching(ModelCheckpoint):
        def _save_checkpoint(self, trainer, filepath):
            super()._save_checkpoint(trainer, filepath)
            saved.append(filepath)

        def _remove_checkpoint(self, trainer, filepath):
            super()._remove_checkpoint(trainer, filepath)
            removed.append(filepath)

    compat.check_model_checkpoint_hooks(ModelCheckpoint)
    checkpoint = Watching(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True)
    trainer = _trainer(tmp_path, [checkpoint])
    trainer.fit(BoringModel())
    # Lightning writes every checkpoint through the hook, and removes the superseded ones through
    # the other: what AdapterCheckpoint relies on to keep an adapter beside each checkpoint
    assert saved and removed and set(removed) < set(saved)
    assert compat.last_checkpoints(checkpoint, trainer) == {str(tmp_path / "ckpt" / "last.ckpt")}


def test_changed_hooks_are_named():
    class Old:
        def _save_checkpoint(self, trainer, path):
            pass

    with pytest.raises(compat.ChangedAPIError, match=r"ModelCheckpoint\._save_checkpoint"):
        compat.check_model_checkpoint_hooks(Old)


def test_cli_checkpoint_hook_is_named():
    from lightning.pytorch.cli import LightningCLI

    compat.check_cli_checkpoint_hook(LightningCLI)

    class Old:
        def _parse_ckpt_path(self, path):
            pass

    with pytest.raises(compat.ChangedAPIError, match=r"LightningCLI\._parse_ckpt_path"):
        compat.check_cli_checkpoint_hook(Old)


def test_attn_implementation(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert compat.attn_implementation(model) == "eager"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert compat.attn_implementation(model) == "sdpa"


def test_dataset_fingerprint_follows_the_content():
    import datasets

    one = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    mapped = one.map(lambda row: {"x": row["x"] + 1})
    assert compat.dataset_fingerprint(one) == compat.dataset_fingerprint(
        datasets.Dataset.from_dict({"x": [1, 2, 3]})
    )
    assert compat.dataset_fingerprint(mapped) != compat.dataset_fingerprint(one)


def test_a_missing_private_api_says_which_and_where():
    with pytest.raises(compat.ChangedAPIError, match=r"_signal_connector.*lightning 2\.6\.6"):
        compat.request_sigterm_exit(object())


def test_the_gguf_loaders_bar_is_silenced_for_a_block_only():
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    original = gguf_loading.tqdm
    with compat.gguf_progress_bar(False):
        bar = gguf_loading.tqdm(range(3))
        assert bar.disable and list(bar) == [0, 1, 2]
    assert gguf_loading.tqdm is original
    with compat.gguf_progress_bar(True):
        assert gguf_loading.tqdm is original


def test_kbit_preparation_passes_the_checkpointing_arguments_without_a_deprecation(
    tiny_model_dir,
):
    """The 4-bit preparation turns checkpointing on with lit-dpo's arguments under the installed
    peft's name for them, so peft warns of no deprecated argument."""
    import warnings

    import torch

    from lit_dpo.models.policy import nf4_config
    from lit_dpo.models.weights import load_base

    model = load_base(
        str(tiny_model_dir), quantized=True, quantization_config=nf4_config(torch.float32)
    )
    assert model.is_loaded_in_4bit  # else peft turns no checkpointing on
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=FutureWarning, module=r"peft\.")
        model = compat.prepare_for_kbit_training(
            model, True, {"use_reentrant": False, "determinism_check": "none"}
        )
    functions = {
        module._gradient_checkpointing_func
        for module in model.modules()
        if getattr(module, "gradient_checkpointing", False)
    }
    assert functions and all(
        function.keywords == {"use_reentrant": False, "determinism_check": "none"}
        for function in functions
    )
