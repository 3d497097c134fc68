"""The quality study's tooling (tools/quality.py, quality_records.py, quality_eval.py): fold
splits, per-pair results, paired differences of recorded runs, the table with intervals."""

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import quality  # noqa: E402
import quality_eval  # noqa: E402
import quality_records  # noqa: E402

from lit_dpo.stats import OUTCOME_KEYS  # noqa: E402
from tests.conftest import hh_rlhf_row, torch_threads  # noqa: E402


def test_fold_parts_are_disjoint_covering_balanced_and_seeded():
    parts = quality.fold_parts(1760, 5)
    assert [len(p) for p in parts] == [352] * 5
    indices = [i for part in parts for i in part]
    assert sorted(indices) == list(range(1760))  # covering, and disjoint (no repeats)
    assert quality.fold_parts(1760, 5) == parts  # seeded
    assert quality.fold_parts(1760, 5, seed=1) != parts
    assert parts[0][:5] != [0, 1, 2, 3, 4]  # shuffled, not cut in file order
    assert [len(p) for p in quality.fold_parts(11, 3)] == [4, 4, 3]
    with pytest.raises(ValueError, match="2 <= folds <= items"):
        quality.fold_parts(3, 4)


def hh_row(index: int) -> dict:
    return hh_rlhf_row(f"question {index}?", f"good answer {index}", f"bad answer {index}")


def test_prepare_folds_holds_out_each_part_once(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    rows = [json.dumps(hh_row(i)) for i in range(23)]
    # a row lit-dpo refuses (two assistant turns in a row) is dropped from every fold
    bad = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b\n\nAssistant: c",
                      "rejected": "\n\nHuman: a\n\nAssistant: b\n\nAssistant: d"})
    (source / "train.jsonl").write_text("\n".join(rows[:15] + [bad]) + "\n")
    (source / "test.jsonl").write_text("\n".join(rows[15:]) + "\n")
    held_out = []
    for fold in range(4):
        folder = quality.prepare_folds(source, 4, fold, tmp_path / "out")
        train = (folder / "train.jsonl").read_text().splitlines()
        test = (folder / "test.jsonl").read_text().splitlines()
        assert not set(train) & set(test)
        assert sorted(train + test) == sorted(rows)
        held_out += test
    assert sorted(held_out) == sorted(rows)  # every pair held out exactly once


def record(label: str, outcomes: dict[str, str], ids: list[str], **extra) -> dict:
    pairs = len(ids)
    held_out = {key: value.count("1") / pairs for key, value in outcomes.items()}
    held_out.update({"pairs": float(pairs), "rewards/margins": 0.1,
                     "perplexity_chosen/reference": 10.0, "perplexity_chosen/policy": 9.0})
    line = {"label": label, "split": "dev", "side": "lit-dpo", "budget_cpu_s": 4000.0,
            "cpu_s": 100.0, "steps": 8, "displacement_alarm": False, "held_out": held_out,
            "per_pair": {"ids": ids, **outcomes}}
    line.update(extra)
    return line


def same_everywhere(bits: str) -> dict[str, str]:
    return {key: bits for key in OUTCOME_KEYS}


IDS = [f"p{i}" for i in range(40)]


def write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def quality_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "quality.py"), *args],
                          capture_output=True, text=True, cwd=REPO)


def test_diff_of_two_recorded_runs(tmp_path):
    """A: 20 of 40 right. B: the same 20 plus 10 more, so B - A = 10 / 40 = +0.25 on every
    accuracy, with a paired interval above 0."""
    a = record("a", same_everywhere("1" * 20 + "0" * 20), IDS)
    b = record("b", same_everywhere("1" * 30 + "0" * 10), IDS)
    results = write(tmp_path / "results.jsonl", [a, b])
    done = quality_cli("--diff", "a", "b", "--results", str(results))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("b - a on the same 40 held-out pairs")
    reward = next(line for line in lines if line.startswith("implicit-reward accuracy"))
    assert "0.500 [" in reward and "0.750 [" in reward and "+0.250 [+" in reward
    assert reward.endswith("higher")
    # the same run against itself: exactly 0, a zero-width interval, no verdict
    same = quality_records.diff(quality_records.load(results), "a", "a")
    assert "+0.000 [+0.000, +0.000]" in same.splitlines()[-2]


