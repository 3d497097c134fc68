"""``lit-dpo sweep``: one fit per combination, the reference computed once and reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_fit_args

from lit_dpo.cli import main
from lit_dpo.train.reference_table import REUSE_RECORD, tables_reused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_beta_sweep_computes_the_reference_once(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIT_DPO_CACHE", str(cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    fit_args = tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "unused")[1:]
    main(["sweep", *fit_args, "--grid={model.objective.beta: [0.1, 0.5]}", f"--out={out}"])

    rows = json.loads((out / "sweep.json").read_text())
    assert [row["settings"] for row in rows] == [
        {"model.objective.beta": 0.1},
        {"model.objective.beta": 0.5},
    ]
    # the first run computed the train and validation tables, the second read them
    assert [row["reference_reused"] for row in rows] == [False, True]
    assert len(list((cache / "reference_logps").glob("*.pt"))) == 2
    assert "reference log-probs (train)" in (out / "run_0" / "fit.log").read_text()
    assert "reference log-probs (train)" not in (out / "run_1" / "fit.log").read_text()
    # the sweep asked each run's reference tables, which recorded where they came from
    for run, reused in (("run_0", False), ("run_1", True)):
        record = json.loads((out / run / REUSE_RECORD).read_text())
        assert {stage: entry["reused"] for stage, entry in record.items()} == {
            "train": reused,
            "val": reused,
        }
        assert {Path(entry["table"]).parent for entry in record.values()} == {
            cache / "reference_logps"
        }
    # each run trained with its own beta, in its own folder, and validated
    for row, beta in zip(rows, (0.1, 0.5), strict=True):
        run = out / row["run"]
        hparams = next(run.rglob("hparams.yaml")).read_text()
        assert f"beta: {beta}" in hparams
        assert (run / "adapter" / "adapter_model.safetensors").exists()
        assert row["metrics"]["val/rewards/margins"] is not None
    # same pairs and reference, twice the beta: the implicit rewards scale with it (not exactly
    # twice: the policies trained differently), so the runs are not copies of each other
    margins = [row["metrics"]["val/rewards/margins"] for row in rows]
    assert margins[0] != margins[1]
    table = (out / "sweep.md").read_text()
    assert table.count("\n| run_") == 2 and "| computed |" in table and "| reused |" in table
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_empty_grid_is_refused(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sweep", "--config=configs/cpu.yaml"])
    assert done.value.code == 2
    assert "sweep: give --grid, the settings and their values" in capsys.readouterr().err


def test_tables_reused_reads_the_runs_record(tmp_path):
    """Reused only when every table came from the cache; None when the run recorded none."""
    assert tables_reused(tmp_path) is None

    def record(**reused: bool) -> None:
        entries = {stage: {"table": f"{stage}.pt", "reused": r} for stage, r in reused.items()}
        (tmp_path / REUSE_RECORD).write_text(json.dumps(entries))

    record(train=True, val=True)
    assert tables_reused(tmp_path) is True
    record(train=False, val=True)
    assert tables_reused(tmp_path) is False
    record()
    assert tables_reused(tmp_path) is False
