"""Every YAML in configs/ parses through the CLI, with the values it says it sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_dpo.cli import DPOCLI, main
from lit_dpo.data.datamodule import PreferenceDataModule
from lit_dpo.errors import ConfigError
from lit_dpo.train.module import DPOModule

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
# logger examples, given after a recipe: --config configs/cpu.yaml --config configs/loggers/X.yaml
LOGGER_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "loggers").glob("*.yaml"))
# Lightning builds an FSDP trainer only on a CUDA accelerator; these are parsed, not instantiated.
GPU_ONLY = {"multi_gpu.yaml"}


def _parse(*args: str) -> DPOCLI:
    return DPOCLI(
        DPOModule, PreferenceDataModule, run=False, args=list(args), auto_configure_optimizers=False
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_prints(config, capsys):
    """``--print_config`` parses and type-checks every value without building anything."""
    with pytest.raises(SystemExit) as done:
        _parse("--config", str(config), "--print_config")
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["model"] == yaml.safe_load(config.read_text())["model"]["model"]


@pytest.mark.parametrize("config", LOGGER_CONFIGS, ids=lambda p: p.name)
def test_logger_config_replaces_the_recipes_logger(config, capsys):
    """Each parses on top of cpu.yaml, and its logger is the one the run gets (tests/test_loggers
    trains with each and reads its store back)."""
    with pytest.raises(SystemExit) as done:
        _parse("--config", "configs/cpu.yaml", "--config", str(config), "--print_config")
    assert done.value.code in (0, None)
    logger = yaml.safe_load(capsys.readouterr().out)["trainer"]["logger"]
    expected = yaml.safe_load(config.read_text())["trainer"]["logger"]
    assert logger["class_path"] == expected["class_path"]
    assert expected["init_args"].items() <= logger["init_args"].items()


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c.name not in GPU_ONLY], ids=lambda p: p.name
)
def test_config_parses(config):
    cli = _parse("--config", str(config), "--trainer.accelerator=cpu")
    assert isinstance(cli.model, DPOModule)
    assert cli.datamodule.hparams.tokenizer == cli.model.settings.model


def test_t4_recipe():
    cli = _parse("--config", "configs/t4.yaml", "--trainer.accelerator=cpu")
    settings, data = cli.model.settings, cli.datamodule.hparams
    assert settings.model == "Qwen/Qwen2-0.5B-Instruct"
    assert (settings.load.quantization, settings.load.compute_dtype) == ("nf4", "float16")
    assert (settings.objective.beta, settings.objective.sft_weight) == (0.1, 0.5)
    assert settings.efficiency.gradient_checkpointing
    assert (data.batch_size, data.max_length, data.max_prompt_length) == (2, 1024, 512)
    assert cli.trainer.accumulate_grad_batches == 8
    assert cli.config.trainer.precision == "16-mixed"  # on a CPU Lightning would run bf16


def test_multi_gpu_recipe_is_fsdp_qlora(capsys):
    with pytest.raises(SystemExit):
        _parse("--config", "configs/multi_gpu.yaml", "--print_config")
    printed = yaml.safe_load(capsys.readouterr().out)
    trainer, model = printed["trainer"], printed["model"]
    assert trainer["strategy"]["class_path"] == "lightning.pytorch.strategies.FSDPStrategy"
    assert trainer["strategy"]["init_args"]["state_dict_type"] == "full"
    # one dtype everywhere, so FSDP can flatten the 4-bit weights with the rest of each block
    assert trainer["precision"] == "bf16-true"
    load = model["load"]
    assert (load["quantization"], load["compute_dtype"], load["quant_storage"]) == (
        "nf4",
        "bfloat16",
        "bfloat16",
    )
    assert not model["efficiency"]["precompute_reference"]


def test_dotted_overrides_reach_the_module():
    cli = _parse(
        "--config", "configs/cpu.yaml", "--model.objective.beta", "0.2", "--trainer.max_steps", "3"
    )
    assert cli.model.settings.objective.beta == 0.2
    # what checkpoints and hparams.yaml keep: the same value, in its group
    assert cli.model.hparams["objective"]["beta"] == 0.2
    assert cli.trainer.max_steps == 3


BAD_SETTINGS = [
    # (override, what the parse raises, the message after "lit-dpo: error: ")
    ("--model.objective.beta=-1", ConfigError, "model settings: beta must be positive, got -1.0"),
    (
        "--data.max_prompt_length=600",
        ConfigError,
        "data settings: max_prompt_length (600) must be below max_length (256) to leave room "
        "for the reply",
    ),
    # a choice outside the Literal stops in jsonargparse, which exits 2 with its usage message
    # listing the choices (a name or a list of names)
    (
        "--model.objective.loss_type=not_a_loss",
        SystemExit,
        "Expected a typing.Literal['sigmoid', 'hinge', 'ipo', 'sigmoid_norm'",
    ),
]


@pytest.mark.parametrize(("override", "raised", "message"), BAD_SETTINGS)
def test_bad_settings_fail_before_any_model_loads(
    override, raised, message, monkeypatch, tmp_path, capsys
):
    loaded = []
    for owner, method in (
        (DPOModule, "configure_model"),
        (PreferenceDataModule, "prepare_data"),
        (PreferenceDataModule, "setup"),
    ):
        monkeypatch.setattr(owner, method, lambda *a, name=method, **k: loaded.append(name))
    config = str(Path("configs/cpu.yaml").resolve())
    monkeypatch.chdir(tmp_path)  # where cpu.yaml's runs/cpu would be written

    with pytest.raises(raised) as error:
        _parse("--config", config, override)
    if raised is SystemExit:
        assert error.value.code == 2
        assert message in capsys.readouterr().err
    else:
        assert str(error.value) == message

    # what a user sees: one line and exit status 2
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--config", config, override])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    if raised is SystemExit:
        assert message in err and "error: " in err
    else:
        assert f"lit-dpo: error: {message}\n" in err
    assert "Traceback" not in err
    assert loaded == [], f"loaded before failing: {loaded}"
    assert list(tmp_path.iterdir()) == [], "wrote files before failing"
