"""LightningDataModule over preference pairs: load, check, filter, subsample, tokenize, batch.

Each dataset (``data.dataset``, or every entry of ``data.mixture``) goes rows -> checked pairs ->
token ids on its own (``loading`` reads it, ``pairs`` checks and splits rows, ``batches``
tokenizes); the parts of a mixture are then weighted, capped and concatenated into one train and one
validation split.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from typing import Literal

import datasets
import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lit_dpo.compat import dataset_fingerprint, epoch_batches_processed
from lit_dpo.data.batches import collate_pairs, encode_pair
from lit_dpo.data.loading import SOURCE_LINE, load_source
from lit_dpo.data.pairs import (
    INTERNAL_PREFIX,
    PreferencePair,
    detect_format,
    extract_pair,
    filter_reason,
    visible_columns,
)
from lit_dpo.data.sampler import EvaluationSampler, PairSampler
from lit_dpo.data.unpaired import (
    ENCODED_COLUMNS,
    UNPAIRED,
    extract_unpaired,
    is_unpaired,
    label_counts,
    unpair_encoded,
    with_kl_completions,
)
from lit_dpo.errors import ConfigError, DataError, RowError
from lit_dpo.progress import Progress, library_bars_quiet
from lit_dpo.sources import DEFAULT_DATASET, DEFAULT_MODEL, pad_token_id, resolve_model

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train_prefs", "train")
VAL_SPLITS = ("test_prefs", "test", "validation")
# the row's index in its file, kept when a validation part is carved out of it
SOURCE_ROW = INTERNAL_PREFIX + "source_row"
Format = Literal["auto", "ultrafeedback", "conversational", "plain", "hh-rlhf", "unpaired"]
# how many skipped rows are shown with their file and row, as examples to fix
SHOWN_BAD_ROWS = 3
# a train pair's flag: whether the SFT term learns its chosen reply (DatasetPart.sft)
SFT_COLUMN = "sft"
# rows tried in turn when detecting a split's format
DETECT_ROWS = 20


@dataclass
class DatasetPart:
    """One dataset of a mixture.

    Args:
        dataset: hub id, local file or folder, or ``embedded:ultrafeedback-mini``.
        format: row format of this dataset, or ``auto``.
        columns: column renaming for this dataset, e.g. ``{prompt: question}``.
        train_split: its split to train on (default: ``train_prefs``, else ``train``).
        val_split: its held-out split (default: ``test_prefs``, ``test``, ``validation``, else a
            seeded ``val_fraction`` of its train split).
        weight: scales how many of its train pairs are used: 0.25 keeps a seeded quarter, 2 uses
            every pair twice.
        max_pairs: at most this many of its train pairs (after ``weight``).
        sft: whether the SFT term (``model.objective.sft_weight``, and CPO's and ORPO's NLL)
            learns this part's chosen replies; false keeps it to the preference loss, e.g. a
            harmlessness set whose chosen replies are often refusals, mixed with a helpful set.
    """

    dataset: str
    format: Format = "auto"
    columns: dict[str, str] | None = None
    train_split: str | None = None
    val_split: str | None = None
    weight: float = 1.0
    max_pairs: int | None = None
    sft: bool = True


class PreferenceDataModule(LightningDataModule):
    """Preference pairs for DPO.

    Args:
        dataset: hub id, local file or folder, or ``embedded:ultrafeedback-mini``.
        format: row format, or ``auto`` to detect it from the columns: ``ultrafeedback``
            (conversations sharing all but the last turn, also the implicit-prompt format),
            ``conversational`` (prompt messages + assistant replies), ``plain`` (strings),
            ``hh-rlhf`` (Anthropic HH transcripts); ``unpaired`` (``prompt``, ``completion``,
            boolean ``label``: TRL's unpaired format, for KTO).
        columns: rename columns to the names a format expects, e.g.
            ``{prompt: question, chosen: good, rejected: bad}``.
        mixture: several datasets in one run, each with its own format, columns, splits, weight
            and size cap (``DatasetPart``); replaces ``dataset``, ``format``, ``columns``,
            ``train_split`` and ``val_split``.
        tokenizer: model whose tokenizer and chat template format the pairs (linked to
            ``model.model`` by the CLI).
        train_split: split to train on; by default the first of ``train_prefs``, ``train``.
        val_split: held-out split; by default the first of ``test_prefs``, ``test``,
            ``validation``, else a seeded ``val_fraction`` of the train split.
        val_fraction: share of train carved out for validation when there is no held-out split.
        train_size: number of train pairs after filtering (all when None); with ``unpair`` a
            pair counts once, as its two rows (in a mixture too).
        val_size: number of validation pairs after filtering (all when None).
        max_length: tokens per sequence (prompt + completion).
        max_prompt_length: tokens kept from the end of the prompt.
        batch_size: pairs per batch (each pair is two sequences).
        num_workers: DataLoader worker processes.
        num_proc: processes for tokenization with ``datasets.map``.
        seed: shuffling and subsampling seed.
        group_by_length: batch train pairs of similar length together (shuffled by bucket of 50
            batches, reproducible from the seed) to cut padding; batches are then less random.
            (Validation pairs are always scored longest first: the same metrics, less padding.)
        unpair: turn paired train data into unpaired rows for KTO, as TRL's
            ``unpair_preference_dataset``: each chosen reply a desirable row, each rejected reply an
            undesirable one (twice as many rows). Validation stays paired where its source is, so
            held-out accuracies compare with DPO runs. Needed to mix paired and unpaired datasets.
        on_bad_row: ``stop`` at the first malformed row (or invalid JSON line) with its file,
            row and reason; ``skip`` drops such rows and reports how many and why.
        trust_remote_code: run tokenizer code from the hub (linked to
            ``model.load.trust_remote_code`` by the CLI).

    The training order depends only on ``seed`` and the epoch; under DDP each rank takes its share
    of that order (``sampler.PairSampler``), and validation visits every pair once over all ranks
    (``sampler.EvaluationSampler``). Under DDP the first process of each machine tokenizes before
    the others, which then read its ``datasets`` cache.
    """

    def __init__(
        self,
        dataset: str = DEFAULT_DATASET,
        format: Format = "auto",
        columns: dict[str, str] | None = None,
        mixture: list[DatasetPart] | None = None,
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
        on_bad_row: Literal["stop", "skip"] = "stop",
        trust_remote_code: bool = False,
        unpair: bool = False,
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
        if mixture is not None and not mixture:
            problems.append("mixture is empty; give at least one dataset or leave it null")
        # dicts from Python callers; the CLI gives DatasetPart already
        mixture = [DatasetPart(**p) if isinstance(p, dict) else p for p in mixture or []]
        for i, part in enumerate(mixture):
            if part.weight <= 0:
                problems.append(f"mixture[{i}].weight must be positive, got {part.weight}")
            if part.max_pairs is not None and part.max_pairs < 1:
                problems.append(f"mixture[{i}].max_pairs must be positive, got {part.max_pairs}")
        if problems:
            raise ConfigError("data settings: " + "; ".join(problems))
        self.parts = mixture or [
            DatasetPart(dataset, format, columns, train_split, val_split)
        ]
        # plain dicts, so hparams.yaml and checkpoints hold no lit_dpo class
        self.save_hyperparameters(ignore=["mixture"])
        self.hparams["mixture"] = [asdict(p) for p in self.parts] if mixture else None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.splits: dict[str, datasets.Dataset] = {}
        # per stage (train, val): rows, pairs, truncated, dropped {reason: count}, and the same
        # per dataset under "parts"
        self.report: dict[str, dict] = {}
        # per stage: the source split's name ("train_prefs"), or "mixture of N datasets"
        self.split_names: dict[str, str] = {}
        self.sampler: PairSampler | None = None
        # where a resumed fit picks up (load_state_dict), applied when the sampler is built
        self._resume_position: dict[str, int] | None = None

    def prepare_data(self) -> None:
        # Downloads and conversions happen once per machine, before any process loads them.
        resolve_model(self.hparams.tokenizer)
        for part in self.parts:
            load_source(part.dataset, skip_bad_lines=self.hparams.on_bad_row == "skip")

    def setup(self, stage: str) -> None:
        if self.splits:
            return
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            self._setup_splits()
            return
        # The first process of each machine fills the datasets cache; the others then read it
        # instead of tokenizing the same pairs at the same time. A failure waits for the barrier,
        # so that no rank waits for ever: the others then fail the same way on the same data.
        failure = None
        if trainer.local_rank == 0:
            try:
                self._setup_splits()
            except Exception as error:  # re-raised below, after the barrier
                failure = error
        trainer.strategy.barrier("lit_dpo_tokenize")
        if failure is not None:
            raise failure
        if trainer.local_rank != 0:
            self._setup_splits()

    def _setup_splits(self) -> None:
        self.tokenizer = load_tokenizer(self.hparams.tokenizer, self.hparams.trust_remote_code)
        single = len(self.parts) == 1
        prepared = {"train": [], "val": []}
        for part in self.parts:
            for stage_name, (encoded, report) in self._prepare_part(part, single).items():
                prepared[stage_name].append((encoded, report))
        sizes = {"train": self.hparams.train_size, "val": self.hparams.val_size}
        for stage_name, results in prepared.items():
            parts, drawn_apart = [e for e, _ in results], False
            if not single and sizes[stage_name] is not None:
                # the size counts pairs: draw before unpairing, so that a pair's two KTO rows
                # are kept or dropped together and data.train_size means what it does alone
                parts = _drawn(parts, sizes[stage_name], self.hparams.seed)
                drawn_apart = len(parts) > 1
            parts = self._unpaired_parts(parts, stage_name)
            encoded = datasets.concatenate_datasets(parts)
            if drawn_apart:
                # parts drawn one by one (paired beside unpaired): interleave them, as one
                # shuffled draw would have
                encoded = encoded.shuffle(seed=self.hparams.seed).flatten_indices()
            unpaired = "label" in encoded.column_names
            if unpaired:
                encoded = with_kl_completions(encoded, self.hparams.max_length)
            # pair_index keys the precomputed reference log-probs (precompute_reference)
            encoded = encoded.add_column("pair_index", list(range(len(encoded))))
            columns = (
                [*ENCODED_COLUMNS, "pair_index"]
                if unpaired
                else ["prompt_ids", "chosen_ids", "rejected_ids", "pair_index"]
            )
            if SFT_COLUMN in encoded.column_names and not unpaired:
                columns.append(SFT_COLUMN)
            self.splits[stage_name] = encoded.with_format(columns=columns)
            self.report[stage_name] = _merge_reports([r for _, r in results], len(encoded))
            kept = encoded.with_format(None)
            if not single and sizes[stage_name] is not None and "truncated" in kept.column_names:
                # the size drew some of the parts' pairs: count the truncated among those kept,
                # not among every part's (a health alarm divides this by the pairs kept)
                self.report[stage_name]["truncated"] = sum(kept["truncated"])
            if unpaired:
                self.report[stage_name].update(
                    unpaired=True, **label_counts(kept["label"])
                )
            self.split_names[stage_name] = (
                results[0][1]["split"] if single else f"mixture of {len(results)} datasets"
            )

    @property
    def unpaired(self) -> dict[str, bool]:
        """Per prepared stage (train, val): whether it holds unpaired rows (KTO) or pairs."""
        return {stage: "label" in split.column_names for stage, split in self.splits.items()}

    def _unpaired_parts(
        self, parts: list[datasets.Dataset], stage: str
    ) -> list[datasets.Dataset]:
        """A stage's encoded datasets, all paired or all unpaired: paired ones are unpaired in
        training with ``unpair``, and where they meet an unpaired dataset of the same stage."""
        kinds = ["label" in part.column_names for part in parts]
        to_unpair = any(kinds) or (stage == "train" and self.hparams.unpair)
        if not to_unpair or all(kinds):
            return parts
        if stage == "train" and not self.hparams.unpair:
            raise ConfigError(
                "data.mixture mixes paired and unpaired (prompt, completion, label) datasets; set "
                "data.unpair true to train on every pair as two unpaired rows (KTO)"
            )
        return [
            part if kind else unpair_encoded(part, self.hparams.seed)
            for part, kind in zip(parts, kinds, strict=True)
        ]

    def train_dataloader(self) -> DataLoader:
        split = self.splits["train"]
        trainer = self.trainer
        self.sampler = PairSampler(
            split.with_format(None)["num_tokens"],
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
        batches = epoch_batches_processed(trainer)
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
        split, trainer = self.splits["val"], self.trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if len(split) < world_size:
            raise DataError(
                f"the validation split has {len(split)} pairs, fewer than "
                f"the {world_size} processes; every process needs one (raise "
                "data.val_size or data.val_fraction)"
            )
        # longest first: batches of like lengths pad little, and the largest (the memory peak)
        # comes first; the metrics are means over pairs, so the order does not change them
        lengths = split.with_format(None)["num_tokens"]
        order = sorted(range(len(split)), key=lambda i: -lengths[i])
        sampler = EvaluationSampler(len(split), world_size, rank, order)
        return self._loader(split, shuffle=False, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _loader(self, split: datasets.Dataset, shuffle: bool, **kwargs) -> DataLoader:
        return DataLoader(
            split,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=partial(collate_pairs, pad_token_id=pad_token_id(self.tokenizer)),
            # Each new iterator draws a worker seed from this generator, not from torch's global
            # one: a validation run does not shift the dropout masks of the steps after it, so a
            # fit resumed from a checkpoint saved before a validation draws what an uninterrupted
            # one does.
            generator=torch.Generator().manual_seed(self.hparams.seed),
            **kwargs,
        )

    def _prepare_part(self, part: DatasetPart, single: bool) -> dict[str, tuple]:
        """One dataset's train and validation pairs, tokenized, with their reports."""
        raw = load_source(part.dataset, skip_bad_lines=self.hparams.on_bad_row == "skip")
        splits = raw.splits
        train_name, val_name = _pick_splits(splits, part)

        def label(split: str) -> str:
            # errors name the file a row is in, or the dataset and split
            return raw.files.get(split) or f"{part.dataset} ({split})"

        labels = {train_name: label(train_name), val_name: label(val_name)}
        if val_name is None:
            # errors in either part should name the row of the file, not of the part
            numbered = splits[train_name].add_column(
                SOURCE_ROW, list(range(len(splits[train_name])))
            )
            carved = numbered.train_test_split(
                test_size=self.hparams.val_fraction, seed=self.hparams.seed
            )
            splits = {train_name: carved["train"], "validation": carved["test"]}
            val_name = "validation"
            labels[val_name] = labels[train_name]
        train_cap = part.max_pairs if part.weight == 1 else None
        if single and self.hparams.train_size is not None:
            train_cap = min(self.hparams.train_size, train_cap or self.hparams.train_size)
        prepared = {}
        for stage_name, split, cap in (
            ("train", train_name, train_cap),
            ("val", val_name, self.hparams.val_size if single else None),
        ):
            # lines of a file whose validation part was carved out count once, in train
            skipped_lines = raw.skipped.get(split, 0) if split in raw.splits else 0
            encoded, report = self._prepare_split(
                splits[split], split, cap, labels[split], part, skipped_lines
            )
            report.update(dataset=part.dataset, split=split)
            prepared[stage_name] = (encoded, report)
        encoded, report = prepared["train"]
        if part.weight != 1 or part.max_pairs is not None:
            encoded = _weighted(encoded, part.weight, part.max_pairs, self.hparams.seed)
            report.update(pairs=len(encoded), weight=part.weight)
            prepared["train"] = (encoded, report)
        if not all(p.sft for p in self.parts):
            # which pairs the SFT term learns from (batches carry it as "sft")
            prepared["train"] = (encoded.add_column(SFT_COLUMN, [part.sft] * len(encoded)), report)
        return prepared

    def _prepare_split(
        self,
        raw: datasets.Dataset,
        split: str,
        size: int | None,
        label: str,
        part: DatasetPart,
        skipped_lines: int = 0,
    ) -> tuple[datasets.Dataset, dict]:
        if len(raw) == 0:
            raise DataError(f"{label}: split {split!r} is empty")
        raw = _rename_columns(raw, part, split)
        row_format = part.format
        if row_format == "auto":
            row_format = _detect_format(raw, label)
        checked = raw.map(
            _check_row,
            fn_kwargs={
                "label": label,
                "row_format": row_format,
                "skip_bad": self.hparams.on_bad_row == "skip",
            },
            with_indices=True,
            desc=f"checking {split}",
        )
        reasons = Counter(r for r in checked["filter_reason"] if r)
        if skipped_lines:
            reasons["bad row: invalid JSON line"] = skipped_lines
        bad_examples = [p for p in checked["problem"] if p][:SHOWN_BAD_ROWS]
        if bad_examples:
            log.warning("%s: skipped malformed rows, e.g.\n  %s", label, "\n  ".join(bad_examples))
        kept = checked.filter(lambda reason: reason is None, input_columns="filter_reason")
        kept = kept.remove_columns(["filter_reason", "problem"])
        if len(kept) == 0:
            raise DataError(
                f"{label}: nothing left of split {split!r} after filters "
                f"(dropped: {dict(reasons) or 'none'})"
            )
        kept = kept.shuffle(seed=self.hparams.seed)
        if size is not None:
            kept = kept.select(range(min(size, len(kept))))
        # datasets' own bar is off where stderr is a log file: say how far tokenizing is instead
        progress = None
        if library_bars_quiet():
            progress = Progress(f"tokenizing {split}", len(kept), "pairs")
        encoded = kept.map(
            _encode_row,
            fn_kwargs={
                "tokenizer": self.tokenizer,
                "max_length": self.hparams.max_length,
                "max_prompt_length": self.hparams.max_prompt_length,
                "label": label,
                "row_format": row_format,
                "progress": progress,
            },
            with_indices=True,
            remove_columns=kept.column_names,
            num_proc=self.hparams.num_proc,
            new_fingerprint=tokenization_fingerprint(
                dataset_fingerprint(kept),
                self.tokenizer,
                self.hparams.max_length,
                self.hparams.max_prompt_length,
                row_format,
            ),
            desc=f"tokenizing {split}",
        )
        if progress is not None:
            progress.finish()
        truncated = sum(encoded["truncated"])
        report = {
            "rows": len(raw) + skipped_lines,
            "pairs": len(encoded),
            "truncated": truncated,
            "dropped": dict(reasons),
        }
        log.info(
            "%s (%s): %d rows -> %d pairs; dropped %s; %d truncated to max_length=%d/"
            "max_prompt_length=%d",
            label,
            split,
            report["rows"],
            len(encoded),
            dict(reasons) or "none",
            truncated,
            self.hparams.max_length,
            self.hparams.max_prompt_length,
        )
        return encoded, report


def _detect_format(raw: datasets.Dataset, label: str) -> str:
    """The format of the first of a split's first rows that any format fits: a malformed first
    row (an empty cell) is then named by the row check, not taken for an unknown format."""
    if is_unpaired(dict.fromkeys(raw.column_names)):
        return UNPAIRED
    first_error = None
    for row in raw.select(range(min(len(raw), DETECT_ROWS))):
        try:
            return detect_format(row, label)
        except DataError as error:
            first_error = first_error or error
    raise first_error


def _pick_splits(raw: datasets.DatasetDict, part: DatasetPart) -> tuple[str, str | None]:
    def pick(wanted: str | None, candidates: tuple[str, ...], role: str) -> str | None:
        if wanted is not None:
            if wanted not in raw:
                raise DataError(f"{part.dataset}: no {role} split {wanted!r}; splits: {list(raw)}")
            return wanted
        return next((name for name in candidates if name in raw), None)

    train = pick(part.train_split, TRAIN_SPLITS, "train")
    if train is None:
        train = next(iter(raw))
    val = pick(part.val_split, VAL_SPLITS, "validation")
    return train, val


def _rename_columns(raw: datasets.Dataset, part: DatasetPart, split: str) -> datasets.Dataset:
    mapping = part.columns or {}
    unknown = sorted(set(mapping.values()) - set(raw.column_names))
    if unknown:
        raise DataError(
            f"{part.dataset} ({split}): data.columns names {unknown}, which are not "
            f"columns; columns: {visible_columns(raw.column_names)}"
        )
    # the format's name wins over a column that already carries it
    clashing = [ours for ours in mapping if ours in raw.column_names and mapping[ours] != ours]
    raw = raw.remove_columns(clashing)
    renames = {theirs: ours for ours, theirs in mapping.items() if theirs != ours}
    return raw.rename_columns(renames)


def _drawn(parts: list[datasets.Dataset], size: int, seed: int) -> list[datasets.Dataset]:
    """A seeded draw of ``size`` of the parts' pairs (or unpaired rows) taken together, as
    ``concatenate_datasets(parts).shuffle(seed).select(range(size))`` would draw them.

    Parts that share their columns come back as that one dataset, in the draw's order; parts that
    do not (paired beside unpaired, before ``unpair``) come back one by one, each with its drawn
    rows, the empty ones left out."""
    total = sum(len(part) for part in parts)
    # datasets' own shuffle: numpy's default_rng(seed).permutation
    order = np.random.default_rng(seed).permutation(total)[: min(size, total)]
    if len({tuple(sorted(part.column_names)) for part in parts}) == 1:
        return [datasets.concatenate_datasets(parts).select(order)]
    drawn, start = [], 0
    for part in parts:
        mine = [int(i) - start for i in order if start <= i < start + len(part)]
        start += len(part)
        if mine:
            drawn.append(part.select(mine))
    return drawn


def _weighted(
    encoded: datasets.Dataset, weight: float, max_pairs: int | None, seed: int
) -> datasets.Dataset:
    """``round(weight * n)`` of the (already shuffled) pairs, repeating them when weight > 1,
    then at most ``max_pairs``."""
    count = max(1, round(weight * len(encoded)))
    if max_pairs is not None:
        count = min(count, max_pairs)
    return encoded.select([i % len(encoded) for i in range(count)])


def _merge_reports(reports: list[dict], pairs: int) -> dict:
    dropped = Counter()
    for report in reports:
        dropped.update(report["dropped"])
    return {
        "rows": sum(r["rows"] for r in reports),
        "pairs": pairs,
        "truncated": sum(r["truncated"] for r in reports),
        "dropped": dict(dropped),
        "parts": reports,
    }


# The format of a tokenized split: bump it when the code that turns rows into token ids changes
# what it writes (``pairs.extract_pair``, ``batches.encode_pair``, the columns of ``_encode_row``).
# The cache is keyed on it rather than on that code's text, so a comment or a refactor keeps the
# cache; tests/test_data_cache.py fails when the encoding of its fixed pairs changes without a bump.
TOKENIZATION_VERSION = 1


def tokenization_fingerprint(
    rows_fingerprint: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    max_prompt_length: int,
    row_format: str,
) -> str:
    """Cache key of a tokenized split: the rows, the tokenizer and template, the length settings
    and :data:`TOKENIZATION_VERSION`.

    datasets would otherwise hash the mapped function by name, so a changed tokenizer file or a
    new encoding could be served a stale cache.
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
        f"tokenization format {TOKENIZATION_VERSION}",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def load_tokenizer(name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a model named as in the config, with a chat template required."""
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model(name), trust_remote_code=trust_remote_code
    )
    if not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer of {name!r} has no chat template; use an instruct/chat model"
        )
    return tokenizer