def test_diff_reports_each_runs_per_token_gain_over_its_base(tmp_path):
    """The base ranks 10 of 40 pairs right per token; A's policy the same 10 (gain exactly 0),
    B's those 10 and 10 more (gain +10 / 40 = +0.25, interval above 0)."""
    base = "1" * 10 + "0" * 30
    a = record("a", {**same_everywhere(base)}, IDS)
    b = record("b", {**same_everywhere(base),
                     "logps_accuracy_per_token/policy": "1" * 20 + "0" * 20}, IDS)
    text = quality_records.diff(quality_records.load(write(tmp_path / "r.jsonl", [a, b])), "a", "b")
    gain = text.splitlines()[-1]
    assert gain.startswith("per-token gain over the base, paired")
    first, second = gain.split("]")[:2]
    assert first.endswith("+0.000 [+0.000, +0.000") and "+0.250 [+0.1" in second


def test_diff_aligns_shuffled_pairs_and_refuses_other_pairs(tmp_path):
    a = record("a", same_everywhere("1" * 20 + "0" * 20), IDS)
    # the same outcomes, pairs listed in reverse order: aligned by id, so no difference
    b = record("b", same_everywhere("0" * 20 + "1" * 20), IDS[::-1])
    other = record("c", same_everywhere("1" * 40), [f"q{i}" for i in range(40)])
    old = {key: value for key, value in a.items() if key != "per_pair"}
    old["label"] = "old"
    results = write(tmp_path / "results.jsonl", [a, b, other, old])
    assert "+0.000 [+0.000, +0.000]" in quality_records.diff(
        quality_records.load(results), "a", "b")
    done = quality_cli("--diff", "a", "c", "--results", str(results))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "quality --diff: a and c were not on the same pairs (40 and 40 pairs, 0 shared); "
        "compare runs of one split, or of one fold set with the same max_length")
    done = quality_cli("--diff", "a", "old", "--results", str(results))
    assert "recorded without per-pair results" in done.stderr


def test_cross_validations_compare_on_the_folds_both_have_run(tmp_path):
    """TRL has run folds 0 and 1 of 3 (20 pairs each), the lead fold 0 only: the lead is
    compared on fold 0's 20 pairs, where TRL is right on 10 and the lead on those 10 and 5 more
    (+5 / 20 = +0.25). A run on fold 2 alone shares no fold with the lead."""
    fold = {"split": "cv", "folds": 3}
    trl = [record("trl", same_everywhere("1" * 10 + "0" * 10), IDS[:20], fold=0, **fold),
           record("trl", same_everywhere("1" * 20), IDS[20:], fold=1, **fold)]
    lead = record("lead", {**same_everywhere("1" * 15 + "0" * 5),
                           "logps_accuracy_per_token/reference": "1" * 10 + "0" * 10},
                  IDS[:20], fold=0, **fold)
    lone = record("lone", same_everywhere("1" * 20), [f"q{i}" for i in range(20)], fold=2, **fold)
    results = write(tmp_path / "r.jsonl", [*trl, lead, lone])
    text = quality_records.diff(quality_records.load(results), "trl", "lead")
    assert text.startswith("lead - trl on the same 20 held-out pairs, fold 0 of 3 (")
    reward = next(line for line in text.splitlines() if line.startswith("implicit-reward"))
    assert "0.500 [" in reward and "0.750 [" in reward and "+0.250 [+" in reward
    with pytest.raises(SystemExit, match="lone and lead have no fold in common"):
        quality_records.diff(quality_records.load(results), "lone", "lead")
    # the comparison table: the same pairs, the lead's gain over its base +5 / 20 = +0.25
    done = quality_cli("--table", "trl", "lead", "--versus", "trl", "--results", str(results))
    assert done.returncode == 0, done.stderr
    head, _, trl_row, lead_row = done.stdout.splitlines()
    assert "| reward acc. minus trl, paired |" in head
    assert trl_row.startswith("| trl | lit-dpo | folds 0, 1 of 3, 40 | 100 |")
    assert "| 1.000 -> 1.000 [1.00, 1.00]" not in trl_row and "| 0.750 [" in trl_row
    assert lead_row.startswith("| lead | lit-dpo | fold 0 of 3, 20 | 100 | 0.500 -> 0.750 [")
    cells = [cell.strip() for cell in lead_row.split("|")]
    assert cells[6].startswith("+0.250 [+") and cells[8].startswith("+0.250 [+")
    assert cells[9] == "0/1"
    done = quality_cli("--table", "trl", "lead", "--results", str(results))
    assert done.returncode == 2 and "name the baseline with --versus BASE" in done.stderr


