"""An adapter is attached only to a model it fits, by every command that loads one."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from conftest import make_adapter

from lit_dpo.cli import main
from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import fit_problems
from lit_dpo.models.inference import load_for_inference
from lit_dpo.models.policy import load_policy
from lit_dpo.serve.worker import load_served_model


@pytest.fixture(scope="module")
def narrow_model_dir(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """The tiny Llama's twin with hidden size 32 instead of 64: same module names, other shapes."""
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = 32, 64
    path = tmp_path_factory.mktemp("narrow-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "adapter")


def _expect_mismatch(error: ConfigError, adapter_dir, tiny_model_dir, narrow_model_dir) -> None:
    message = str(error)
    assert f"the adapter {adapter_dir} (trained on {tiny_model_dir}) does not fit" in message
    assert f"the model '{narrow_model_dir}'" in message
    assert (
        "model.layers.0.mlp.down_proj has 64 input features, the adapter's lora_A.weight expects "
        "128" in message
    )
    assert "(and " in message and "Load it on the model it was trained on" in message


@pytest.mark.parametrize("loader", ["policy", "export", "serve"])
def test_every_loader_refuses_an_adapter_of_another_shape(
    loader, adapter_dir, tiny_model_dir, narrow_model_dir
):
    narrow = str(narrow_model_dir)
    with pytest.raises(ConfigError) as error:
        if loader == "policy":  # fit, validate
            load_policy(narrow, quantization="none", adapter=str(adapter_dir))
        elif loader == "export":  # and compare: the one inference loader
            load_for_inference(adapter_dir, narrow, quantization="none")
        else:
            load_served_model(adapter_dir, narrow, quantization="none")
    _expect_mismatch(error.value, adapter_dir, tiny_model_dir, narrow_model_dir)


def test_validate_on_the_wrong_model_is_one_line(
    adapter_dir, narrow_model_dir, tiny_data_dir, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "validate",
                f"--model.model={narrow_model_dir}",
                f"--model.load.adapter={adapter_dir}",
                f"--data.dataset={tiny_data_dir}",
                "--data.max_length=64",
                "--data.max_prompt_length=32",
                "--trainer.accelerator=cpu",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"lit-dpo: error: the adapter {adapter_dir} (trained on " in err
    assert "Traceback" not in err


def test_the_adapter_still_loads_on_its_own_model(adapter_dir, tiny_model_dir):
    policy = load_policy(str(tiny_model_dir), quantization="nf4", adapter=str(adapter_dir))
    trained = [p for n, p in policy.named_parameters() if "lora_B" in n]
    assert trained and all(p.abs().sum() > 0 for p in trained)


def test_a_renamed_copy_of_the_base_loads_with_a_warning(
    adapter_dir, tiny_model_dir, tmp_path, caplog
):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    with caplog.at_level(logging.WARNING, logger="lit_dpo.models.adapters"):
        model = load_for_inference(adapter_dir, str(copy), quantization="none").model
    assert model.peft_config["default"].r == 4
    assert f"records the base {tiny_model_dir}; loading it on {copy}" in caplog.text


def test_a_folder_that_is_not_an_adapter_is_named(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no adapter_config.json; is this a PEFT"):
        load_policy(str(tiny_model_dir), quantization="none", adapter=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        load_for_inference(tmp_path / "empty", str(tiny_model_dir), quantization="none")


def test_fit_problems_names_missing_modules_and_shapes():
    modules = {
        "model.q_proj": torch.nn.Linear(8, 4),
        "model.embed": torch.nn.Embedding(10, 8),
    }
    shapes = {
        "base_model.model.model.q_proj.lora_A.weight": (2, 8),
        "base_model.model.model.q_proj.lora_B.weight": (6, 2),
        "base_model.model.model.embed.lora_embedding_A": (2, 10),
        "base_model.model.model.embed.lora_embedding_B": (8, 2),
        "base_model.model.model.c_attn.lora_A.weight": (2, 8),
        "base_model.model.model.c_attn.lora_B.weight": (8, 2),
    }
    assert fit_problems(shapes, modules) == [
        "the model has no module model.c_attn",
        "model.q_proj has 4 output features, the adapter's lora_B.weight expects 6",
    ]
    del shapes["base_model.model.model.q_proj.lora_B.weight"]
    del shapes["base_model.model.model.c_attn.lora_A.weight"]
    del shapes["base_model.model.model.c_attn.lora_B.weight"]
    assert fit_problems(shapes, modules) == []
