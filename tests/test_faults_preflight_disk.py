"""Preflight's disk section: what a fit writes, by hand, against what is free."""

from __future__ import annotations

from pathlib import Path

from lit_dpo.cli import main
from lit_dpo.preflight.disk import ADAPTER_FILES_BYTES, disk_lines, fit_writes, needed_by_folder

ROOT, CACHE = Path("runs/x"), Path("cache")


def test_a_fits_writes_and_each_folders_peak_by_hand():
    """1,000 LoRA weights with AdamW (8 bytes of state each): an adapter is 4,000 bytes of fp32
    weights plus 4 MiB of tokenizer and card; a checkpoint 1,000 x (4 + 8) = 12,000 bytes plus
    its adapter. Two checkpoints kept and the final adapter, plus the largest write once more
    (the new checkpoint beside the old while it replaces it); 100 pairs table 100 x 2 x 4 = 800
    bytes, counted twice the same way."""
    writes = fit_writes(1000, 8.0, ROOT, CACHE, checkpoints=2, pairs=100)
    adapter = 4000 + ADAPTER_FILES_BYTES
    checkpoint = 12000 + adapter
    assert [(w.label, w.count, w.each) for w in writes] == [
        ("final adapter", 1, adapter),
        ("checkpoints, each with its adapter", 2, checkpoint),
        ("reference log-prob table", 1, 800),
    ]
    assert needed_by_folder(writes) == {ROOT: adapter + 3 * checkpoint, CACHE: 1600}


def test_the_disk_lines_say_ok_or_not_enough_per_folder():
    writes = fit_writes(1000, 8.0, ROOT, CACHE, checkpoints=2, pairs=100)
    need = needed_by_folder(writes)[ROOT]
    lines = disk_lines(writes, {ROOT: int(need), CACHE: 1599})
    assert lines[0] == "disk space the fit writes (estimate)"
    assert any(line.strip().startswith("checkpoints, each with its adapter") and "2 x 4.0 MiB"
               in line for line in lines)
    assert lines[-2].endswith(": ok") and str(ROOT) in lines[-2]
    assert lines[-1].endswith("NOT enough: free space or pick another folder")
    assert "needs 1.6 KiB of 1.6 KiB free" in lines[-1]


def test_the_preflight_report_has_the_disk_section(capsys):
    try:
        main(["preflight", "--config", "configs/t4.yaml", "--device", "t4",
              "--worst_case=true"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "disk space the fit writes (estimate)" in out
    print(out[out.index("disk space"):])
    # t4.yaml keeps the best checkpoint, with its adapter beside it
    assert "checkpoints, each with its adapter" in out
    assert "runs/t4" in out and "free: ok" in out