def test_only_folds_compares_on_the_named_folds(tmp_path):
    """Both runs on folds 0 and 1 of 3 (20 pairs each). On fold 0 the lead is right on 5 more
    pairs than TRL (+0.25), on fold 1 on the same pairs (+0.00): pooled +0.125, and
    ``--only_folds 1`` (the fold the lead was not chosen on, say) reads fold 1 alone."""
    fold = {"split": "cv", "folds": 3}
    half = same_everywhere("1" * 10 + "0" * 10)
    trl = [record("trl", half, IDS[:20], fold=0, **fold),
           record("trl", half, IDS[20:], fold=1, **fold)]
    lead = [record("lead", same_everywhere("1" * 15 + "0" * 5), IDS[:20], fold=0, **fold),
            record("lead", half, IDS[20:], fold=1, **fold)]
    results = str(write(tmp_path / "r.jsonl", [*trl, *lead]))

    def reward(*flags: str) -> str:
        done = quality_cli("--diff", "trl", "lead", "--results", results, *flags)
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stdout.splitlines()
                    if line.startswith("implicit-reward")) + done.stdout.splitlines()[0]

    assert "+0.125 [+" in reward() and "40 held-out pairs, folds 0, 1 of 3" in reward()
    fold1 = reward("--only_folds", "1")
    assert "+0.000 [+0.000, +0.000]" in fold1 and "20 held-out pairs, fold 1 of 3" in fold1
    done = quality_cli("--table", "trl", "lead", "--versus", "trl", "--results", results,
                       "--only_folds", "1")
    assert done.returncode == 0, done.stderr
    lead_row = done.stdout.splitlines()[-1]
    assert lead_row.startswith("| lead | lit-dpo | fold 1 of 3, 20 | 100 |")
    assert [cell.strip() for cell in lead_row.split("|")][8] == "+0.000 [+0.000, +0.000]"


def test_folds_pool_in_fold_order_and_the_table_shows_intervals(tmp_path):
    """Two folds of 20 pairs each (the latest line of a rerun fold wins); the pooled reward
    accuracy is (20 + 0) / 40 = 0.5. An old line without per-pair results gets a Wilson interval:
    0.5 of 40 -> [0.352, 0.648]."""
    fold = {"split": "cv", "folds": 2}
    lines = [
        record("cv", same_everywhere("0" * 20), IDS[:20], fold=0, **fold),
        record("cv", same_everywhere("1" * 20), IDS[:20], fold=0, **fold),
        record("cv", same_everywhere("0" * 20), IDS[20:], fold=1, **fold),
    ]
    old = record("old", same_everywhere("1" * 20 + "0" * 20), IDS)
    del old["per_pair"]
    results = quality_records.load(write(tmp_path / "r.jsonl", [*lines, old]))
    run = quality_records.select(results, "cv")
    assert [r["fold"] for r in run] == [0, 1] and run[0] is results[1]
    assert quality_records.pooled(run, "cv")["ids"] == IDS
    assert quality_records.accuracy_interval(run, "rewards/accuracies")[0] == 0.5
    table = quality_records.table(results).splitlines()
    assert len(table) == 4  # head, rule, one row for the cross-validation, one for the old run
    assert "| cv 2/2 folds, 40 pairs |" in table[2] and "100 per fold" in table[2]
    assert "0.500 [0.35, 0.65]" in table[3]
    with pytest.raises(SystemExit, match="no recorded run 'nope'"):
        quality_records.select(results, "nope")


