"""Reports are written whole or not at all."""

from __future__ import annotations

import pytest

from lit_dpo.files import write_atomically, write_text_atomically


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
