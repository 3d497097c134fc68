"""A full disk or a read-only folder: one line naming the folder, no half-written file under a
final name, earlier outputs kept; a folder that cannot be written is refused before the model
loads. The file systems are small tmpfs mounts the test makes (root only; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import tiny_fit_args
from safetensors.torch import load_file

from lit_dpo.cli import main

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _mount_tmpfs(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=16m", *options]), "tmpfs", str(folder)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB file system at ``tmp_path/small``, unmounted after the test."""
    folder = tmp_path / "small"
    _mount_tmpfs(folder)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as filler:
        filler.write(b"\0" * max(free - leave, 0))


def _error_line(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lit-dpo: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def _adapter_loads(folder: Path) -> dict:
    json.loads((folder / "adapter_config.json").read_text())
    return load_file(folder / "adapter_model.safetensors")


def test_a_full_disk_stops_fit_and_export_with_one_line_and_keeps_earlier_outputs(
    tiny_model_dir, tiny_data_dir, small_disk, capsys
):
    root = small_disk / "run"
    main(tiny_fit_args(tiny_model_dir, tiny_data_dir, root))
    adapter = root / "adapter"
    before = _adapter_loads(adapter)
    capsys.readouterr()

    _fill(small_disk, leave=8 * 1024)
    line = _error_line(
        tiny_fit_args(tiny_model_dir, tiny_data_dir, root, "--trainer.limit_train_batches=3"),
        capsys,
    )
    print(line)
    assert "no space left in" in line and str(small_disk) in line
    after = _adapter_loads(adapter)
    assert after.keys() == before.keys()
    assert all((after[k] == before[k]).all() for k in before), "the earlier adapter changed"
    # nothing half-written under a final name: every adapter and safetensors file loads
    for path in small_disk.rglob("*.safetensors"):
        if not any(part.startswith(".") for part in path.relative_to(small_disk).parts):
            load_file(path)

    merged = small_disk / "merged"
    line = _error_line(["export", "--adapter", str(adapter), "--out", str(merged)], capsys)
    print(line)
    assert line.startswith(f"lit-dpo: error: no space left in {small_disk} for merged: it needs "
                           "about ")
    assert not merged.exists()
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".merged")]


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, monkeypatch
):
    read_only = tmp_path / "read-only"
    _mount_tmpfs(read_only, "ro")
    try:
        def no_load(*args, **kwargs):
            raise AssertionError("the model loaded before the output folder was checked")

        monkeypatch.setattr("lit_dpo.train.policy_setup.load_policy", no_load)
        line = _error_line(tiny_fit_args(tiny_model_dir, tiny_data_dir, read_only / "run"),
                           capsys)
        assert f"--trainer.default_root_dir {read_only / 'run'} is not writable" in line
        assert "Read-only file system" in line
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)


def test_a_full_disk_stops_compare_with_one_line_and_keeps_the_previous_report(
    tiny_model_dir, small_disk, tmp_path, capsys
):
    from conftest import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    out = small_disk / "compare"
    args = ["compare", f"--adapter={adapter}", "--val_size=0", "--max_new_tokens=4",
            "--max_length=96", f"--out={out}"]
    main(args)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["compare.html", "compare.json", "compare.md"]
    needed = sum(len(data) for data in before.values())
    capsys.readouterr()

    _fill(small_disk, leave=4 * 1024)  # less than the report's three files need
    assert needed > 8 * 1024, needed
    line = _error_line(args, capsys)
    print(line)
    assert line.startswith(f"lit-dpo: error: no space left in {out} for compare.")
    assert "it needs about " in line and "free" in line
    # the previous report, all three files, as it was; no temporary file beside them
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_compare_refuses_an_output_folder_it_cannot_write_before_the_model_loads(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    from conftest import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    read_only = tmp_path / "read-only"
    _mount_tmpfs(read_only, "ro")
    try:
        def no_load(*args, **kwargs):
            raise AssertionError("the model loaded before the output folder was checked")

        monkeypatch.setattr("lit_dpo.compare.command.load_adapter_tokenizer", no_load)
        line = _error_line(["compare", f"--adapter={adapter}", f"--out={read_only / 'out'}"],
                           capsys)
        assert f"--out {read_only / 'out'} is not writable (Read-only file system)" in line
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)