def test_quality_eval_matches_compare_pair_by_pair(tiny_adapter, tiny_data_dir, tmp_path):
    """quality_eval's summary is compare's held-out report, and each accuracy is the mean of its
    per-pair outcomes."""
    from lit_dpo.cli import main

    out = tmp_path / "eval.json"
    with torch_threads(1):
        quality_eval.main(str(tiny_adapter), str(tiny_data_dir), 2, 0.1, 96, str(out))
        with contextlib.redirect_stdout(io.StringIO()):
            main(["compare", f"--adapter={tiny_adapter}", f"--dataset={tiny_data_dir}",
                  "--edge_cases=false", "--val_size=2", "--max_length=96",
                  "--max_new_tokens=8", f"--out={tmp_path / 'compare'}"])
    scored = json.loads(out.read_text())
    compared = json.loads((tmp_path / "compare" / "compare.json").read_text())["heldout"]
    for key, value in compared.items():
        assert scored["held_out"][key] == pytest.approx(value, abs=1e-6), key
    per_pair = scored["per_pair"]
    assert len(per_pair["ids"]) == len(set(per_pair["ids"])) == 2
    for key in OUTCOME_KEYS:
        assert per_pair[key].count("1") / 2 == scored["held_out"][key]
        assert scored["held_out"][f"{key}/ci_low"] <= scored["held_out"][key]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    from tests.conftest import make_adapter

    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


def test_overrides_live_in_one_place():
    assert quality.override("beta", 0.2) == "--model.objective.beta=0.2"
    assert quality.setting({"model": {"objective": {"beta": 0.3}}}, "beta") == 0.3
    # a config.yaml of lit-dpo 0.2, which named it flat
    with pytest.raises(SystemExit, match="no model.objective.beta; update KEYS"):
        quality.setting({"model": {"beta": 0.3}}, "beta")


