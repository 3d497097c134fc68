"""The disk space a fit will write, against what is free where it writes.

A fit writes its adapter (the LoRA weights in fp32, with the tokenizer and a card), checkpoints
(the LoRA weights, the optimizer's state and, with ``AdapterCheckpoint``, an adapter beside each),
the reference log-prob table (two fp32 numbers a pair) and, for the embedded model, the converted
fp32 model once. Each is written whole beside its final name and then renamed, so while one
replaces another both are on the disk: the largest write is counted twice.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lit_dpo.files import human_bytes

# the tokenizer files, the card and the run's facts beside the weights of an adapter folder
ADAPTER_FILES_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class DiskWrite:
    """One kind of file a fit writes: what, where, how many and how large each."""

    label: str
    folder: Path
    count: int
    each: float

    @property
    def total(self) -> float:
        return self.count * self.each


def fit_writes(
    lora_parameters: int,
    optimizer_state_bytes: float,
    root: Path,
    cache: Path,
    checkpoints: int,
    pairs: int | None = None,
    model_to_convert_bytes: float = 0.0,
) -> list[DiskWrite]:
    """What a fit writes, by kind.

    Args:
        lora_parameters: trainable LoRA weights (saved in fp32).
        optimizer_state_bytes: optimizer state per trainable weight (AdamW: 8).
        root: ``trainer.default_root_dir``.
        cache: lit-dpo's cache folder (reference tables, converted models).
        checkpoints: checkpoints kept on disk at once (``save_top_k`` plus ``last``), each with
            its adapter beside it.
        pairs: preference pairs whose reference log-probs are tabled (None: no table).
        model_to_convert_bytes: the fp32 model the embedded GGUF converts to, if not converted
            yet (0 otherwise).
    """
    adapter = lora_parameters * 4.0 + ADAPTER_FILES_BYTES
    checkpoint = lora_parameters * (4.0 + optimizer_state_bytes) + adapter
    writes = [DiskWrite("final adapter", root, 1, adapter)]
    if checkpoints:
        writes.append(DiskWrite("checkpoints, each with its adapter", root, checkpoints,
                                checkpoint))
    if pairs:
        writes.append(DiskWrite("reference log-prob table", cache, 1, pairs * 2 * 4.0))
    if model_to_convert_bytes:
        writes.append(DiskWrite("converted model", cache, 1, model_to_convert_bytes))
    return writes


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    existing = folder.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def needed_by_folder(writes: list[DiskWrite]) -> dict[Path, float]:
    """Bytes each folder needs at the peak: every write, plus the largest once more (the new copy
    beside the old while it replaces it)."""
    needed: dict[Path, float] = {}
    for folder in dict.fromkeys(w.folder for w in writes):
        mine = [w for w in writes if w.folder == folder]
        needed[folder] = sum(w.total for w in mine) + max(w.each for w in mine)
    return needed


def disk_lines(writes: list[DiskWrite], free: dict[Path, int] | None = None) -> list[str]:
    """The report's disk section: each write, then each folder's need against its free space."""
    lines = ["disk space the fit writes (estimate)"]
    for write in writes:
        count = f"{write.count} x " if write.count > 1 else ""
        lines.append(f"  {write.label:36}{count}{human_bytes(write.each)} in {write.folder}")
    for folder, needed in needed_by_folder(writes).items():
        available = free[folder] if free is not None else free_bytes(folder)
        verdict = "ok" if needed <= available else "NOT enough: free space or pick another folder"
        lines.append(
            f"  {str(folder):36}needs {human_bytes(needed)} of {human_bytes(available)} free: "
            f"{verdict}"
        )
    return lines
