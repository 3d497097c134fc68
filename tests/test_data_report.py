"""`lit-dpo data`: the report's numbers on hand-checked inputs, and the files it writes."""

from __future__ import annotations

import pytest

from lit_dpo.cli import main
from lit_dpo.data_report import length_summary, padding_fraction


def test_padding_fraction_by_hand():
    # pairs as (prompt + chosen, prompt + rejected) token counts, batches of 2 pairs.
    # grouped (sorted by the longer side): [(3,3),(4,2)] pads to 4 -> 12 real of 16;
    # [(9,9),(10,8)] pads to 10 -> 36 real of 40. Padding = 1 - 48/56.
    pairs = [(4, 2), (3, 3), (10, 8), (9, 9)]
    assert padding_fraction(pairs, 2, grouped=True) == pytest.approx(1 - 48 / 56)
    # grouping undoes an order that mixes short and long pairs ([(4,2),(10,8)] would pad to 10)
    mixed = [(4, 2), (10, 8), (3, 3), (9, 9)]
    assert padding_fraction(mixed, 2, grouped=True) == pytest.approx(1 - 48 / 56)
    shuffled = padding_fraction(mixed, 2, grouped=False, seed=0)
    assert shuffled >= 1 - 48 / 56


def test_length_summary():
    summary = length_summary([5, 1, 3, 9, 7, 2, 4, 8, 6, 10])
    assert summary == {"min": 1, "median": 5.5, "p90": 10, "max": 10, "mean": 5.5}


def test_report_on_the_tiny_file(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    main([
        "data",
        "--out", str(tmp_path / "report"),
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tiny_data_dir}",
        "--data.max_length=16",
        "--data.max_prompt_length=8",
        "--data.batch_size=2",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp_path}",
    ])
    text = (tmp_path / "report" / "data_report.md").read_text()
    assert text in capsys.readouterr().out
    # 7 train rows, one a tie; the 2 test rows have distinct prompts
    assert "| rows -> pairs | 7 -> 6 (dropped: 1 tie) |" in text
    assert "| ties dropped | 1 |" in text
    # every ChatML prompt of the fixture is longer than 8 tokens, so every pair is cut
    assert "| pairs truncated | 6 (6 prompts cut) |" in text
    assert "| pairs truncated | 2 (2 prompts cut) |" in text
    assert "⟦completion⟧" in text
    png = (tmp_path / "report" / "token_lengths.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_counts_desirable_and_undesirable_rows(tiny_model_dir, tiny_data_dir, tmp_path,
                                                      capsys):
    main([
        "data",
        "--out", str(tmp_path / "report"),
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tiny_data_dir}",
        "--data.unpair=true",
        "--data.max_length=16",
        "--data.max_prompt_length=8",
        "--data.batch_size=2",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp_path}",
    ])
    text = (tmp_path / "report" / "data_report.md").read_text()
    # 7 train rows, one a tie: 6 pairs -> 6 desirable and 6 undesirable rows; validation paired
    assert "| rows -> unpaired rows | 7 -> 12 (dropped: 1 tie) |" in text
    assert "| desirable / undesirable | 6 / 6 (ratio 1) |" in text
    assert text.count("desirable / undesirable") == 1
