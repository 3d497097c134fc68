"""SIGKILL at the worst moments loses nothing that was finished.

A process killed with SIGKILL runs no handler: whatever it was writing stays as it was. These tests
kill ``lit-dpo fit`` and ``lit-dpo export`` in a fresh process at the moment a file or folder is
written in full but not yet renamed into place (``LIT_DPO_TEST_KILL_BEFORE_RENAME``, a hook in
``lit_dpo/files.py`` only tests set), and while the reference table is written (its temporary
file seen on disk), then check that every file there is whole and loads, that the previous
checkpoint and adapter are intact, and that ``--ckpt_path last`` continues to the losses of a fit
that was never killed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, logged_losses, subprocess_env, tiny_fit_args
from safetensors.torch import load_file

from lit_dpo.cli import main
from lit_dpo.files import STAGING_MARK

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

STEPS = 6  # 6 train pairs in batches of 2, two epochs


def _fit_args(model: Path, data: Path, root: Path, *extra: str) -> list[str]:
    """The tiny fit with a checkpoint and its adapter after every step and a reference table."""
    return tiny_fit_args(
        model,
        data,
        root,
        "--trainer.limit_train_batches=1.0",
        "--trainer.max_epochs=2",
        "--trainer.num_sanity_val_steps=0",
        "--model.lora.dropout=0.2",
        "--model.efficiency.precompute_reference=true",
        "--trainer.callbacks+=lit_dpo.callbacks.adapters.AdapterCheckpoint",
        f"--trainer.callbacks.dirpath={root / 'checkpoints'}",
        "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_last=true",
        *extra,
    )


def _run_killed(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m lit_dpo ARGS``; the exit status (-9 when it was killed) and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_dpo", *args], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _, err = process.communicate(timeout=600)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"exit {process.returncode}: {err[-3000:]}")
    return process.returncode, err


def _check_everything_loads(root: Path, cache: Path) -> dict[str, int]:
    """Every checkpoint, adapter, reference table and metrics file under ``root`` and ``cache``
    loads whole; no file is left under a final name half-written. Returns counts by kind."""
    counts = {"checkpoints": 0, "adapters": 0, "tables": 0, "metrics": 0}
    for path in root.rglob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["global_step"] >= 1 and checkpoint["state_dict"], path
        counts["checkpoints"] += 1
    for path in root.rglob("*.adapter"):
        if path.name.startswith("."):
            continue
        json.loads((path / "adapter_config.json").read_text())
        assert load_file(path / "adapter_model.safetensors"), path
        counts["adapters"] += 1
    for path in cache.rglob("*.pt"):
        table = torch.load(path, weights_only=True)
        assert table.ndim == 2 and table.shape[1] == 2 and torch.isfinite(table).all(), path
        counts["tables"] += 1
    for path in root.rglob("metrics.csv"):
        rows = list(csv.reader(path.open()))
        # a line cut short would have fewer fields than the header
        assert all(len(row) == len(rows[0]) for row in rows), path
        counts["metrics"] += 1
    return counts


@pytest.fixture(scope="module")
def straight_losses(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> dict[int, float]:
    root = tmp_path_factory.mktemp("straight")
    os.environ["LIT_DPO_CACHE"] = str(root / "cache")
    try:
        main(_fit_args(tiny_model_dir, tiny_data_dir, root))
    finally:
        del os.environ["LIT_DPO_CACHE"]
    losses = logged_losses(root)
    assert sorted(losses) == list(range(STEPS))
    return losses


@pytest.mark.parametrize(
    ("kill_at", "last_complete_step"),
    [
        ("last.ckpt@3", 2),  # the third step's last.ckpt written, not yet renamed
        ("last.adapter@2", 2),  # its adapter beside it, a folder swapped for a folder
        ("epoch=1-step=5.ckpt", 4),  # in the second epoch, after its validation
        ("*.pt", 0),  # the reference log-probs table, before any step
    ],
)
def test_sigkill_leaves_whole_files_and_resumes_to_the_same_losses(
    kill_at, last_complete_step, tiny_model_dir, tiny_data_dir, tmp_path, straight_losses
):
    root, cache = tmp_path / "run", tmp_path / "cache"
    args = _fit_args(tiny_model_dir, tiny_data_dir, root)
    status, _ = _run_killed(args, subprocess_env(cache, kill_at=kill_at))
    assert status == -signal.SIGKILL
    counts = _check_everything_loads(root, cache)
    last = root / "checkpoints" / "last.ckpt"
    if last_complete_step:
        assert torch.load(last, weights_only=True)["global_step"] == last_complete_step
        assert counts["adapters"] >= 1
    # the killed write's temporary file or folder is all that is left of it
    leftovers = [p.name for p in [*root.rglob(".*"), *cache.rglob(".*")]
                 if STAGING_MARK in p.name]
    print(f"{kill_at}: {counts}, leftovers {leftovers}")
    assert len(leftovers) == 1

    status, err = _run_killed([*args, "--ckpt_path=last"], subprocess_env(cache))
    assert status == 0
    _check_everything_loads(root, cache)
    # the resumed run removed what the killed one left, and said so in one line
    assert not [p for p in [*root.rglob(".*"), *cache.rglob(".*")] if STAGING_MARK in p.name]
    (line,) = [line for line in err.splitlines() if line.startswith("lit-dpo: removed")]
    assert line.startswith("lit-dpo: removed 1 unfinished file(s) left by a killed run (")
    assert leftovers[0] in line
    # the killed process may not have flushed its metrics: compare the steps the resume ran
    resumed = logged_losses(root, version="1")
    assert sorted(resumed) == list(range(last_complete_step, STEPS))
    differences = {s: abs(v - straight_losses[s]) for s, v in resumed.items()}
    assert max(differences.values()) < 1e-6, differences
    assert torch.load(last, weights_only=True)["global_step"] == STEPS


def test_sigkill_during_export_leaves_no_merged_folder_under_the_target_name(
    tiny_model_dir, tmp_path
):
    from conftest import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    merged = tmp_path / "merged"
    args = ["export", "--adapter", str(adapter), "--out", str(merged)]
    # killed with the merged model written in full, just before it takes the target's name
    status, _ = _run_killed(args, subprocess_env(tmp_path / "cache", kill_at="merged"))
    assert status == -signal.SIGKILL
    assert not merged.exists()
    (staging,) = [p for p in tmp_path.iterdir() if p.name.startswith(".merged-")]
    assert (staging / "config.json").exists()
    # a second export, not killed, removes that leftover and writes the whole folder there
    status, err = _run_killed(args, subprocess_env(tmp_path / "cache"))
    assert status == 0 and staging.name in err
    assert load_file(merged / "model.safetensors")
    assert not staging.exists()