def _where(row: dict, index: int, label: str) -> str:
    """How errors name a row: ``file.csv line 12`` (a CSV row's first line), else
    ``file.jsonl row 11`` (its index in the file)."""
    if row.get(SOURCE_LINE) is not None:
        return f"{label} line {row[SOURCE_LINE]}"
    return f"{label} row {row.get(SOURCE_ROW, index)}"


def _check_row(row: dict, index: int, label: str, row_format: str, skip_bad: bool) -> dict:
    where = _where(row, index, label)
    try:
        if row_format == UNPAIRED:
            extract_unpaired(row, where)
            return {"filter_reason": None, "problem": None}
        pair = extract_pair(row, where, row_format)
    except RowError as error:
        if not skip_bad:
            raise
        return {"filter_reason": f"bad row: {error.reason}", "problem": str(error)}
    return {"filter_reason": filter_reason(row, pair), "problem": None}


def _encode_row(
    row: dict, index: int, tokenizer, max_length, max_prompt_length, label, row_format, progress
) -> dict:
    if progress is not None:
        progress.advance()
    if row_format == UNPAIRED:
        example = extract_unpaired(row, _where(row, index, label))
        pair = PreferencePair(example.prompt, example.completion, example.completion)
        encoded = encode_pair(pair, tokenizer, max_length, max_prompt_length)
        return {
            "prompt_ids": encoded["prompt_ids"],
            "completion_ids": encoded["chosen_ids"],
            "label": example.label,
            "prompt_tokens": encoded["prompt_tokens"],
            "completion_tokens": encoded["chosen_tokens"],
            "truncated": encoded["truncated"],
        }
    pair = extract_pair(row, _where(row, index, label), row_format)
    encoded = encode_pair(pair, tokenizer, max_length, max_prompt_length)
    # the sampler's length grouping reads this instead of every token list
    encoded["num_tokens"] = sum(
        len(encoded[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids")
    )
    return encoded
