"""The models both sides of the bench train (tools/bench.py): the GPU model with random weights,
and the seeded random adapter both start from."""

from __future__ import annotations

from pathlib import Path

# the CPU bench's model, and the tokenizer of the GPU one
SMOLLM2 = "embedded:SmolLM2-135M-Instruct"
# LoRA B of the shared starting adapter ~ N(0, this): far enough from the reference for a real loss.
ADAPTER_B_STD = 0.01


def starting_adapter(model, seed: int) -> None:
    """The same random LoRA weights on both sides: named alike by peft, filled in name order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_A" in name:
                std = parameter.shape[1] ** -0.5
            elif "lora_B" in name:
                std = ADAPTER_B_STD
            else:
                continue
            values = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(values.to(parameter))


def build_gpu_model(path: Path, shape=None) -> str:
    """A Qwen2-0.5B-shaped causal LM (or ``shape``, a ``ModelShape``) with random weights, and
    SmolLM2's tokenizer (ids fit)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from lit_dpo.preflight.memory import QWEN2_0_5B_INSTRUCT
    from lit_dpo.sources import resolve_model

    shape = shape or QWEN2_0_5B_INSTRUCT
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(SMOLLM2), trust_remote_code=False)
    config = Qwen2Config(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
