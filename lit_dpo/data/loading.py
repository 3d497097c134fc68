"""A data source name -> its raw splits, and the file each split came from.

Sources: a hub dataset id (``HuggingFaceH4/ultrafeedback_binarized``), a local JSON/JSONL/CSV/
Parquet file, a folder of such files (one split per file, named by the file's stem), a folder
written by ``Dataset.save_to_disk``, or an embedded dataset (``embedded:ultrafeedback-mini``).

A JSON Lines file with a line that is not JSON, or a CSV file with a line of the wrong number of
fields, makes ``datasets`` fail with a parser message that names neither the file nor the line;
such files are read again line by line to name the first bad line, or, when bad rows are to be
skipped, to keep every good one and count the rest. A CSV file's rows also carry the line each
starts on (``SOURCE_LINE``: a quoted cell may span lines), so a bad row is named by file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from lit_dpo.errors import DataError
from lit_dpo.files import clear_leftovers, save_atomically
from lit_dpo.sources import cache_dir, resolve_dataset

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
INVALID_JSON = "invalid JSON"
# An empty CSV cell is a missing value; "NA", "null", "None" are text (pandas would read them as
# missing, and a reply may be just that word).
CSV_OPTIONS = {"keep_default_na": False, "na_values": [""]}
# a column of the line each CSV row starts on, 1-based (the header is line 1)
SOURCE_LINE = "_lit_dpo_source_line"


@dataclass
class RawSource:
    """What a source name loads to.

    Attributes:
        splits: the raw rows of each split.
        files: the local file each split was read from (absent for hub and saved datasets).
        skipped: per split, lines dropped as invalid JSON (only with ``skip_bad_lines``).
    """

    splits: datasets.DatasetDict
    files: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def load_source(name: str, skip_bad_lines: bool = False) -> RawSource:
    """Load every split of a data source.

    Args:
        name: hub id, local file or folder, or ``embedded:...``.
        skip_bad_lines: drop lines of JSON Lines files that are not a JSON object, and count them,
            instead of stopping at the first.

    Raises:
        DataError: the source is missing or unreadable; a bad line is named by file and line.
    """
    path = Path(resolve_dataset(name))
    files = {}
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return RawSource(_as_dict(_load(name, lambda: datasets.load_from_disk(str(path)))))
    if path.is_dir():
        files = {p.stem: str(p) for p in sorted(path.iterdir()) if p.suffix in FILE_FORMATS}
        if not files:
            raise DataError(f"{path}: no .json, .jsonl, .csv or .parquet files")
    elif path.suffix in FILE_FORMATS:
        if not path.exists():
            raise DataError(f"{path}: no such file")
        files = {"train": str(path)}
    else:
        return RawSource(_as_dict(_load(name, lambda: datasets.load_dataset(str(path)))))
    formats = {FILE_FORMATS[Path(f).suffix] for f in files.values()}
    if len(formats) > 1:
        raise DataError(f"{path}: mixes {' and '.join(sorted(formats))} files; keep one format")
    file_format = formats.pop()
    for split, file in files.items():
        if _is_blank(file):
            raise DataError(f"{file}: the file is empty (split {split!r}); add rows or remove it")
    options = CSV_OPTIONS if file_format == "csv" else {}
    skipped: dict[str, int] = {}
    try:
        # One file at a time: loaded together, datasets unifies their column types, and a column
        # typed as JSON in one file (mixed types) comes back undecoded ('"text"') in the other.
        loaded = datasets.DatasetDict(
            {
                split: datasets.load_dataset(file_format, data_files=file, split="train", **options)
                for split, file in files.items()
            }
        )
    except Exception as error:  # datasets raises many types; the user needs the source named
        find_bad = {"json": bad_json_lines, "csv": bad_csv_lines}.get(file_format)
        bad = {split: find_bad(file) for split, file in files.items()} if find_bad else {}
        if not any(bad.values()):
            raise DataError(f"could not load dataset {name!r}: {error}") from error
        if not skip_bad_lines:
            split, lines = next((split, lines) for split, lines in bad.items() if lines)
            number, reason = lines[0]
            raise DataError(
                f"{files[split]} line {number}: {reason}; fix or delete the line, or set "
                f"data.on_bad_row skip ({len(lines)} such line(s) in this file)"
            ) from None
        if file_format == "json":
            splits = {split: _good_json_rows(file) for split, file in files.items()}
        else:
            splits = {
                split: datasets.load_dataset(
                    "csv", data_files=file, split="train", on_bad_lines="skip", **options
                )
                for split, file in files.items()
            }
        loaded = datasets.DatasetDict(splits)
        skipped = {split: len(lines) for split, lines in bad.items()}
    if file_format == "csv":
        loaded = datasets.DatasetDict(
            {split: _with_csv_lines(rows, files[split]) for split, rows in loaded.items()}
        )
    return RawSource(_as_dict(loaded), files, skipped)


def bad_csv_lines(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, reason) of each CSV row whose number of fields is not the
    header's."""
    return [
        (line, f"{fields} fields where the header has {expected}")
        for line, fields, expected in _csv_rows(path)
        if fields != expected
    ]


