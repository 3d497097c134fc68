"""Checkpoints written whole or not at all, beside their final name.

Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction, which on a local disk
writes the file in the system's temporary folder and then ``shutil.move``s it to the checkpoint's
name. Where that folder is on another file system (``/tmp`` on tmpfs, checkpoints on a disk) the
move is a copy into the final name: a SIGKILL or a full disk during the copy leaves a truncated
``last.ckpt`` that ``--ckpt_path last`` then fails to load, and the temporary folder must have
room for the whole checkpoint. ``AtomicCheckpointIO`` writes to a temporary file beside the target
instead, syncs it and renames it: the name holds the previous checkpoint or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_dpo.callbacks.adapters import final_adapter_path
from lit_dpo.files import clear_leftovers, save_atomically, unwritable_problem


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves go through a temporary file beside the checkpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}"
            )
        save_atomically(Path(path), lambda staging: torch.save(checkpoint, staging))


def use_atomic_checkpoints(trainer: Trainer) -> bool:
    """Give ``trainer`` atomic local checkpoint saves where it uses Lightning's plain
    ``TorchCheckpointIO`` (single process, DDP); FSDP's sharded saves and remote paths are left to
    Lightning. True if it did."""
    strategy = trainer.strategy
    root = str(getattr(trainer, "default_root_dir", "") or "")
    if "://" in root or type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True


def output_folders(trainer: Trainer) -> dict[str, str]:
    """{flag naming it: folder} of each local folder a fit writes to: the root, the logger's
    folder, each checkpoint folder (where the adapter checkpoints go too)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    folders = {"--trainer.default_root_dir": trainer.default_root_dir}
    for logger in trainer.loggers:
        if getattr(logger, "save_dir", None):
            folders["--trainer.logger.save_dir"] = logger.save_dir
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            folders["checkpoint dirpath"] = callback.dirpath
    return {flag: str(folder) for flag, folder in folders.items() if "://" not in str(folder)}


def unwritable_outputs(trainer: Trainer) -> list[str]:
    """Each output folder of a fit that cannot be written, as one problem line each; checked
    before the model loads."""
    problems = []
    for flag, folder in output_folders(trainer).items():
        problem = unwritable_problem(folder, flag)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def clear_leftover_outputs(trainer: Trainer) -> str | None:
    """Remove the temporary checkpoints and adapters a killed fit left in this fit's folders (and
    in the final adapter's); the line saying so, or None."""
    folders = [*output_folders(trainer).values(), final_adapter_path(trainer).parent]
    return clear_leftovers(folders)
