"""Bad rows stop a run before the model loads, naming file, row and reason, or are skipped and
counted.

Also property-based: whatever a row holds, the parser returns a valid pair or raises the project's
own error, never anything else.
"""

from __future__ import annotations

import json
import math

import datasets
import pytest
from conftest import ROWS, tiny_fit_args, ultrafeedback_row, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lit_dpo.cli import main
from lit_dpo.data.datamodule import PreferenceDataModule
from lit_dpo.data.loading import bad_json_lines
from lit_dpo.data.pairs import FORMATS, PreferencePair, extract_pair
from lit_dpo.errors import DataError, LitDPOError


def _good_rows(n: int = 6) -> list[dict]:
    return [ultrafeedback_row(*ROWS[i % len(ROWS)]) for i in range(n)]


def _data(model_dir, dataset, **kwargs) -> PreferenceDataModule:
    options = {"max_length": 64, "max_prompt_length": 32, "batch_size": 2, "val_fraction": 0.3}
    options.update(kwargs)
    return PreferenceDataModule(dataset=str(dataset), tokenizer=str(model_dir), **options)


def _bad_rows() -> list[dict]:
    """One row for each kind of malformed row, in file order."""
    empty = ultrafeedback_row("Q?", "   ", "bad")
    same = ultrafeedback_row("Q?", "same", "same")
    nan = ultrafeedback_row("Q?", "good", "bad", scores=(math.nan, 1.0))
    robot = ultrafeedback_row("Q?", "good", "bad")
    robot["chosen"][0]["role"] = robot["rejected"][0]["role"] = "robot"
    order = ultrafeedback_row("Q?", "good", "bad")
    for side in ("chosen", "rejected"):
        order[side].insert(0, {"role": "assistant", "content": "hello"})
    missing = ultrafeedback_row("Q?", "good", "bad")
    del missing["rejected"]
    number = ultrafeedback_row("Q?", "good", "bad")
    number["chosen"][1]["content"] = 42
    return [empty, same, nan, robot, order, missing, number]


# --- stop (the default) -------------------------------------------------------------------------


def test_invalid_json_line_stops_the_cli_with_file_and_line(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(row) for row in _good_rows(4)]
    lines.insert(2, '{"prompt": "Q?", "chosen": [oops]}')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(tiny_model_dir, path, tmp_path / "run"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"lit-dpo: error: {path} line 3: invalid JSON" in err
    assert "on_bad_row skip" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "adapter").exists()


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (0, "empty reply"),
        (1, "replies are identical"),
        (2, "'score_chosen' is not a finite number"),
        (3, "without a role in"),
        (4, "turns out of order"),
        (5, "missing 'rejected'"),
        (6, "content is not a string"),
    ],
)
def test_each_malformed_row_stops_setup_naming_file_row_and_reason(
    tiny_model_dir, tmp_path, index, reason
):
    rows = _good_rows(5)
    rows.insert(3, _bad_rows()[index])
    path = write_jsonl(tmp_path / "train_prefs.jsonl", rows)
    write_jsonl(tmp_path / "test_prefs.jsonl", _good_rows(2))
    with pytest.raises(DataError, match=reason) as error:
        _data(tiny_model_dir, tmp_path).setup("fit")
    assert str(error.value).startswith(f"{path} row 3: ")


def test_nan_score_in_parquet_is_a_row_error(tiny_model_dir, tmp_path):
    rows = _good_rows(4)
    rows[1]["score_rejected"] = float("nan")
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"train.parquet row 1: 'score_rejected' is not a finite"):
        _data(tiny_model_dir, tmp_path / "train.parquet").setup("fit")


