"""Reports are written whole or not at all."""

from __future__ import annotations

import pytest
import torch

from lit_dpo.files import write_atomically, write_text_atomically
from lit_dpo.train.reference_table import save_table


def test_a_failed_write_keeps_the_previous_report_and_leaves_no_partial_file(tmp_path):
    report = write_text_atomically(tmp_path / "fit_metrics.json", '{"val/loss": 0.5}\n')

    def crash_halfway(staging):
        staging.write_text('{"val/lo')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(report, crash_halfway)
    assert report.read_text() == '{"val/loss": 0.5}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["fit_metrics.json"]

    write_text_atomically(report, "new\n")
    assert report.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fit_metrics.json"]


def test_a_failed_reference_table_write_keeps_the_old_table_and_leaves_no_temporary(
    tmp_path, monkeypatch
):
    """The reference table goes through the same atomic write: torch.save failing halfway
    leaves the previous table and no ``.tmp`` or staging file beside it."""
    path = tmp_path / "reference_logps" / "table.pt"
    old = torch.tensor([[-1.0, -2.0]])
    save_table(path, old)

    real_save = torch.save

    def crash_halfway(table, target, *args, **kwargs):
        real_save(table, target, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_table(path, torch.tensor([[-3.0, -4.0], [-5.0, -6.0]]))
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True), old)
    assert [p.name for p in path.parent.iterdir()] == ["table.pt"]
