"""KTO end to end: a JSONL of thumbs-up/down rows trains from ``lit-dpo fit --config ...
--model.objective.loss_type kto`` on the tiny model, validates on held-out pairs with DPO's
accuracies, and logs TRL's KTO metrics; the settings KTO cannot run are refused before anything
loads."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import yaml
from conftest import ROWS, cli_error, ultrafeedback_row, write_jsonl
from test_kto_data import thumbs_rows

from lit_dpo.cli import main
from lit_dpo.train.losses import Objective
from lit_dpo.train.run_checks import kl_batch_problem, unpaired_data_problem


def _config(tmp_path, model_dir, data) -> str:
    config = {
        "model": {"model": str(model_dir)},
        "data": {
            "dataset": str(data),
            "batch_size": 4,
            "max_length": 64,
            "max_prompt_length": 32,
        },
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "log_every_n_steps": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path)},
            },
        },
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny_kto.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def thumbs_with_paired_test(tmp_path):
    """A folder: train.jsonl of 16 thumbs-up/down rows, test.jsonl of 2 held-out pairs."""
    folder = tmp_path / "thumbs"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", thumbs_rows())
    write_jsonl(folder / "test.jsonl", [ultrafeedback_row(*row) for row in ROWS[6:]])
    return folder


def test_thumbs_rows_train_kto_and_validate_on_pairs(
    tiny_model_dir, thumbs_with_paired_test, tmp_path
):
    root = tmp_path / "run"
    main([
        "fit",
        "--config", _config(root, tiny_model_dir, thumbs_with_paired_test),
        "--model.objective.loss_type", "kto",
        "--model.optimizer=torch.optim.AdamW",
        "--model.optimizer.lr=0.01",
    ])
    metrics = json.loads((root / "fit_metrics.json").read_text())
    # validation on pairs: DPO's accuracies, so KTO and DPO runs compare in one table
    assert {
        "val/loss", "val/rewards/accuracies", "val/logps_accuracy/policy",
        "val/logps_accuracy/reference",
    } <= set(metrics)
    with open(root / "lightning_logs" / "version_0" / "metrics.csv") as rows:
        logged = list(csv.DictReader(rows))
    steps = [row for row in logged if row.get("train/kl")]
    assert len(steps) == 2
    for key in ("train/loss", "train/rewards/chosen", "train/rewards/rejected", "train/kl",
                "train/logps/chosen", "train/logps/rejected"):
        assert all(row[key] != "" for row in steps), key
    # 4 rows a step: the desirable and undesirable counts add up to the batch
    for row in steps:
        assert float(row["train/count/desirable"]) + float(row["train/count/undesirable"]) == 4
    # the first step starts at the policy = reference point: KL 0, each reply's loss 1/2
    assert float(steps[0]["train/kl"]) == 0.0
    assert float(steps[0]["train/loss"]) == pytest.approx(0.5, abs=1e-5)
    card = (root / "adapter" / "README.md").read_text()
    assert "`kto`: KTO (Kahneman-Tversky optimisation, unpaired feedback)" in card
    # the 16 thumbs rows all train (test.jsonl is the held-out split): 8 up, 8 down
    assert "train: unpaired feedback, 8 desirable and 8 undesirable rows" in card


def test_unpaired_validation_reports_reward_auc(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "thumbs.jsonl", thumbs_rows())
    root = tmp_path / "run"
    main([
        "fit",
        "--config", _config(root, tiny_model_dir, data),
        "--model.objective.loss_type", "kto",
        "--data.val_fraction", "0.25",
        # the reference log-probs of completions and KL rows, tabled once before training
        "--model.efficiency.precompute_reference", "true",
        "--trainer.limit_train_batches", "1",
    ])
    metrics = json.loads((root / "fit_metrics.json").read_text())
    assert {"val/loss", "val/kl", "val/rewards/auc", "val/count/desirable"} <= set(metrics)
    assert 0.0 <= metrics["val/rewards/auc"] <= 1.0


def test_batch_of_one_is_refused_before_loading(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "thumbs.jsonl", thumbs_rows())
    err = cli_error(
        ["fit", "--config", _config(tmp_path, tiny_model_dir, data),
         "--model.objective.loss_type", "kto", "--data.batch_size", "1"],
        capsys,
    )
    assert "data.batch_size 1 is too small: set data.batch_size 2 or more" in err
    # apo_zero_unpaired has no KL baseline: a batch of one is fine for it
    assert kl_batch_problem(Objective(loss_types=("apo_zero_unpaired",)), 1) is None


def test_kto_on_pairs_without_unpair_and_dpo_on_thumbs_are_refused():
    kto = Objective(loss_types=("kto",))
    assert "set data.unpair true" in unpaired_data_problem(kto, unpaired_train=False)
    problem = unpaired_data_problem(Objective(), unpaired_train=True)
    assert "use model.objective.loss_type kto" in problem
    assert unpaired_data_problem(kto, unpaired_train=True) is None


def test_kto_settings_are_checked():
    problems = Objective(
        loss_types=("kto", "sigmoid"), desirable_weight=0.0, use_weighting=True
    ).problems()
    text = "; ".join(problems)
    assert "cannot be combined with other loss types" in text
    assert "desirable_weight must be positive" in text
    assert "leave them unset" in text
    assert "desirable_weight applies to loss types ['kto', 'apo_zero_unpaired'] only" in "; ".join(
        Objective(desirable_weight=2.0).problems()
    )


def test_batches_without_a_desirable_reply_raise_no_divergence_alarm(
    tiny_model_dir, tmp_path, caplog
):
    """Scarce thumbs-up (1 of 9 rows, batches of 2): most steps hold no desirable reply, so their
    desirable means and the reward margin are undefined (nan in metrics.csv). That is not a
    diverged run: the health alarms leave those steps out of those metrics (they said "reward
    margin is nan: training diverged" at the first such step)."""
    rows = [row for row in thumbs_rows() if not row["label"]] + [thumbs_rows()[0]]
    folder = tmp_path / "scarce"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", [ultrafeedback_row(*row) for row in ROWS[6:]])
    root = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="lit_dpo.callbacks.health"):
        main([
            "fit",
            "--config", _config(root, tiny_model_dir, folder),
            "--model.objective.loss_type", "kto",
            "--model.objective.desirable_weight", "8",
            "--data.batch_size", "2",
            "--trainer.limit_train_batches", "4",
        ])
    with open(root / "lightning_logs" / "version_0" / "metrics.csv") as file:
        steps = [row for row in csv.DictReader(file) if row.get("train/kl")]
    without = [row for row in steps if float(row["train/count/desirable"]) == 0]
    assert len(steps) == 4 and len(without) >= 3
    assert all(row["train/rewards/margins"] in ("", "nan") for row in without)
    alarms = [r.getMessage() for r in caplog.records if "health alarm" in r.getMessage()]
    assert not [a for a in alarms if "diverged" in a], alarms
