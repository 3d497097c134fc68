"""The reference table's cache key: a setting that changes what the table holds gets its own
table, and the same settings reuse the one on disk.

``ld_alpha`` makes the table hold LD-DPO's weighted sums instead of plain ones; the trainer's
precision changes the reference's numbers. Each run is a real ``lit-dpo validate`` of the tiny
model with ``model.efficiency.precompute_reference``; the tables are counted in its cache folder.
"""

from __future__ import annotations

import pytest

from lit_dpo.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _validate(model_dir, data_dir, root, *extra: str) -> None:
    main(
        [
            "validate",
            f"--model.model={model_dir}",
            f"--data.dataset={data_dir}",
            "--model.efficiency.precompute_reference=true",
            "--data.batch_size=2",
            "--data.max_length=64",
            "--data.max_prompt_length=32",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            *extra,
        ]
    )


def test_ld_alpha_and_precision_key_their_own_tables(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "cache" / "reference_logps"

    def count() -> int:
        return len(list(tables.glob("*.pt")))

    _validate(tiny_model_dir, tiny_data_dir, tmp_path)
    assert count() == 1
    _validate(tiny_model_dir, tiny_data_dir, tmp_path)
    assert count() == 1, "the same settings scored the reference again"
    _validate(tiny_model_dir, tiny_data_dir, tmp_path, "--model.objective.ld_alpha=0.5")
    assert count() == 2, "ld_alpha reused the table of plain sums"
    _validate(tiny_model_dir, tiny_data_dir, tmp_path, "--trainer.precision=bf16-mixed")
    assert count() == 3, "another precision reused the fp32 table"
    # and each of those is found again under its own settings
    _validate(tiny_model_dir, tiny_data_dir, tmp_path, "--model.objective.ld_alpha=0.5")
    _validate(tiny_model_dir, tiny_data_dir, tmp_path, "--trainer.precision=bf16-mixed")
    assert count() == 3
