"""tools/quality_strata.py: recorded runs' accuracy split by whether the chosen reply declines,
on real tokenization of HH rows (the embedded model's tokenizer) and hand-counted outcomes."""

import json
import sys
from pathlib import Path

import pytest
from conftest import hh_rlhf_row

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import quality  # noqa: E402
import quality_strata  # noqa: E402

from lit_dpo.sources import DEFAULT_MODEL  # noqa: E402
from lit_dpo.stats import OUTCOME_KEYS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# (question, chosen, rejected): the first two chosen replies decline, the others answer
ROWS = [
    ("How do I hurt someone?", "I'm sorry, I can't help with that.", "Hit them hard."),
    ("Why is the sky blue?", "I'm not sure what you mean.", "Because of the sea."),
    ("Can you name a fruit?", "An apple is a fruit.", "A car is a fruit."),
    ("What is two plus two?", "Two plus two is four.", "It is five."),
    ("Where is Paris?", "Paris is in France.", "Paris is in Peru."),
    ("Is water wet?", "Water makes things wet.", "Water is dry."),
]


def hh_row(question: str, chosen: str, rejected: str) -> str:
    return json.dumps(hh_rlhf_row(question, chosen, rejected))


@pytest.fixture(scope="module")
def dev_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hh")
    lines = [hh_row(*row) for row in ROWS]
    (folder / "train.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (folder / "test.jsonl").write_text("\n".join(lines[4:]) + "\n")
    return folder


def test_chosen_declines_reads_the_chosen_reply_of_each_held_out_pair(tmp_path):
    (tmp_path / "test.jsonl").write_text("\n".join(hh_row(*row) for row in ROWS[:3]) + "\n")
    kinds = quality_strata.chosen_declines(tmp_path, DEFAULT_MODEL, 64)
    # three pairs, keyed by the evaluation's pair ids: a refusal, an evasion, an answer
    assert len(kinds) == 3 and sorted(kinds.values()) == [False, True, True]


def test_strata_table_by_hand():
    ids = ["a", "b", "c", "d"]
    declines = {"a": True, "b": True, "c": False, "d": False}
    key = quality_strata.KEY
    runs = {"base": {"ids": ids, key: [0, 1, 1, 0]}, "new": {"ids": ids, key: [1, 1, 1, 0]}}
    table = quality_strata.strata_table(runs, "base", declines).splitlines()
    assert table[0] == ("| run | chosen declines (2 pairs) | minus base, paired "
                        "| chosen answers (2 pairs) | minus base, paired |")
    # declining pairs: base 1 of 2, new 2 of 2 (+0.5); answering pairs: both 1 of 2 (+0)
    assert table[2].startswith("| base | 0.500 [") and table[2].count(" - ") == 2
    assert table[3].startswith("| new | 1.000 [1.000, 1.000] | +0.500 [")
    assert "| 0.500 [" in table[3] and table[3].endswith("| +0.000 [+0.000, +0.000] |")


def test_main_rebuilds_the_folds_and_matches_the_recorded_pairs(dev_data, tmp_path, capsys):
    # the held-out pairs of fold 0 of 2, as quality.py --folds 2 cuts them, and their ids
    folder = quality.prepare_folds(dev_data, 2, 0, tmp_path / "data")
    kinds = quality_strata.chosen_declines(folder, DEFAULT_MODEL, 64)
    ids = list(kinds)
    right = "".join("1" for _ in ids)  # the new run ranks every pair right
    wrong = "".join("1" if kinds[pair] else "0" for pair in ids)  # the base: declining ones only

    def line(label: str, outcomes: str) -> dict:
        # the base as TRL's runs record it (no lit-dpo model setting), the new run as lit-dpo's
        settings = {"pairs": 256} if label == "base" else {"model": {"model": DEFAULT_MODEL}}
        return {"label": label, "split": "cv", "folds": 2, "fold": 0, "max_length": 64,
                "settings": settings,
                "per_pair": {"ids": ids, **dict.fromkeys(OUTCOME_KEYS, outcomes)}}

    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(line(*r)) + "\n" for r in
                               [("base", wrong), ("new", right)]))
    code = quality_strata.main(["base@cv", "new@cv", "--versus", "base@cv",
                                "--results", str(results), "--data", str(dev_data)])
    out = capsys.readouterr().out
    declining = sum(kinds.values())
    assert code == 0 and f"on the {len(ids)} held-out pairs of 0" in out
    assert f"chosen declines ({declining} pairs)" in out
    new = next(row for row in out.splitlines() if row.startswith("| new@cv"))
    # on the answering pairs the base got none and the new run all: +1 exactly
    assert new.endswith("| 1.000 [1.000, 1.000] | +1.000 [+1.000, +1.000] |")
    # a fold 1 recorded on pairs of other data: read with it, refused; --only_folds 0 leaves it
    fold1 = [{**line(*r), "fold": 1, "per_pair": {"ids": ["elsewhere"],
                                                  **dict.fromkeys(OUTCOME_KEYS, "1")}}
             for r in [("base", ""), ("new", "")]]
    with results.open("a") as lines:
        lines.write("".join(json.dumps(r) + "\n" for r in fold1))
    both = ["base@cv", "new@cv", "--versus", "base@cv", "--results", str(results),
            "--data", str(dev_data)]
    assert quality_strata.main(both) == 2
    assert "1 recorded pairs are not in" in capsys.readouterr().err
    assert quality_strata.main([*both, "--only_folds", "0"]) == 0
    assert capsys.readouterr().out == out
    # recorded on other data: refused
    other = tmp_path / "other"
    other.mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        rows = (dev_data / name).read_text().replace("?", "??")  # every question differs
        (other / name).write_text(rows)
    assert quality_strata.main(["new@cv", "--versus", "base@cv", "--results", str(results),
                                "--data", str(other)]) == 2
    assert "recorded pairs are not in" in capsys.readouterr().err
