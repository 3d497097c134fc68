"""Folders swapped whole, checkpoints written beside their name, and the tests' kill hook."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lit_dpo.callbacks.atomic_checkpoint import AtomicCheckpointIO
from lit_dpo.files import KILL_POINT_VARIABLE, recover_folder, replace_folder

REPO = Path(__file__).resolve().parents[1]


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights").write_text(text)
    return path


def test_replace_folder_swaps_the_old_folder_for_the_new_and_removes_the_old(tmp_path):
    target = _folder(tmp_path / "adapter", "old")
    replace_folder(_folder(tmp_path / ".adapter-new", "new"), target)
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    replace_folder(_folder(tmp_path / ".first", "first"), tmp_path / "fresh")
    assert (tmp_path / "fresh" / "weights").read_text() == "first"


def test_recover_folder_puts_back_a_folder_moved_aside_by_a_crash(tmp_path):
    _folder(tmp_path / ".adapter-old", "old")
    assert recover_folder(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "weights").read_text() == "old"
    assert not recover_folder(tmp_path / "adapter"), "a folder in place is left alone"


def test_a_checkpoint_is_written_beside_its_name_even_with_another_temporary_folder(
    tmp_path, monkeypatch
):
    """Lightning's own IO writes to the system's temporary folder and moves the file; ours
    writes in the checkpoint's folder, so a move across file systems never copies into the
    final name. Here the temporary folder does not exist: any use of it would fail."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.arange(4)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))


def test_the_kill_hook_kills_at_the_nth_matching_write_and_keeps_the_previous_file(tmp_path):
    code = (
        "import sys\n"
        "from lit_dpo.files import write_text_atomically\n"
        "for n in range(3):\n"
        "    write_text_atomically(sys.argv[1], f'version {n}')\n"
    )
    path = tmp_path / "report.json"
    env = {**os.environ, KILL_POINT_VARIABLE: "*.json@2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, cwd=REPO)
    assert done.returncode == -signal.SIGKILL
    assert path.read_text() == "version 0"
    # the second version, whole, under its temporary name: never renamed into place
    (staging,) = [p for p in tmp_path.iterdir() if p != path]
    assert staging.name.startswith(".report.json-") and staging.read_text() == "version 1"


def _aged(path: Path) -> Path:
    """``path`` with a modification time a minute ago: past the grace of a fresh leftover."""
    then = time.time() - 60
    os.utime(path, (then, then))
    return path


def test_stale_staging_files_are_removed_and_those_in_use_kept(tmp_path, capsys):
    from lit_dpo.files import clear_leftovers, remove_stale_staging, staging_prefix

    killed_file = tmp_path / f"{staging_prefix('last.ckpt')}ab12cd_9.ckpt"
    killed_file.write_bytes(b"half a checkpoint")
    _aged(killed_file)
    killed_folder = tmp_path / f"{staging_prefix('adapter')}zz99yy00"
    killed_folder.mkdir()
    (killed_folder / "adapter_config.json").write_text("{")
    _aged(killed_folder)
    in_use = tmp_path / f"{staging_prefix('report.json')}inuse000.json"
    in_use.write_text("being written")
    _aged(in_use)
    fresh = tmp_path / f"{staging_prefix('metrics.png')}fresh000.png"
    fresh.write_bytes(b"")  # created a moment ago, maybe not yet locked by its writer
    others = [".hydra", "adapter", ".adapter-old", "x-lit-dpo-partial-abcdefgh"]
    for name in others:
        (tmp_path / name).mkdir()
        _aged(tmp_path / name)

    # another open file description holding the writer's lock, as write_atomically holds it
    writer = os.open(in_use, os.O_RDONLY)
    fcntl.flock(writer, fcntl.LOCK_EX)
    try:
        line = clear_leftovers([tmp_path, str(tmp_path)])
    finally:
        os.close(writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [in_use.name, fresh.name, *others]
    )
    assert line == (
        f"lit-dpo: removed 2 unfinished file(s) left by a killed run ({tmp_path}: "
        f"{killed_folder.name}, {killed_file.name})"
    )
    assert capsys.readouterr().err == line + "\n"
    assert remove_stale_staging(tmp_path) == [in_use.name]  # unlocked now
    assert clear_leftovers([tmp_path / "missing"]) is None
