"""Answers from a causal LM, or from a PEFT model with adapters on (policy) or off (reference).

Shared by the ``GenerateSamples`` callback (during training) and ``lit-dpo compare`` (after it).
Prompts come in as token ids so the caller decides how they are rendered and truncated (compare
renders them with :func:`lit_dpo.data.batches.encode_pair`, exactly as the training data is).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from lit_dpo.models.reference import as_reference, reference_adapter_name
from lit_dpo.sources import pad_token_id


def generate_ids(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    generation: dict[str, Any],
) -> list[int]:
    """Generate one answer and return its new token ids (the prompt is not included).

    The model is put in eval mode (no dropout) for the call and left in the mode it was in.

    Args:
        model: a causal LM or a PEFT model wrapping one.
        tokenizer: supplies the end-of-sequence and padding ids.
        prompt_ids: the rendered prompt, ending with the generation prompt.
        generation: keyword arguments of ``generate``, e.g. ``max_new_tokens``, ``do_sample``.
    """
    return generate_batch_ids(model, tokenizer, [prompt_ids], generation)[0]


def generate_batch_ids(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    generation: dict[str, Any],
) -> list[list[int]]:
    """``generate_ids`` for several prompts in one batch, left-padded: each new token is one
    forward of the batch, and on a CPU a 4-bit forward costs about the same for a few rows as for
    one (the weights are dequantized per forward), so n prompts cost little more than one.

    Each answer ends at its first end-of-sequence token (kept, as ``generate`` returns it for a
    single prompt); the padding ``generate`` appends to answers that finished early is dropped.
    Greedy answers can differ from one-prompt answers in rare near-ties: padding changes the
    floating-point order of the prompt's attention.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
    width = max(len(ids) for ids in prompts)
    input_ids = torch.tensor(
        [[pad_id] * (width - len(ids)) + ids for ids in prompts], device=device
    )
    attention_mask = torch.tensor(
        [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device
    )
    try:
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                # training loads set use_cache=False in the config; generation wants the cache
                use_cache=True,
                **generation,
            )
    finally:
        model.train(was_training)
    return [_until_end(row[width:].tolist(), tokenizer.eos_token_id) for row in output]


def generate_for_adapters(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    generation: dict[str, Any],
    adapters: list[str],
) -> list[list[list[int]]]:
    """The answers of each adapter of a PEFT model (``"__base__"``: adapters off) to the same
    prompts, all in one batch (PEFT routes each row through its own adapter): one decoding loop
    instead of one per adapter, about half the time for two on a CPU. Each row is answered as
    ``generate_batch_ids`` answers it with that adapter alone.

    Returns:
        per adapter, per prompt, the answer's token ids.
    """
    rows = [ids for _ in adapters for ids in prompts]
    names = [name for name in adapters for _ in prompts]
    answers = generate_batch_ids(model, tokenizer, rows, {**generation, "adapter_names": names})
    return [answers[i * len(prompts) : (i + 1) * len(prompts)] for i in range(len(adapters))]


def mixes_adapters(model: torch.nn.Module, adapters: list[str]) -> bool:
    """Whether PEFT can run ``adapters`` side by side in one batch of ``model``: LoRA layers, none
    merged, none of them DoRA (PEFT refuses those)."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    return bool(layers) and not any(
        layer.merged or any(layer.use_dora.get(name) for name in adapters) for layer in layers
    )


def policy_and_reference_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    generation: dict[str, Any],
) -> tuple[list[list[int]], list[list[int]]]:
    """The answers (token ids) of the policy (the active adapter) and of the reference (its
    frozen reference adapter, else adapters off) to the same prompts: one batch for both where
    PEFT can mix the adapters (:func:`generate_for_adapters`), else one batch each."""
    adapters = [model.active_adapter, reference_adapter_name(model)]
    if mixes_adapters(model, adapters):
        policy, reference = generate_for_adapters(model, tokenizer, prompts, generation, adapters)
        return policy, reference
    policy = generate_batch_ids(model, tokenizer, prompts, generation)
    with as_reference(model):
        reference = generate_batch_ids(model, tokenizer, prompts, generation)
    return policy, reference


def _until_end(answer: list[int], eos_token_id: int | list[int] | None) -> list[int]:
    ends = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])
    for i, token in enumerate(answer):
        if token in ends:
            return answer[: i + 1]
    return answer


def decode_answer(tokenizer: PreTrainedTokenizerBase, answer_ids: list[int]) -> str:
    """The answer's text without special tokens (end-of-turn, padding) or surrounding space."""
    return tokenizer.decode(answer_ids, skip_special_tokens=True).strip()


def answer_length(tokenizer: PreTrainedTokenizerBase, answer_ids: list[int]) -> int:
    """Tokens of the answer proper: end-of-turn and padding tokens are not counted."""
    special = set(tokenizer.all_special_ids)
    return sum(token not in special for token in answer_ids)
