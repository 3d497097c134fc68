"""CSV preference files: they train end to end, bad rows are named by file and line, and the
errors that list a file's columns show only the user's columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import ROWS, cli_error, tiny_fit_args, ultrafeedback_row, write_jsonl

from lit_dpo.cli import run_lightning_cli
from lit_dpo.data.loading import SOURCE_LINE, load_source
from lit_dpo.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

HEADER = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected"]


def write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


def test_a_csv_folder_trains_end_to_end(tiny_model_dir, tmp_path):
    """plain columns and scores; a prompt spanning two lines in a quoted cell, a reply that is
    the word NA (text, not a missing value), a tie (dropped as in JSONL)."""
    data = tmp_path / "data"
    data.mkdir()
    train = [HEADER, *[[p, c, r, 8, 3] for p, c, r in ROWS[:5]]]
    train.append(["Is the sun a star?\nAnswer briefly.", "Yes, the Sun is a star.", "NA", 9, 1])
    train.append([ROWS[5][0], ROWS[5][1], ROWS[5][2], 5, 5])  # a tie
    write_csv(data / "train.csv", train)
    write_csv(data / "test.csv", [HEADER, *[[p, c, r, 7.5, 2.5] for p, c, r in ROWS[6:]]])

    cli = run_lightning_cli(tiny_fit_args(tiny_model_dir, data, tmp_path / "run"))

    report = cli.datamodule.report
    assert (report["train"]["rows"], report["train"]["pairs"]) == (7, 6)
    assert report["train"]["dropped"] == {"tie": 1}
    assert (report["val"]["rows"], report["val"]["pairs"]) == (2, 2)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert "val/loss" in json.loads((tmp_path / "run" / "fit_metrics.json").read_text())
    raw = load_source(str(data)).splits["train"]
    assert raw[5]["rejected"] == "NA" and raw[5]["prompt"].endswith("\nAnswer briefly.")
    # each row knows the line it starts on: the two-line prompt pushes the tie to line 9
    assert raw[SOURCE_LINE] == [2, 3, 4, 5, 6, 7, 9]


def test_a_bad_row_is_named_by_file_and_line(tiny_model_dir, tmp_path, capsys):
    path = write_csv(
        tmp_path / "prefs.csv",
        [
            HEADER,
            ["Two\nlines", "a good answer", "a bad answer", 8, 3],
            ["What is 2 + 2?", "", "5", 8, 3],  # line 4: the quoted cell above spans lines 2-3
            ["Who wrote Hamlet?", "Shakespeare", "Dickens", 8, 3],
        ],
    )
    err = cli_error(tiny_fit_args(tiny_model_dir, path, tmp_path / "run"), capsys)
    assert f"lit-dpo: error: {path} line 4: missing 'chosen'" in err
    # the columns listed are the file's: not the line or row lit-dpo keeps beside them
    assert f"columns: {sorted(HEADER)}" in err and "_lit_dpo" not in err


def test_a_line_with_the_wrong_number_of_fields_is_named_or_skipped(tmp_path):
    path = write_csv(
        tmp_path / "prefs.csv",
        [["prompt", "chosen", "rejected"], ["a", "b", "c"], ["d", "e", "f", "g"], ["h", "i", "j"]],
    )
    with pytest.raises(DataError, match=r"prefs\.csv line 3: 4 fields where the header has 3; "):
        load_source(str(path))
    skipped = load_source(str(path), skip_bad_lines=True)
    assert skipped.splits["train"]["prompt"] == ["a", "h"]
    assert skipped.splits["train"][SOURCE_LINE] == [2, 4]
    assert skipped.skipped == {"train": 1}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_columns_an_error_lists_are_the_files_own(tiny_model_dir, tmp_path, capsys, suffix):
    """One file, so lit-dpo carves a validation part out of it and numbers its rows
    (``_lit_dpo_source_row``; a CSV's rows also carry their line): the format error lists the
    file's columns only."""
    rows = [{"question": p, "good": c, "bad": r} for p, c, r in ROWS]
    path = tmp_path / f"prefs{suffix}"
    if suffix == ".csv":
        write_csv(path, [list(rows[0]), *[list(row.values()) for row in rows]])
    else:
        write_jsonl(path, rows)
    err = cli_error(tiny_fit_args(tiny_model_dir, path, tmp_path / "run"), capsys)
    assert "no preference format fits the columns ['bad', 'good', 'question']" in err
    assert "_lit_dpo" not in err


def test_ultrafeedback_rows_still_name_their_row(tiny_model_dir, tmp_path, capsys):
    """JSONL keeps naming rows by index (test_cli has the same): only CSV rows carry lines."""
    rows = [ultrafeedback_row("Q?", "good", "bad") for _ in range(3)]
    rows[1]["chosen"][-1]["content"] = ""
    path = write_jsonl(tmp_path / "train_prefs.jsonl", rows)
    err = cli_error(tiny_fit_args(tiny_model_dir, path, tmp_path / "run"), capsys)
    assert f"{path} row 1: empty reply" in err
