"""Reference log-probs of every pair, computed once in a no-grad pass and cached on disk.

The reference model (the base with adapters off, or a frozen reference adapter on it) never changes
during DPO, so neither do its log-probs of a pair. Computing them once before training, as TRL's
``precompute_ref_log_probs`` does, takes the reference forward out of every step and every later
epoch; caching them on disk takes it out of later runs on the same model and data (a sweep over
beta or learning rate).

A table is keyed by a fingerprint of the reference (name, config, quantization, dtype, device type,
a strided sample of every base weight and, for an adapter reference, of every weight of that
adapter, with the settings that scale it) and of the tokenized pairs (so max_length, the chat
template and the data are all in it), under ``<cache>/reference_logps/`` (``LIT_DPO_CACHE``).

Whether a run read its tables from the cache or computed them, it records in
``<trainer.default_root_dir>/reference_tables.json`` (:func:`tables_reused` reads it), so a sweep
asks the run instead of searching its log.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_dpo.errors import ConfigError
from lit_dpo.files import clear_leftovers, write_atomically, write_text_atomically
from lit_dpo.models.reference import REFERENCE_ADAPTER
from lit_dpo.progress import track
from lit_dpo.sources import cache_dir
from lit_dpo.train.pairs import split_pairs
from lit_dpo.train.settings import Settings

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
# Bump when what a table holds changes meaning.
TABLE_VERSION = 1
# beside a run's fit_metrics.json: stage -> the table's path and whether the cache had it
REUSE_RECORD = "reference_tables.json"
# Elements sampled from each weight: enough to tell two checkpoints apart, cheap on 0.5B weights.
WEIGHT_SAMPLES = 1024


def reference_key(
    settings: Settings, device: str, precision: str, policy: torch.nn.Module
) -> tuple[dict[str, Any], str | None]:
    """What besides the base's weights changes the reference's log-probs, for the cache key, and
    the peft adapter the reference runs with (None: the base, adapters off).

    Args:
        settings: the run's settings (model, quantization, dtype, LD-DPO's ``ld_alpha``).
        device: the device type the reference runs on (``cpu``, ``cuda``).
        precision: the trainer's precision.
        policy: the peft model; a reference adapter's config (what scales its weights, whose
            fingerprint the key holds too) is read from it.
    """
    key: dict[str, Any] = {
        "model": settings.model,
        "quantization": settings.load.quantization,
        "compute_dtype": settings.load.compute_dtype,
        "device": device,
        "precision": precision,
    }
    adapter = None
    if settings.load.reference_folder is not None:
        # a base table is never read for an adapter reference
        adapter, config = REFERENCE_ADAPTER, policy.peft_config[REFERENCE_ADAPTER]
        key["reference_adapter"] = {
            name: getattr(config, name, None)
            for name in ("r", "lora_alpha", "use_rslora", "use_dora")
        }
    if settings.objective.ld_alpha is not None:  # the table then holds LD-DPO weighted sums
        key["ld_alpha"] = settings.objective.ld_alpha
    return key, adapter


def model_fingerprint(
    model: torch.nn.Module, settings: dict[str, Any], adapter: str | None = None
) -> str:
    """Hash of a reference model's identity: ``settings``, its config and a sample of every weight.

    Args:
        model: the base model; LoRA weights (names holding ``lora_``) are skipped, but those of
            ``adapter``.
        settings: what else changes its outputs, e.g. quantization, compute dtype, device type.
        adapter: the peft adapter that is part of the reference (``reference``), if any.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if "lora_" in name and (adapter is None or f".{adapter}." not in name):
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // WEIGHT_SAMPLES)].contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


def pairs_fingerprint(dataset) -> str:
    """Hash of the token ids of every pair of a ``datasets.Dataset``, in order."""
    digest = hashlib.sha256()
    for column in PAIR_COLUMNS:
        for ids in dataset[column]:
            ids = np.asarray(ids, dtype=np.int64)
            digest.update(np.int64(len(ids)).tobytes())
            digest.update(ids.tobytes())
    return digest.hexdigest()


