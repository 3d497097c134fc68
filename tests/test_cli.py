"""End to end through the console script's entry point: fit, validate, reload the adapter."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import tiny_fit_args
from safetensors.torch import load_file

from lit_dpo.cli import main


def _fit_args(tiny_model_dir, tiny_data_dir, root, *extra):
    return tiny_fit_args(
        tiny_model_dir,
        tiny_data_dir,
        root,
        "--trainer.callbacks+=lit_dpo.callbacks.GenerateSamples",
        "--trainer.callbacks.max_new_tokens=4",
        *extra,
    )


def test_fit_writes_adapter_metrics_and_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    main(_fit_args(tiny_model_dir, tiny_data_dir, tmp_path))

    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").exists()
    assert (adapter / "tokenizer_config.json").exists()
    metrics = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert {
        "val/loss",
        "val/rewards/accuracies",
        "val/logps_accuracy/policy",
        "val/logps_accuracy/reference",
    } <= set(metrics)
    run_dir = tmp_path / "lightning_logs" / "version_0"
    samples = (run_dir / "samples" / "step_2.md").read_text()
    assert "**reference**" in samples and "**policy**" in samples and "sun a star" in samples
    logged = (run_dir / "metrics.csv").read_text()
    for key in ("train/loss", "train/rewards/accuracies", "train/rewards/margins"):
        assert key in logged

    # the adapter is plain PEFT: it loads on the base without lit-dpo
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, adapter)
    trained = {n: p for n, p in reloaded.named_parameters() if "lora_B" in n}
    assert trained and any(p.abs().sum() > 0 for p in trained.values())


def test_validate_reloads_the_adapter_and_reproduces_fit_metrics(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    main(_fit_args(tiny_model_dir, tiny_data_dir, tmp_path))
    after_fit = json.loads((tmp_path / "fit_metrics.json").read_text())

    main(
        [
            "validate",
            f"--model.model={tiny_model_dir}",
            f"--model.load.adapter={tmp_path / 'adapter'}",
            f"--data.dataset={tiny_data_dir}",
            "--data.batch_size=2",
            "--data.max_length=64",
            "--data.max_prompt_length=32",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    validated = json.loads((tmp_path / "validate_metrics.json").read_text())
    for key in ("val/loss", "val/logps/chosen", "val/logps/rejected", "val/rewards/margins"):
        assert validated[key] == pytest.approx(after_fit[key], abs=1e-4), key
    assert validated["val/loss"] != pytest.approx(0.6931472, abs=1e-4), "adapter not applied"


def test_validate_after_fit_reuses_the_reference_table_and_writes_no_samples(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    """What ``make demo`` relies on: with ``model.efficiency.precompute_reference``, ``fit`` scores
    the held-out pairs under the reference once and ``validate`` of the saved adapter reads that
    table (the cache key matches: same base, same pairs) instead of scoring them again, with the
    same reference metrics; GenerateSamples with ``in_validate_command`` off generates in fit
    only."""
    import lit_dpo.train.reference_table as reference

    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    scored = []
    compute_table = reference.compute_table

    def counting_compute_table(score, dataset, *args, **kwargs):
        scored.append(len(dataset))
        return compute_table(score, dataset, *args, **kwargs)

    monkeypatch.setattr(reference, "compute_table", counting_compute_table)
    samples = "--trainer.callbacks.in_validate_command=false"
    precompute = "--model.efficiency.precompute_reference=true"
    main(_fit_args(tiny_model_dir, tiny_data_dir, tmp_path, precompute, samples))
    after_fit = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert len(scored) == 2  # the train table and the val table
    written = sorted(tmp_path.glob("lightning_logs/*/samples/*.md"))
    assert len(written) == 1

    main(
        [
            "validate",
            f"--model.model={tiny_model_dir}",
            f"--model.load.adapter={tmp_path / 'adapter'}",
            "--model.efficiency.precompute_reference=true",
            f"--data.dataset={tiny_data_dir}",
            "--data.batch_size=2",
            "--data.max_length=64",
            "--data.max_prompt_length=32",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=lit_dpo.callbacks.GenerateSamples",
            "--trainer.callbacks.max_new_tokens=4",
            samples,
        ]
    )
    assert len(scored) == 2, "validate scored the reference again"
    assert sorted(tmp_path.glob("lightning_logs/*/samples/*.md")) == written
    validated = json.loads((tmp_path / "validate_metrics.json").read_text())
    for key in ("val/logps_accuracy/reference", "val/logps_accuracy/policy", "val/loss"):
        assert validated[key] == pytest.approx(after_fit[key], abs=1e-4), key


def _train_losses(root) -> dict[int, float]:
    """{step: train/loss} from the run's metrics.csv."""
    rows = csv.DictReader((root / "lightning_logs" / "version_0" / "metrics.csv").open())
    return {int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")}


@pytest.mark.usefixtures("one_thread")
def test_a_finished_fit_trains_on_from_its_checkpoint_file(tiny_model_dir, tiny_data_dir, tmp_path):
    """``--ckpt_path FILE`` of a finished 1-epoch fit, with ``--trainer.max_epochs=2`` and another
    root: the second epoch of a 2-epoch fit, step for step. (test_resume covers ``--ckpt_path
    last`` after an interrupt or a crash in the same root.) A constant learning rate, so the first
    epoch does not depend on how many follow."""
    constant_lr = (
        "--model.optimization.lr_schedule=constant",
        "--model.optimization.warmup_ratio=0",
    )
    main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "first", *constant_lr))
    (checkpoint,) = (tmp_path / "first" / "lightning_logs" / "version_0" / "checkpoints").glob(
        "*.ckpt"
    )
    state = torch.load(checkpoint, weights_only=True)
    assert state["global_step"] == 2
    weights = [k for k in state["state_dict"] if "metrics" not in k]
    assert weights and all("lora_" in k for k in weights)  # the 4-bit base is reloaded
    assert state["optimizer_states"] and state["lr_schedulers"]

    two_epochs = (*constant_lr, "--trainer.max_epochs=2")
    main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "straight", *two_epochs))
    main(
        tiny_fit_args(
            tiny_model_dir,
            tiny_data_dir,
            tmp_path / "resumed",
            *two_epochs,
            f"--ckpt_path={checkpoint}",
        )
    )
    straight, resumed = _train_losses(tmp_path / "straight"), _train_losses(tmp_path / "resumed")
    assert sorted(straight) == [0, 1, 2, 3]
    # the global step continues at 2; a resume that restarted at 0 would log steps 0 and 1
    assert sorted(resumed) == [2, 3]
    # step 2 needs the LoRA weights restored, step 3 also AdamW's moments
    assert straight[3] != pytest.approx(straight[2], abs=1e-3)
    print("|resumed - straight| train/loss:", {s: abs(resumed[s] - straight[s]) for s in resumed})
    for step in (2, 3):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-6), step
    expected = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    got = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)


def test_malformed_row_stops_with_one_line_naming_it(tiny_model_dir, tmp_path, capsys):
    from conftest import ultrafeedback_row, write_jsonl

    rows = [ultrafeedback_row("Q?", "good", "bad") for _ in range(3)]
    rows[2]["rejected"][0] = {"role": "user", "content": "another question"}
    write_jsonl(tmp_path / "train_prefs.jsonl", rows)
    with pytest.raises(SystemExit) as exit_info:
        main(_fit_args(tiny_model_dir, tmp_path / "train_prefs.jsonl", tmp_path / "run"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    path = tmp_path / "train_prefs.jsonl"
    assert f"lit-dpo: error: {path} row 2: 'chosen' and 'rejected' must share every turn" in err
    assert "Traceback" not in err
