"""One loader for inference: compare, serve and export load an adapter folder the same way."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_adapter

from lit_dpo.compare.command import compare
from lit_dpo.compare.scoring import answer_rewards
from lit_dpo.errors import ConfigError
from lit_dpo.models.generate import generate_batch_ids
from lit_dpo.models.inference import adapter_base_model, load_for_inference
from lit_dpo.models.reference import REFERENCE_ADAPTER, as_reference
from lit_dpo.serve.worker import load_served_model
from lit_dpo.sources import pad_token_id

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = torch.tensor([[3, 4, 5, 6, 7, 8]])
MAX_LENGTH = 96


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """A reference adapter (as an SFT run leaves) and a policy of the same LoRA shape."""
    root = tmp_path_factory.mktemp("inference")
    reference = make_adapter(tiny_model_dir, root / "sft", std=0.5, seed=1)
    policy = make_adapter(tiny_model_dir, root / "dpo", std=0.5, seed=2)
    return policy, reference


def _logits(model) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        policy = model(input_ids=IDS).logits
        with as_reference(model):
            reference = model(input_ids=IDS).logits
    return policy, reference


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_serve_and_compare_load_an_adapter_identically(adapters, tiny_model_dir, quantization):
    """serve's model is the loader's (compare's): the same logits, bit for bit, for the policy
    and for the frozen reference adapter, and the reference is not the policy."""
    policy_dir, reference_dir = adapters
    served = load_served_model(
        policy_dir, quantization=quantization, reference_adapter=reference_dir
    )
    loaded = load_for_inference(
        policy_dir, str(tiny_model_dir), reference_dir, quantization=quantization, device="cpu"
    )
    assert served.source == {
        "adapter": str(policy_dir),
        "model": str(tiny_model_dir),
        "quantization": quantization,
        "reference": "adapter",
        "reference_adapter": str(reference_dir),
    }
    served_logits, loaded_logits = _logits(served.model), _logits(loaded.model)
    for served_side, loaded_side in zip(served_logits, loaded_logits, strict=True):
        assert torch.equal(served_side, loaded_side)
    assert (served_logits[0] - served_logits[1]).abs().max() > 1e-3, "vacuous: policy = reference"
    for model in (served.model, loaded.model):
        assert not model.training and model.config.use_cache
        assert not any(p.requires_grad for p in model.parameters())
        assert REFERENCE_ADAPTER in model.peft_config


def test_compare_scores_with_the_model_serve_answers_with(adapters, tiny_model_dir, tmp_path):
    """The implicit reward compare reports for an answer is the one serve's model gives it."""
    policy_dir, reference_dir = adapters
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the capital of France?\n")
    report = compare(
        str(policy_dir),
        reference_adapter=str(reference_dir),
        prompts=str(prompts),
        edge_cases=False,
        val_size=0,
        out=str(tmp_path / "out"),
        max_new_tokens=6,
        max_length=MAX_LENGTH,
        device="cpu",
    )
    result = report.results[0]
    served = load_served_model(policy_dir, reference_adapter=reference_dir)
    rewards = answer_rewards(
        served.model,
        served.tokenizer,
        result.case.messages,
        (result.reference.text, result.policy.text),
        beta=0.1,
        max_length=MAX_LENGTH,
        max_prompt_length=MAX_LENGTH - 6 - 8,
    )
    assert rewards == (result.reference.reward, result.policy.reward)
    assert rewards[0] != rewards[1] or result.reference.text == result.policy.text


def test_the_base_comes_from_the_adapter_record_once(adapters, tiny_model_dir, tmp_path):
    policy_dir, _ = adapters
    assert adapter_base_model(policy_dir) == str(tiny_model_dir)
    assert adapter_base_model(policy_dir, "other") == "other"
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    config = json.loads((policy_dir / "adapter_config.json").read_text())
    (unnamed / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": None})
    )
    (unnamed / "adapter_model.safetensors").write_bytes(
        (policy_dir / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(ConfigError, match="names no base_model_name_or_path; pass --model"):
        load_for_inference(unnamed)
    with pytest.raises(ConfigError, match="names no base_model_name_or_path; pass --model"):
        load_served_model(unnamed)


def test_a_merged_folder_loads_alone(tiny_model_dir):
    loaded = load_for_inference(tiny_model_dir, quantization="none")
    assert loaded.merged and loaded.base == str(tiny_model_dir)
    assert not hasattr(loaded.model, "peft_config")


def test_pad_token_falls_back_to_end_of_sequence_in_one_place(tiny_tokenizer, tiny_model_dir):
    """A tokenizer without a pad token pads with its end-of-sequence id, in batches and in
    generation alike; one with neither is refused by name."""
    from transformers import AutoModelForCausalLM

    no_pad = tiny_tokenizer.__class__.from_pretrained(tiny_model_dir)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None and no_pad.eos_token_id is not None
    assert pad_token_id(no_pad) == no_pad.eos_token_id
    assert pad_token_id(tiny_tokenizer) == tiny_tokenizer.pad_token_id

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[3, 4, 5, 6], [7, 8]]
    generation = {"max_new_tokens": 4, "do_sample": False}
    # padded positions are masked: which id fills them changes no answer
    assert generate_batch_ids(model, no_pad, prompts, generation) == generate_batch_ids(
        model, tiny_tokenizer, prompts, generation
    )

    no_pad.eos_token = None
    with pytest.raises(ConfigError, match="neither a pad nor an end-of-sequence token"):
        pad_token_id(no_pad)


def test_every_4bit_load_keeps_the_kernel_of_the_compute_dtype(
    adapters, tiny_model_dir, monkeypatch
):
    """On a CPU with AVX512-BF16 bitsandbytes would switch a 4-bit layer to a bf16 kernel with no
    backward the first time it runs in eval mode: training would lose gradients and compare would
    score ~1e-3 nats away from validation. Every loader turns the switch off, on any CPU (the
    capability is faked here, so the test is not vacuous on a CPU without it)."""
    import bitsandbytes.nn.modules

    from lit_dpo.models.policy import load_policy

    monkeypatch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: True)
    policy_dir, _ = adapters
    loaded = {
        "compare": load_for_inference(policy_dir, str(tiny_model_dir), device="cpu").model,
        "serve": load_served_model(policy_dir, quantization="nf4").model,
        "fit": load_policy(str(tiny_model_dir), lora_r=4, gradient_checkpointing=False),
    }
    for name, model in loaded.items():
        switches = [m.support_avx512bf16_for_cpu for m in model.modules()
                    if isinstance(m, bitsandbytes.nn.Linear4bit)]
        assert switches and not any(switches), name