def test_empty_files_are_named(tiny_model_dir, tmp_path):
    for text in ("", "\n  \n"):
        (tmp_path / "train.jsonl").write_text(text)
        with pytest.raises(DataError, match=r"train.jsonl: the file is empty"):
            _data(tiny_model_dir, tmp_path / "train.jsonl").setup("fit")
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "folder" / "train_prefs.jsonl", _good_rows(4))
    (tmp_path / "folder" / "test_prefs.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"test_prefs.jsonl: the file is empty \(split 'test_"):
        _data(tiny_model_dir, tmp_path / "folder").setup("fit")


def test_a_split_with_only_ties_says_nothing_is_left(tiny_model_dir, tmp_path):
    rows = [ultrafeedback_row(*ROWS[i], scores=(5.0, 5.0)) for i in range(4)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"nothing left of split 'train'.*'tie': 3"):
        _data(tiny_model_dir, tmp_path / "train.jsonl", val_fraction=0.01).setup("fit")


# --- skip ---------------------------------------------------------------------------------------


def test_skip_drops_every_bad_row_and_reports_how_many_and_why(tiny_model_dir, tmp_path):
    good = _good_rows(6)
    # (a NaN score next to other type clashes can be read back as null by datasets: left out)
    bad = [row for i, row in enumerate(_bad_rows()) if i != 2]
    lines = [json.dumps(row) for row in good + bad]
    lines[2:2] = ["not json at all", "[1, 2]", '{"score_chosen": NaN, "x": 1']
    (tmp_path / "train_prefs.jsonl").write_text("\n".join(lines) + "\n")
    write_jsonl(tmp_path / "test_prefs.jsonl", _good_rows(2))
    data = _data(tiny_model_dir, tmp_path, on_bad_row="skip")
    data.setup("fit")
    report = data.report["train"]
    assert report["rows"] == len(lines) == 15
    assert report["pairs"] == len(data.splits["train"]) == 6
    assert report["dropped"] == {
        "bad row: invalid JSON line": 3,
        "bad row: empty reply": 1,
        "bad row: 'chosen' and 'rejected' replies are identical": 1,
        "bad row: chosen holds a message without a role in ('system', 'user', 'assistant')": 1,
        "bad row: turns out of order: user and assistant must alternate, user first": 1,
        "bad row: missing 'rejected'": 1,
        "bad row: chosen holds a message whose content is not a string": 1,
    }
    # the pairs kept are exactly the good rows
    kept = {tuple(r["prompt_ids"]) + tuple(r["chosen_ids"]) for r in data.splits["train"]}
    write_jsonl(tmp_path / "good.jsonl", good)
    expected = _data(tiny_model_dir, tmp_path / "good.jsonl", val_fraction=0.01)
    expected.setup("fit")
    everything = [*expected.splits["train"], *expected.splits["val"]]
    assert kept == {tuple(r["prompt_ids"]) + tuple(r["chosen_ids"]) for r in everything}


def test_skip_through_lit_dpo_data_shows_the_counts(tiny_model_dir, tmp_path, capsys):
    rows = _good_rows(6) + _bad_rows()[:2]
    write_jsonl(tmp_path / "train.jsonl", rows)
    main(
        [
            "data",
            f"--model.model={tiny_model_dir}",
            f"--data.dataset={tmp_path / 'train.jsonl'}",
            "--data.val_fraction=0.2",
            "--data.on_bad_row=skip",
            "--data.max_length=64",
            "--data.max_prompt_length=32",
            f"--out={tmp_path / 'report'}",
        ]
    )
    text = (tmp_path / "report" / "data_report.md").read_text()
    assert "bad row: empty reply" in text and "replies are identical" in text


# --- property-based -----------------------------------------------------------------------------

TEXT = st.text(max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["system", "user", "assistant", "robot", ""]) | SCALARS,
            "content": TEXT | SCALARS,
        },
    )
    | SCALARS,
    max_size=4,
)
VALUES = SCALARS | MESSAGES | st.lists(SCALARS, max_size=3)
ROW = st.fixed_dictionaries(
    {},
    optional={
        "prompt": VALUES,
        "chosen": VALUES | st.text(alphabet="\nHuman:Assistant ab", max_size=40),
        "rejected": VALUES | st.text(alphabet="\nHuman:Assistant ab", max_size=40),
        "score_chosen": SCALARS,
        "score_rejected": SCALARS,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=ROW, row_format=st.sampled_from(FORMATS))
def test_parser_accepts_a_valid_pair_or_raises_only_its_own_error(row, row_format):
    try:
        pair = extract_pair(row, "row 0", row_format)
    except LitDPOError as error:
        assert str(error).startswith("row 0: ")
        return
    assert isinstance(pair, PreferencePair)
    assert pair.chosen.strip() and pair.rejected.strip() and pair.chosen != pair.rejected
    assert pair.prompt and all(isinstance(m["content"], str) for m in pair.prompt)
    assert pair.prompt[-1]["role"] == "user"


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(max_size=30) | st.builds(json.dumps, VALUES), max_size=6))
def test_json_line_scanner_names_exactly_the_lines_that_are_not_objects(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("lines") / "rows.jsonl"
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    path.write_text(text, encoding="utf-8")
    bad = {number for number, _ in bad_json_lines(path)}
    written = path.read_text(encoding="utf-8").split("\n")
    if written[0].lstrip().startswith("["):  # one JSON array, left to datasets
        assert not bad
        return
    for number, line in enumerate(written, 1):
        if not line.strip():
            continue
        try:
            is_object = isinstance(json.loads(line), dict)
        except ValueError:
            is_object = False
        assert (number not in bad) == is_object, line