def test_curve_points_and_plot(tmp_path):
    """Two lit-dpo cross-validations (100 and 300 CPU s per fold) and one TRL run: sorted by
    cost per side, accuracies pooled over folds; the plot is a PNG."""
    import quality_curve

    fold = {"split": "cv", "folds": 2}
    lines = [
        record("big", same_everywhere("1" * 20), IDS[:20], fold=0, cpu_s=300.0, **fold),
        record("big", same_everywhere("1" * 10 + "0" * 10), IDS[20:], fold=1, cpu_s=300.0,
               **fold),
        record("small", same_everywhere("0" * 20), IDS[:20], fold=0, **fold),
        record("small", same_everywhere("1" * 20), IDS[20:], fold=1, **fold),
        record("tutorial", same_everywhere("1" * 10 + "0" * 30), IDS, fold=0, side="trl",
               cpu_s=500.0, **fold),
        record("dev-only", same_everywhere("1" * 40), IDS),
    ]
    points = quality_curve.curve_points(lines, "rewards/accuracies", "cv")
    assert [(p[0], p[1], p[2]) for p in points["lit-dpo"]] == [("small", 100.0, 0.5),
                                                               ("big", 300.0, 0.75)]
    assert [(p[0], p[2]) for p in points["trl"]] == [("tutorial", 0.25)]
    # fold 0 only: the settings on the pairs TRL ran on (big 20/20, small 0/20)
    fold0 = quality_curve.curve_points(lines, "rewards/accuracies", "cv", folds=[0])
    assert [(p[0], p[2]) for p in fold0["lit-dpo"]] == [("small", 0.0), ("big", 1.0)]
    assert "trl" not in quality_curve.curve_points(lines, "rewards/accuracies", "cv", folds=[1])
    out = tmp_path / "curve.png"
    quality_curve.draw(points, "rewards/accuracies", 400.0, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_of_crowded_points_are_lifted_clear_of_each_other():
    """Anchors in points, gap 9, reach 60: the second label sits 3 above the first, so it is lifted
    6 to clear it; the third is as high but 100 across, out of reach; the fourth, 12 up and near
    the first two, must clear the lifted second label (9), so it goes to 18."""
    import quality_curve

    anchors = [(0.0, 0.0), (10.0, 3.0), (100.0, 3.0), (5.0, 12.0)]
    assert quality_curve.label_lifts(anchors) == [0.0, 6.0, 0.0, 6.0]
    assert quality_curve.label_lifts([(0.0, 0.0), (0.0, 20.0)]) == [0.0, 0.0]  # already apart


def test_summary_prints_each_accuracy_with_its_interval():
    line = record("a", same_everywhere("1" * 30 + "0" * 10), IDS, wall_s=50.0)
    line["held_out"].update({"rewards/accuracies/ci_low": 0.6, "rewards/accuracies/ci_high": 0.875})
    text = quality.summary(line)
    assert "40 held-out pairs" in text
    assert "implicit-reward accuracy" in text and "0.750 [0.600, 0.875]" in text


def test_bad_flags_fail_in_one_line_before_training(tmp_path):
    results = str(tmp_path / "none.jsonl")
    done = quality_cli("--measure_budget", "--results", results)
    assert done.returncode == 2
    assert "--measure_budget measures TRL's epoch: add --trl" in done.stderr
    done = quality_cli("--folds", "5", "--only_folds", "0", "7", "--results", results)
    assert done.returncode == 2 and "--only_folds [7] are not folds of --folds 5" in done.stderr
    done = quality_cli("--folds", "1", "--results", results)
    assert done.returncode == 2 and "--folds needs at least 2 parts, got 1" in done.stderr
    done = quality_cli("--desirable_keep", "1.5", "--results", results)
    assert done.returncode == 2 and "--desirable_keep is a share in (0, 1]" in done.stderr
    done = quality_cli("--sft_parts", "helpful", "--results", results)
    assert done.returncode == 2 and "--sft_parts helpful needs --helpful N" in done.stderr


def _hh_folder(tmp_path, count: int) -> Path:
    folder = tmp_path / "hh"
    folder.mkdir()
    for name, rows in (("train", range(count)), ("test", range(count, count + 3))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(hh_row(i)) + "\n" for i in rows))
    return folder


