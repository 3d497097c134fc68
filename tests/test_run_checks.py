"""Bad settings fail before data or model load, with a message saying what to change."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import cli_error, make_adapter, tiny_fit_args

from lit_dpo.device import DEVICE_PRESETS, BitsAndBytes, Device, quantization_problems
from lit_dpo.errors import ConfigError
from lit_dpo.sources import is_hub_id, model_name_problem
from lit_dpo.train import run_checks
from lit_dpo.train.run_checks import run_problems
from lit_dpo.train.settings import LoadSettings, Settings

CPU = Device("cpu", 0.0, None, "cpu")
BNB_OK = BitsAndBytes(error=None, devices=frozenset({"cpu", "cuda"}), gpu_library=True)


def _settings(model: str = "Qwen/Qwen2-0.5B-Instruct", **load) -> Settings:
    """Settings of the T4 recipe's model, with ``load`` settings overridden."""
    return Settings(model=model, load=LoadSettings(**load))


@pytest.mark.parametrize(
    "name", ["Qwen/Qwen2-0.5B-Instruct", "gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct"]
)
def test_hub_ids_are_not_taken_for_missing_paths(name):
    assert is_hub_id(name)
    assert model_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["./models/qwen", "/no/such/model", "~/no-such-model", "runs/a/b", "../qwen", "x/"]
)
def test_a_missing_local_path_is_named(name):
    assert not is_hub_id(name)
    problem = model_name_problem(name)
    assert problem is not None and f"model {name!r}: no such folder" in problem


def test_a_folder_that_holds_no_model_is_named(tiny_model_dir, tmp_path):
    assert model_name_problem(str(tiny_model_dir)) is None
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    assert "is a PEFT adapter, not a model" in model_name_problem(str(adapter))
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in model_name_problem(str(tmp_path / "empty"))


def test_missing_model_path_stops_fit_with_one_line(tiny_data_dir, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    err = cli_error(tiny_fit_args(missing, tiny_data_dir, tmp_path), capsys)
    assert f"lit-dpo: error: model.model: model '{missing}': no such folder" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_missing_adapter_stops_validate(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    err = cli_error(
        [
            "validate",
            f"--model.model={tiny_model_dir}",
            f"--model.load.adapter={tmp_path / 'nowhere'}",
            f"--data.dataset={tiny_data_dir}",
            "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        capsys,
    )
    assert f"lit-dpo: error: model.load.adapter: {tmp_path / 'nowhere'}: no such folder" in err


def test_4bit_needs_an_importable_bitsandbytes_with_a_backend_for_the_device():
    missing = BitsAndBytes(error="ModuleNotFoundError: No module named 'bitsandbytes'")
    (problem,) = quantization_problems("nf4", "cuda", missing)
    assert "needs bitsandbytes, which cannot be imported" in problem
    assert "set model.load.quantization none" in problem and "pip install bitsandbytes" in problem
    assert quantization_problems("none", "cuda", missing) == []

    cpu_only = BitsAndBytes(error=None, devices=frozenset({"cpu", "cuda"}), gpu_library=False)
    (problem,) = quantization_problems("nf4", "cuda", cpu_only)
    assert "no native library" in problem and "model.load.quantization none" in problem
    assert quantization_problems("nf4", "cpu", cpu_only) == []

    no_backend = BitsAndBytes(error=None, devices=frozenset({"cuda"}))
    (problem,) = quantization_problems("nf4", "mps", no_backend)
    assert "no backend for mps" in problem


def test_the_installed_bitsandbytes_runs_4bit_on_this_cpu():
    status = run_checks.bitsandbytes_status()
    assert status.error is None and "cpu" in status.devices
    assert quantization_problems("nf4", "cpu", status) == []


def test_bitsandbytes_that_cannot_run_stops_fit(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, monkeypatch
):
    # the probe of the install is replaced, as on a machine whose bitsandbytes does not import
    monkeypatch.setattr(
        run_checks, "bitsandbytes_status", lambda: BitsAndBytes(error="ImportError: broken")
    )
    err = cli_error(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path), capsys)
    assert "lit-dpo: error: model.load.quantization nf4 needs bitsandbytes" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_bf16_on_a_t4_is_refused_and_fine_on_an_a100():
    t4, a100 = DEVICE_PRESETS["t4"], DEVICE_PRESETS["a100"]
    (problem,) = run_problems(_settings(), "bf16-mixed", t4, BNB_OK)
    assert "compute capability 8.0" in problem and "7.5" in problem
    assert "trainer.precision: 16-mixed" in problem
    assert "model.load.compute_dtype: float16" in problem
    problems = run_problems(_settings(compute_dtype="bfloat16"), "16-mixed", t4, BNB_OK)
    assert any("7.5" in p for p in problems)
    assert any("set model.load.compute_dtype: float16" in p for p in problems)
    assert run_problems(_settings(), "bf16-mixed", a100, BNB_OK) == []
    assert run_problems(_settings(compute_dtype="float16"), "16-mixed", t4, BNB_OK) == []
    assert run_problems(_settings(), "bf16-mixed", CPU, BNB_OK) == []


def test_check_run_reads_the_capability_of_the_trainer_gpu(monkeypatch):
    # a CUDA trainer on a T4, faked: this machine has no GPU
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(run_checks, "bitsandbytes_status", lambda: BNB_OK)
    trainer = SimpleNamespace(
        precision="bf16-mixed", strategy=SimpleNamespace(root_device=torch.device("cuda", 0))
    )
    with pytest.raises(ConfigError, match="Tesla T4 has 7.5"):
        run_checks.check_run(_settings(), trainer)
    trainer.precision = "16-mixed"
    run_checks.check_run(_settings(compute_dtype="float16"), trainer)


def test_every_problem_is_reported_at_once(tmp_path):
    problems = run_problems(
        _settings(model="./gone", adapter=str(tmp_path / "gone"), compute_dtype="bfloat16"),
        "bf16-mixed",
        DEVICE_PRESETS["t4"],
        BitsAndBytes(error="ImportError: broken"),
    )
    assert len(problems) == 4
    assert problems[0].startswith("model.model: model './gone': no such folder")
    assert problems[1].startswith(f"model.load.adapter: {tmp_path / 'gone'}: no such folder")
    assert problems[2].startswith("model.load.quantization nf4 needs bitsandbytes")
    assert "NVIDIA T4 (16 GB) has 7.5" in problems[3]
