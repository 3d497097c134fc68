"""LightningDataModule over preference pairs: load, check, filter, subsample, tokenize, batch.

Sources: a hub dataset id (``HuggingFaceH4/ultrafeedback_binarized``), a local JSON/JSONL/Parquet
file, a folder of such files (one split per file, named by the file's stem), a folder written by
``Dataset.save_to_disk``, or the embedded ``embedded:ultrafeedback-mini``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Literal

import datasets
import torch
from lightning import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lit_dpo import batches, pairs
from lit_dpo.batches import collate_pairs, encode_pair
from lit_dpo.errors import ConfigError, DataError
from lit_dpo.pairs import detect_format, extract_pair, filter_reason
from lit_dpo.sampler import PairSampler
from lit_dpo.sources import DEFAULT_DATASET, DEFAULT_MODEL, resolve_dataset, resolve_model

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train_prefs", "train")
VAL_SPLITS = ("test_prefs", "test", "validation")
SOURCE_ROW = "_lit_dpo_source_row"
FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class PreferenceDataModule(LightningDataModule):
    """Preference pairs for DPO.

    Args:
        dataset: hub id, local file or folder, or ``embedded:ultrafeedback-mini``.
        format: row format, or ``auto`` to detect it from the columns: ``ultrafeedback``
            (conversations sharing all but the last turn, also the implicit-prompt format),
            ``conversational`` (prompt messages + assistant replies), ``plain`` (strings),
            ``hh-rlhf`` (Anthropic HH transcripts).
        columns: rename columns to the names a format expects, e.g.
            ``{prompt: question, chosen: good, rejected: bad}``.
        tokenizer: model whose tokenizer and chat template format the pairs (linked to
            ``model.model`` by the CLI).
        train_split: split to train on; by default the first of ``train_prefs``, ``train``.
        val_split: held-out split; by default the first of ``test_prefs``, ``test``,
            ``validation``, else a seeded ``val_fraction`` of the train split.
        val_fraction: share of train carved out for validation when there is no held-out split.
        train_size: number of train pairs after filtering (all when None).
        val_size: number of validation pairs after filtering (all when None).
        max_length: tokens per sequence (prompt + completion).
        max_prompt_length: tokens kept from the end of the prompt.
        batch_size: pairs per batch (each pair is two sequences).
        num_workers: DataLoader worker processes.
        num_proc: processes for tokenization with ``datasets.map``.
        seed: shuffling and subsampling seed.
        group_by_length: batch train pairs of similar length together (shuffled by bucket of 50
            batches, reproducible from the seed) to cut padding; batches are then less random.

    The training order depends only on ``seed`` and the epoch; under DDP each rank takes its share
    of that order (``sampler.PairSampler``).
    """

    def __init__(
        self,
        dataset: str = DEFAULT_DATASET,
        format: Literal["auto", "ultrafeedback", "conversational", "plain", "hh-rlhf"] = "auto",
        columns: dict[str, str] | None = None,
        tokenizer: str = DEFAULT_MODEL,
        train_split: str | None = None,
        val_split: str | None = None,
        val_fraction: float = 0.05,
        train_size: int | None = None,
        val_size: int | None = None,
        max_length: int = 512,
        max_prompt_length: int = 256,
        batch_size: int = 4,
        num_workers: int = 0,
        num_proc: int | None = None,
        seed: int = 42,
        group_by_length: bool = False,
    ) -> None:
        super().__init__()
        problems = []
        if max_prompt_length >= max_length:
            problems.append(
                f"max_prompt_length ({max_prompt_length}) must be below max_length ({max_length}) "
                "to leave room for the reply"
            )
        if batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {batch_size}")
        if not 0 < val_fraction < 1:
            problems.append(f"val_fraction must be in (0, 1), got {val_fraction}")
        for name, size in (("train_size", train_size), ("val_size", val_size)):
            if size is not None and size < 1:
                problems.append(f"{name} must be positive or null, got {size}")
        if problems:
            raise ConfigError("data settings: " + "; ".join(problems))
        self.save_hyperparameters()
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.splits: dict[str, datasets.Dataset] = {}
        # per source split: rows, pairs, truncated, dropped {reason: count}
        self.report: dict[str, dict] = {}
        self.split_names: dict[str, str] = {}
        self.sampler: PairSampler | None = None
        # where a resumed fit picks up (load_state_dict), applied when the sampler is built
        self._resume_position: dict[str, int] | None = None

    def prepare_data(self) -> None:
        # Downloads and conversions happen once per machine, before any process loads them.
        resolve_model(self.hparams.tokenizer)
        self._load_raw()

    def setup(self, stage: str) -> None:
        if self.splits:
            return
        self.tokenizer = load_tokenizer(self.hparams.tokenizer)
        raw = self._load_raw()
        train_name, val_name = self._split_names(raw)
        labels = {train_name: train_name, val_name: val_name}
        if val_name is None:
            # errors in either part should name the row of the file, not of the part
            numbered = raw[train_name].add_column(SOURCE_ROW, list(range(len(raw[train_name]))))
            carved = numbered.train_test_split(
                test_size=self.hparams.val_fraction, seed=self.hparams.seed
            )
            raw = datasets.DatasetDict({train_name: carved["train"], "validation": carved["test"]})
            val_name = "validation"
            labels[val_name] = train_name
        self.split_names = {"train": train_name, "val": val_name}
        sizes = {"train": self.hparams.train_size, "val": self.hparams.val_size}
        for stage_name, split in (("train", train_name), ("val", val_name)):
            self.splits[stage_name] = self._prepare_split(
                raw[split], split, sizes[stage_name], labels[split]
            )

    def train_dataloader(self) -> DataLoader:
        split = self.splits["train"]
        lengths = [
            len(p) + len(c) + len(r)
            for p, c, r in zip(
                split["prompt_ids"], split["chosen_ids"], split["rejected_ids"], strict=True
            )
        ]
        trainer = self.trainer
        self.sampler = PairSampler(
            lengths,
            self.hparams.batch_size,
            seed=self.hparams.seed,
            group_by_length=self.hparams.group_by_length,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        if self._resume_position is not None:
            self._resume(self._resume_position, len(split))
            self._resume_position = None
        return self._loader(split, shuffle=False, sampler=self.sampler)

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the pair order; Lightning keeps it in every checkpoint.

        ``consumed`` counts global pairs: batches the loop has processed in the sampler's epoch
        (each one's optimizer step done, or a micro-batch's gradients added) x batch x ranks.
        """
        trainer = self.trainer
        if self.sampler is None or trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        global_batch = self.hparams.batch_size * self.sampler.num_replicas
        return {
            "epoch": self.sampler.epoch,
            "consumed": batches * global_batch,
            "pairs": len(self.sampler.lengths),
            "global_batch": global_batch,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        # Lightning calls this before train_dataloader(), so the position waits for the sampler.
        self._resume_position = dict(state_dict) if state_dict else None

    def _resume(self, position: dict[str, int], pairs: int) -> None:
        # Lightning counts the epoch's batches done; both must mean what they meant when saved.
        global_batch = self.hparams.batch_size * self.sampler.num_replicas
        problems = []
        if position["pairs"] != pairs:
            problems.append(f"{position['pairs']} train pairs, these data settings give {pairs}")
        if position["global_batch"] != global_batch:
            problems.append(
                f"{position['global_batch']} pairs per batch over all devices, this fit "
                f"{global_batch} (data.batch_size x devices)"
            )
        if problems:
            raise ConfigError(
                "the checkpoint was trained on " + "; ".join(problems) + ": resume with the data "
                "settings and devices of the interrupted fit, or start without --ckpt_path"
            )
        self.sampler.resume(position["epoch"], position["consumed"])
        log.info(
            "resuming epoch %d after %d of its %d train pairs",
            self.sampler.epoch,
            self.sampler.skip,
            pairs,
        )
        # Lightning warns that a mid-epoch resume repeats data unless the loader is stateful;
        # the sampler skips what was consumed, so the warning would be false here.
        warnings.filterwarnings(
            "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _loader(self, split: datasets.Dataset, shuffle: bool, **kwargs) -> DataLoader:
        pad_token_id = self.tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = self.tokenizer.eos_token_id
        return DataLoader(
            split,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=partial(collate_pairs, pad_token_id=pad_token_id),
            # Each new iterator draws a worker seed from this generator, not from torch's global
            # one: a validation run does not shift the dropout masks of the steps after it, so a
            # fit resumed from a checkpoint saved before a validation draws what an uninterrupted
            # one does.
            generator=torch.Generator().manual_seed(self.hparams.seed),
            **kwargs,
        )

    def _load_raw(self) -> datasets.DatasetDict:
        source = resolve_dataset(self.hparams.dataset)
        path = Path(source)
        try:
            if path.is_dir() and (
                (path / "dataset_dict.json").exists() or (path / "state.json").exists()
            ):
                loaded = datasets.load_from_disk(str(path))
            elif path.is_dir():
                files = {p.stem: str(p) for p in sorted(path.iterdir()) if p.suffix in FILE_FORMATS}
                if not files:
                    raise DataError(f"{path}: no .json, .jsonl or .parquet files")
                formats = {FILE_FORMATS[Path(f).suffix] for f in files.values()}
                if len(formats) > 1:
                    raise DataError(f"{path}: mixes JSON and Parquet files; keep one format")
                loaded = datasets.load_dataset(formats.pop(), data_files=files)
            elif path.suffix in FILE_FORMATS:
                if not path.exists():
                    raise DataError(f"{path}: no such file")
                loaded = datasets.load_dataset(FILE_FORMATS[path.suffix], data_files=str(path))
            else:
                loaded = datasets.load_dataset(source)
        except DataError:
            raise
        except Exception as error:  # datasets raises many types; the user needs the source named
            raise DataError(f"could not load dataset {self.hparams.dataset!r}: {error}") from error
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        return loaded

    def _split_names(self, raw: datasets.DatasetDict) -> tuple[str, str | None]:
        def pick(wanted: str | None, candidates: tuple[str, ...], role: str) -> str | None:
            if wanted is not None:
                if wanted not in raw:
                    raise DataError(
                        f"{self.hparams.dataset}: no {role} split {wanted!r}; splits: {list(raw)}"
                    )
                return wanted
            return next((name for name in candidates if name in raw), None)

        train = pick(self.hparams.train_split, TRAIN_SPLITS, "train")
        if train is None:
            train = next(iter(raw))
        val = pick(self.hparams.val_split, VAL_SPLITS, "validation")
        return train, val

    def _prepare_split(self, raw: datasets.Dataset, split: str, size: int | None, label: str):
        if len(raw) == 0:
            raise DataError(f"{self.hparams.dataset}: split {split!r} is empty")
        raw = self._rename_columns(raw, split)
        row_format = self.hparams.format
        if row_format == "auto":
            row_format = detect_format(raw[0], f"{self.hparams.dataset} ({split})")
        checked = raw.map(
            _check_row,
            fn_kwargs={"split": label, "row_format": row_format},
            with_indices=True,
            desc=f"checking {split}",
        )
        reasons = Counter(r for r in checked["filter_reason"] if r)
        kept = checked.filter(lambda reason: reason is None, input_columns="filter_reason")
        if len(kept) == 0:
            raise DataError(
                f"{self.hparams.dataset}: nothing left of split {split!r} after filters"
            )
        kept = kept.shuffle(seed=self.hparams.seed)
        if size is not None:
            kept = kept.select(range(min(size, len(kept))))
        encoded = kept.map(
            _encode_row,
            fn_kwargs={
                "tokenizer": self.tokenizer,
                "max_length": self.hparams.max_length,
                "max_prompt_length": self.hparams.max_prompt_length,
                "split": label,
                "row_format": row_format,
            },
            with_indices=True,
            remove_columns=kept.column_names,
            num_proc=self.hparams.num_proc,
            new_fingerprint=tokenization_fingerprint(
                kept._fingerprint,
                self.tokenizer,
                self.hparams.max_length,
                self.hparams.max_prompt_length,
                row_format,
            ),
            desc=f"tokenizing {split}",
        )
        truncated = sum(encoded["truncated"])
        self.report[split] = {
            "rows": len(raw),
            "pairs": len(encoded),
            "truncated": truncated,
            "dropped": dict(reasons),
        }
        log.info(
            "%s: %d rows -> %d pairs; dropped %s; %d truncated to max_length=%d/"
            "max_prompt_length=%d",
            split,
            len(raw),
            len(encoded),
            dict(reasons) or "none",
            truncated,
            self.hparams.max_length,
            self.hparams.max_prompt_length,
        )
        # pair_index keys the precomputed reference log-probs (DPOModule.precompute_reference)
        encoded = encoded.add_column("pair_index", list(range(len(encoded))))
        return encoded.with_format(
            columns=["prompt_ids", "chosen_ids", "rejected_ids", "pair_index"]
        )

    def _rename_columns(self, raw: datasets.Dataset, split: str) -> datasets.Dataset:
        mapping = self.hparams.columns or {}
        unknown = sorted(set(mapping.values()) - set(raw.column_names))
        if unknown:
            raise DataError(
                f"{self.hparams.dataset} ({split}): data.columns names {unknown}, which are not "
                f"columns; columns: {raw.column_names}"
            )
        # the format's name wins over a column that already carries it
        clashing = [ours for ours in mapping if ours in raw.column_names and mapping[ours] != ours]
        raw = raw.remove_columns(clashing)
        renames = {theirs: ours for ours, theirs in mapping.items() if theirs != ours}
        return raw.rename_columns(renames)


def tokenization_fingerprint(
    rows_fingerprint: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    max_prompt_length: int,
    row_format: str,
) -> str:
    """Cache key of a tokenized split: the rows, the tokenizer and template, the length settings.

    datasets would otherwise hash the mapped function by name, so a changed tokenizer file or a
    new version of the formatting code could be served a stale cache; the code of the modules that
    turn rows into token ids is part of the key for that reason.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        vocabulary = backend.to_str()
    else:
        vocabulary = repr(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256()
    for part in (
        rows_fingerprint,
        vocabulary,
        tokenizer.chat_template or "",
        repr(tokenizer.all_special_tokens),
        f"{max_length}/{max_prompt_length}/{row_format}",
        Path(batches.__file__).read_text(),
        Path(pairs.__file__).read_text(),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model named as in the config, with a chat template required."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    if not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer of {name!r} has no chat template; use an instruct/chat model"
        )
    return tokenizer


def _check_row(row: dict, index: int, split: str, row_format: str) -> dict:
    pair = extract_pair(row, f"{split} row {row.get(SOURCE_ROW, index)}", row_format)
    return {"filter_reason": filter_reason(row, pair)}


def _encode_row(
    row: dict, index: int, tokenizer, max_length, max_prompt_length, split, row_format
) -> dict:
    pair = extract_pair(row, f"{split} row {row.get(SOURCE_ROW, index)}", row_format)
    return encode_pair(pair, tokenizer, max_length, max_prompt_length)