def test_imbalanced_rows_are_the_fits_own_pairs_with_a_share_of_the_desirable(
    tiny_model_dir, tmp_path
):
    """``--desirable_keep``: the unpaired file holds the same pairs a paired fit with
    ``data.train_size`` draws (checked against the DataModule's own ``data.unpair`` rows), every
    rejected reply and a seeded share of the chosen ones; the held-out pairs are unchanged."""
    from lit_dpo.data.datamodule import PreferenceDataModule

    folder = _hh_folder(tmp_path, 20)
    paired = PreferenceDataModule(dataset=str(folder), tokenizer=str(tiny_model_dir),
                                  train_split="train", val_split="test", train_size=10,
                                  max_length=64, max_prompt_length=32, unpair=True)
    paired.setup("fit")
    tokenizer = paired.tokenizer

    def completions(data, label):
        rows = data.splits["train"].with_format(None)
        return sorted(tokenizer.decode(r["chosen_ids"]) for r in rows if r["label"] == label)

    out, rows = quality.prepare_imbalanced(folder, 10, 1.0, 42)
    assert rows == 20
    whole = PreferenceDataModule(dataset=str(out), tokenizer=str(tiny_model_dir),
                                 train_split="train", val_split="test", train_size=rows,
                                 max_length=64, max_prompt_length=32)
    whole.setup("fit")
    assert completions(whole, True) == completions(paired, True)
    assert completions(whole, False) == completions(paired, False)
    out, rows = quality.prepare_imbalanced(folder, 10, 0.2, 42)
    labels = [json.loads(line)["label"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert rows == 12 and labels.count(True) == 2 and labels.count(False) == 10
    assert (out / "test.jsonl").read_text() == (folder / "test.jsonl").read_text()


def test_helpful_mixture_takes_the_users_train_size_for_the_hh_part_and_adds_the_helpful(tmp_path):
    args = argparse.Namespace(config="configs/quality_cpu.yaml", helpful=96, sft_parts="all")
    own = ["--data.train_size=256", "--model.beta=0.2"]
    extra = quality.with_helpful_mixture(own, tmp_path, args)
    mixture = json.loads(next(f for f in extra if f.startswith("--data.mixture=")).split("=", 1)[1])
    assert mixture[0]["max_pairs"] == 256 and mixture[1]["max_pairs"] == 96
    # the fit sees the combined size (the last override wins), not the user's 256
    assert quality.configured(args.config, extra, "train_size") == 352
    assert "--model.beta=0.2" in extra
    # without a user size, the config file's 320 HH pairs
    assert quality.configured(args.config, quality.with_helpful_mixture([], tmp_path, args),
                              "train_size") == 416


def test_helpful_mixture_flags_keep_the_fits_pairs_and_set_the_sft_part(tmp_path):
    flags = quality.mixture_flags(tmp_path / "hh", 320, 128, "helpful")
    mixture = json.loads(flags[0].split("=", 1)[1])
    assert flags[0].startswith("--data.mixture=") and flags[1] == "--data.train_size=448"
    assert mixture[0]["max_pairs"] == 320 and mixture[0]["sft"] is False
    assert mixture[1] == {"dataset": "embedded:ultrafeedback-mini", "max_pairs": 128}
    assert json.loads(quality.mixture_flags(tmp_path, 8, 4, "all")[0].split("=", 1)[1])[0]["sft"]
    # the fit's train size: the last override, else the config file's
    assert quality.configured("configs/quality_cpu.yaml", [], "train_size") == 320
    assert quality.configured("configs/quality_cpu.yaml", ["--data.train_size=64"],
                              "train_size") == 64
    assert quality.configured("configs/quality_cpu.yaml", ["--data.train_size", "32"],
                              "train_size") == 32
    assert quality.configured("configs/quality_cpu.yaml", [], "seed", 42) == 42


def test_the_budget_is_the_latest_trl_measurement_on_this_machine(monkeypatch):
    """A single-split measurement counts as it is; a cross-validated one is the mean of its
    folds (3,100 and 2,900 -> 3,000; fold 1 measured twice: its latest line, 2,900). Lines of
    another machine, of a budget-stopped or quick run, and lit-dpo's lines are not measurements."""
    monkeypatch.setattr(quality, "machine", lambda: "here")
    measure = {"budget_measurement": True, "machine": "here", "side": "trl"}
    single = record("trl", same_everywhere("1"), ["p"], cpu_s=4000.0, **measure)
    cv = {"split": "cv", "folds": 5, **measure}
    lines = [single,
             record("trl", same_everywhere("1"), ["p"], cpu_s=5000.0,
                    **{**measure, "machine": "elsewhere"})]
    assert quality.measured_budget(lines) == 4000
    lines += [record("tutorial", same_everywhere("1"), ["p"], cpu_s=3100.0, fold=0, **cv),
              record("tutorial", same_everywhere("1"), ["p"], cpu_s=3500.0, fold=1, **cv),
              record("tutorial", same_everywhere("1"), ["p"], cpu_s=2900.0, fold=1, **cv),
              record("lit", same_everywhere("1"), ["p"], cpu_s=100.0),
              record("cut", same_everywhere("1"), ["p"], cpu_s=10.0, stopped_by_budget=True,
                     **measure)]
    assert quality.measured_budget(lines) == 3000
    assert quality.measured_budget(lines[1:2]) == quality.DEFAULT_BUDGET