def csv_row_lines(path: str | Path) -> list[int]:
    """The line each data row of a CSV file starts on, as ``datasets`` reads the rows (blank
    lines and rows with a wrong number of fields skipped)."""
    return [line for line, fields, expected in _csv_rows(path) if fields == expected]


def _csv_rows(path: str | Path) -> Iterator[tuple[int, int, int]]:
    """(line it starts on, its fields, the header's fields) of each non-blank data row."""
    with open(path, newline="", encoding="utf-8", errors="replace") as lines:
        reader = csv.reader(lines)
        expected = len(next(reader, []))
        start = reader.line_num + 1
        for row in reader:
            if row:
                yield start, len(row), expected
            start = reader.line_num + 1


def _with_csv_lines(rows: datasets.Dataset, path: str) -> datasets.Dataset:
    starts = csv_row_lines(path)
    if len(starts) != len(rows):  # read differently from pandas: rows keep their index instead
        return rows
    return rows.add_column(SOURCE_LINE, starts)


def bad_json_lines(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, reason) of each non-blank line of a JSON Lines file that is not one
    JSON object; none for a file holding one JSON array."""
    bad = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if number == 1 and line.lstrip().startswith("["):
                return []
            try:
                # NaN and Infinity are read, as datasets reads them; the row check reports them
                value = json.loads(line)
            except json.JSONDecodeError as error:
                bad.append((number, f"{INVALID_JSON} ({error.msg}, column {error.colno})"))
                continue
            if not isinstance(value, dict):
                bad.append((number, f"a row must be a JSON object, got {type(value).__name__}"))
    return bad


def _is_blank(path: str) -> bool:
    with open(path, "rb") as data:
        return not data.read(1 << 16).strip() and not data.read(1)


def _good_json_rows(path: str) -> datasets.Dataset:
    """The file's JSON-object lines, read as datasets reads a clean file (column types included).

    They are copied to a cleaned file under the cache, keyed by the file's path and mtime.
    """
    source = Path(path).resolve()
    key = hashlib.sha256(f"{source}:{source.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    cleaned = cache_dir() / "cleaned" / f"{source.stem}-{key}.jsonl"
    if not cleaned.exists():

        def copy_good_lines(staging: Path) -> None:
            with open(source, encoding="utf-8", errors="replace") as src, open(staging, "w") as out:
                for line in src:
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(value, dict):
                        out.write(line if line.endswith("\n") else line + "\n")

        # whole or not at all: a killed run leaves no cleaned file short of its last rows
        clear_leftovers([cleaned.parent])
        save_atomically(cleaned, copy_good_lines)
    return datasets.load_dataset("json", data_files=str(cleaned), split="train")


def _load(name: str, load):
    try:
        return load()
    except DataError:
        raise
    except Exception as error:  # datasets raises many types; the user needs the source named
        raise DataError(f"could not load dataset {name!r}: {error}") from error


def _as_dict(loaded) -> datasets.DatasetDict:
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    return loaded
