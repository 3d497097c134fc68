"""The 4-bit LoRA policy: trainable set, gradients through 4-bit layers, adapter reload."""

from __future__ import annotations

import pytest
import torch

from lit_dpo.errors import ConfigError
from lit_dpo.models.policy import load_policy


def _lora_grads(policy, input_ids) -> dict[str, torch.Tensor]:
    policy.zero_grad()
    policy(input_ids=input_ids).logits.float().logsumexp(-1).sum().backward()
    return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


def test_only_lora_weights_train(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir), quantization="nf4")
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # every attention and MLP projection of both layers is adapted, the output head is not
    for projection in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert sum(projection in n for n in trainable) == 2 * 2  # 2 layers x (A, B)
    assert not any("lm_head" in n for n in trainable)
    assert all(p.dtype == torch.float32 for n, p in policy.named_parameters() if p.requires_grad)
    assert policy.training


def test_base_linear_layers_are_4bit(tiny_model_dir):
    import bitsandbytes as bnb

    policy = load_policy(str(tiny_model_dir), quantization="nf4")
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in policy.modules()) == 14


def test_eval_pass_does_not_break_gradients_through_4bit_layers(tiny_model_dir):
    """A no-grad eval pass (reference, validation) must leave training gradients unchanged."""
    torch.manual_seed(0)
    input_ids = torch.randint(3, 40, (2, 12))
    fresh = load_policy(str(tiny_model_dir), quantization="nf4", lora_dropout=0.0)
    with torch.no_grad():
        for name, parameter in fresh.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    state = {n: p.detach().clone() for n, p in fresh.named_parameters() if "lora_" in n}
    expected = _lora_grads(fresh, input_ids)

    reused = load_policy(str(tiny_model_dir), quantization="nf4", lora_dropout=0.0)
    reused.load_state_dict(state, strict=False)
    reused.eval()
    with torch.no_grad(), reused.disable_adapter():
        reused(input_ids=input_ids)
    reused.train()
    got = _lora_grads(reused, input_ids)
    first_layer_a = [n for n in expected if "layers.0." in n and "lora_A" in n]
    assert first_layer_a and all(expected[n].abs().sum() > 0 for n in first_layer_a)
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-5), name


def test_saved_adapter_reloads_with_same_logps(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    policy = load_policy(str(tiny_model_dir), quantization="none", lora_dropout=0.0)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    policy.save_pretrained(tmp_path / "adapter")
    input_ids = torch.randint(3, 40, (2, 10))
    with torch.no_grad():
        expected = policy.eval()(input_ids=input_ids).logits
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(
            input_ids=input_ids
        ).logits
        reloaded = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter"
        ).eval()
        got = reloaded(input_ids=input_ids).logits
    assert not torch.allclose(expected, base_logits, atol=1e-3), "the adapter changes nothing"
    assert torch.allclose(got, expected, atol=1e-5)


def test_unknown_target_module_is_a_config_error(tiny_model_dir):
    with pytest.raises(ConfigError, match="not_a_module"):
        load_policy(str(tiny_model_dir), quantization="none", target_modules=["not_a_module"])


def _maps(path) -> bool:
    """Whether this process has ``path`` memory-mapped."""
    from pathlib import Path

    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="Linux /proc")
def test_4bit_base_loads_tensor_by_tensor_into_the_model_from_pretrained_makes(tiny_model_dir):
    """load_base reads the safetensors with pread, so the file is never mapped, and builds the
    very model ``from_pretrained(folder)`` builds: the same packed 4-bit weights and scales, the
    same other weights, the same generation config."""
    import gc

    from transformers import AutoModelForCausalLM

    from lit_dpo.models.policy import nf4_config
    from lit_dpo.models.weights import load_base

    weights = tiny_model_dir / "model.safetensors"
    kwargs = {"dtype": torch.float32, "quantization_config": nf4_config(torch.float32)}
    gc.collect()
    assert not _maps(weights), "an earlier test left the file mapped: the test shows nothing"
    got = load_base(str(tiny_model_dir), quantized=True, use_safetensors=True, **kwargs)
    assert not _maps(weights)
    expected = AutoModelForCausalLM.from_pretrained(tiny_model_dir, **kwargs)
    assert _maps(weights), "transformers no longer maps the file: load_base may be moot"
    got_state, expected_state = got.state_dict(), expected.state_dict()
    assert got_state.keys() == expected_state.keys()
    for name, tensor in expected_state.items():
        assert torch.equal(got_state[name], tensor), name
    assert got.generation_config.to_dict() == expected.generation_config.to_dict()
    assert got.config.to_dict() == expected.config.to_dict()
    # peft records this as the adapter's base_model_name_or_path (export and serve read it)
    assert got.name_or_path == expected.name_or_path == str(tiny_model_dir)


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="Linux /proc")
def test_a_mapped_4bit_load_releases_the_model_file(tiny_model_dir):
    """Where transformers loads (mmap), the weights it did not quantize point into the file's map;
    copying them closes it."""
    import gc

    from transformers import AutoModelForCausalLM

    from lit_dpo.models.policy import nf4_config
    from lit_dpo.models.weights import release_model_file

    weights = tiny_model_dir / "model.safetensors"
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, quantization_config=nf4_config(torch.float32)
    )
    before = model.model.embed_tokens.weight.detach().clone()
    gc.collect()
    assert _maps(weights)
    release_model_file(model)
    gc.collect()
    assert not _maps(weights)
    assert torch.equal(model.model.embed_tokens.weight, before)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