def table_path(model_key: str, pairs_key: str) -> Path:
    """Where the table of one model and one set of pairs is cached."""
    key = hashlib.sha256(f"{TABLE_VERSION}:{model_key}:{pairs_key}".encode()).hexdigest()[:32]
    return cache_dir() / "reference_logps" / f"{key}.pt"


def compute_table(
    score: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    dataset,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """Reference log-probs of every pair, batch by batch in order of length (less padding).

    Args:
        score: batch -> (2B,) reference log-probs, chosen rows then rejected rows.
        dataset: pairs with ``pair_index`` and the ``PAIR_COLUMNS``.
        collate: list of pairs -> batch holding ``pair_index`` (B,), as ``collate_pairs``.
        batch_size: pairs per batch.
        rank: with ``world_size``, score only every ``world_size``-th pair of the length order
            from position ``rank`` (so ranks get similar lengths); the other rows stay NaN for
            :func:`merge_shards`.
        world_size: ranks sharing the work.

    Returns:
        (N, 2) fp32: column 0 chosen, column 1 rejected, row = ``pair_index``.
    """
    lengths = [
        len(p) + len(c) + len(r)
        for p, c, r in zip(*(dataset[column] for column in PAIR_COLUMNS), strict=True)
    ]
    order = np.argsort(lengths, kind="stable")[rank::world_size]
    table = torch.full((len(lengths), 2), float("nan"))
    starts = range(0, len(order), batch_size)
    for start in track(starts, "reference log-probs", unit="batches"):
        batch = collate([dataset[int(i)] for i in order[start : start + batch_size]])
        chosen, rejected = split_pairs(score(batch).float().cpu())
        table[batch["pair_index"], 0] = chosen
        table[batch["pair_index"], 1] = rejected
    if world_size == 1 and table.isnan().any():
        raise ValueError("pair_index does not number the pairs 0..N-1: some pairs have no entry")
    return table


def merge_shards(shards: torch.Tensor) -> torch.Tensor:
    """(W, N, 2) tables of :func:`compute_table` on ranks 0..W-1 -> the (N, 2) table of all pairs.

    Raises:
        ValueError: a pair scored by no rank or by several (or a NaN log-prob).
    """
    scored = (~shards.isnan()).sum(0)
    if (scored != 1).any():
        raise ValueError(
            f"rank shards of the reference table do not cover each pair exactly once: "
            f"{int((scored != 1).any(-1).sum())} of {shards.shape[1]} pairs are off"
        )
    return shards.nan_to_num(0.0).sum(0)


def cached_table(path: Path, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """The table at ``path``, or ``compute()``'s, written there atomically for later runs.

    Returns:
        ``(table, reused)``: reused is True when the table was read from ``path``.
    """
    if path.exists():
        log.info("reference log-probs: reusing %s", path)
        return torch.load(path, weights_only=True), True
    table = compute()
    save_table(path, table)
    return table, False


def save_table(path: Path, table: torch.Tensor) -> None:
    """Write ``table`` to ``path`` whole or not at all; a failed write leaves no temporary file.

    Another process may write the same table at the same time: each renames a whole file.
    """
    clear_leftovers([path.parent])  # tables a killed run left unfinished
    write_atomically(path, lambda staging: torch.save(table, staging))
    log.info("reference log-probs: %d pairs cached in %s", len(table), path)


def lookup(table: torch.Tensor, pair_index: torch.Tensor) -> torch.Tensor:
    """(N, 2) table, (B,) pair indices -> (2B,) log-probs, chosen then rejected (batch order)."""
    rows = table[pair_index.cpu()]
    return torch.cat([rows[:, 0], rows[:, 1]])


class ReferenceTables:
    """Reference log-probs of a fit's pairs by stage (``train``, ``val``), each computed once in a
    no-grad pass and cached on disk, so that steps look them up instead of running the reference.

    A table is keyed by the reference model (:func:`model_fingerprint`) and the pairs' token ids
    (:func:`pairs_fingerprint`): any run on the same model and data reuses it, whatever its beta,
    learning rate or objective.
    """

    def __init__(self) -> None:
        self.tables: dict[str, torch.Tensor] = {}
        self._paths: dict[str, Path] = {}
        # stage -> True when its table was read from the cache, False when computed
        self.reused: dict[str, bool] = {}

    def get(self, stage: str) -> torch.Tensor | None:
        """The (N, 2) table of ``stage``, if prepared."""
        return self.tables.get(stage)

    def prepare(
        self,
        stage: str,
        loader,
        trainer,
        reference_model: torch.nn.Module,
        settings: dict[str, Any],
        score: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        adapter: str | None = None,
    ) -> None:
        """Fill the table of ``stage`` from the disk cache or a pass of ``score`` over the pairs.

        Args:
            stage: ``train`` or ``val``.
            loader: the stage's DataLoader; its dataset must carry ``pair_index``.
            trainer: the running trainer (world size, rank, strategy for DDP).
            reference_model: the network the reference runs, fingerprinted for the cache key.
            settings: what else changes the reference's outputs (quantization, dtype, device...).
            score: batch (on the CPU) -> (2B,) reference log-probs.
            adapter: the peft adapter the reference runs with (None: adapters off), whose
                weights go into the key.

        Raises:
            ConfigError: the dataset has no ``pair_index`` column.
        """
        dataset = getattr(loader, "dataset", None)
        if "pair_index" not in getattr(dataset, "column_names", ()):
            raise ConfigError(
                "precompute_reference needs a dataset with a pair_index column "
                "(PreferenceDataModule provides one); set "
                "model.efficiency.precompute_reference false"
            )
        model_key = model_fingerprint(reference_model, settings, adapter)
        path = table_path(model_key, pairs_fingerprint(dataset))
        if stage in self.tables and self._paths.get(stage) == path:
            return
        batch_size = getattr(loader.batch_sampler, "batch_size", None) or loader.batch_size or 1

        def compute(**shard: int) -> torch.Tensor:
            log.info("reference log-probs (%s): scoring %d pairs", stage, len(dataset))
            return compute_table(score, dataset, loader.collate_fn, batch_size, **shard)

        if trainer.world_size == 1:
            self.tables[stage], self.reused[stage] = cached_table(path, compute)
        else:
            self.tables[stage], self.reused[stage] = shared_table(trainer, path, compute)
        self._paths[stage] = path
        if trainer.is_global_zero:
            self.write_record(Path(trainer.default_root_dir))

    def write_record(self, folder: Path) -> Path:
        """Write :data:`REUSE_RECORD` in ``folder``: each stage's table and whether it was
        reused, for :func:`tables_reused`."""
        record = {
            stage: {"table": str(self._paths[stage]), "reused": reused}
            for stage, reused in self.reused.items()
        }
        return write_text_atomically(folder / REUSE_RECORD, json.dumps(record, indent=2) + "\n")


def tables_reused(run_dir: str | Path) -> bool | None:
    """Whether the run in ``run_dir`` read every reference table it used from the cache.

    Returns:
        True when all were reused, False when any was computed, None when the run recorded no
        table (it did not precompute the reference).
    """
    path = Path(run_dir) / REUSE_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return bool(record) and all(stage["reused"] for stage in record.values())


def shared_table(
    trainer, path: Path, compute: Callable[..., torch.Tensor]
) -> tuple[torch.Tensor, bool]:
    """:func:`cached_table` under DDP: every rank scores its share, rank 0 writes.

    Rank 0's cache decides for all ranks, as the nodes of a run need not share a cache folder.
    """
    strategy = trainer.strategy
    if strategy.broadcast(path.exists()):
        log.info("reference log-probs: reusing %s", path)
        table = torch.load(path, weights_only=True) if trainer.is_global_zero else None
        return strategy.broadcast(table), True
    shard = compute(rank=trainer.global_rank, world_size=trainer.world_size)
    # (world_size, N, 2); all_gather needs the tensors on the device NCCL works on
    table = merge_shards(strategy.all_gather(shard.to(strategy.root_device)).cpu())
    if trainer.is_global_zero:
        save_table(path, table)
    return table, False
