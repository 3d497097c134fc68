"""Pairs -> token ids -> padded batches with the prompt masked out of the labels.

Prompt and completion are rendered with the tokenizer's chat template and tokenized separately, so
the boundary between them is exact: the prompt ends with the generation prompt (``<|im_start|>
assistant\\n``) and the completion is the reply plus the template's end-of-turn. Tokenizing the
rendered text with ``add_special_tokens=False`` keeps the template's own BOS and adds no second one.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from lit_dpo.data.pairs import PreferencePair

IGNORE_INDEX = -100


def render_pair(pair: PreferencePair, tokenizer: PreTrainedTokenizerBase) -> tuple[str, str, str]:
    """Return (prompt text, chosen completion text, rejected completion text)."""
    prompt = tokenizer.apply_chat_template(pair.prompt, tokenize=False, add_generation_prompt=True)
    return (
        prompt,
        _completion(pair, pair.chosen, prompt, tokenizer),
        _completion(pair, pair.rejected, prompt, tokenizer),
    )


def _completion(
    pair: PreferencePair, reply: str, prompt: str, tokenizer: PreTrainedTokenizerBase
) -> str:
    full = tokenizer.apply_chat_template(
        [*pair.prompt, {"role": "assistant", "content": reply}], tokenize=False
    )
    if full.startswith(prompt):
        return full[len(prompt) :]
    # Some templates render history differently once a reply follows (e.g. they strip reasoning);
    # the reply and end-of-sequence is then the honest completion.
    return reply + (tokenizer.eos_token or "")


def encode_pair(
    pair: PreferencePair,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    max_prompt_length: int,
) -> dict[str, Any]:
    """Tokenize one pair and truncate it.

    The prompt keeps its last ``max_prompt_length`` tokens (the question sits at the end); each
    completion keeps its first ``max_length - len(prompt)`` tokens.

    Returns:
        ``prompt_ids``, ``chosen_ids``, ``rejected_ids``, ``truncated`` (bool), and the token
        counts before truncation: ``prompt_tokens``, ``chosen_tokens``, ``rejected_tokens``.
    """
    prompt, chosen, rejected = render_pair(pair, tokenizer)
    prompt_ids = _tokenize(prompt, tokenizer)
    if (
        tokenizer.bos_token_id is not None
        and _adds_bos(tokenizer)
        and prompt_ids[:1] != [tokenizer.bos_token_id]
    ):
        prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
    chosen_ids, rejected_ids = _tokenize(chosen, tokenizer), _tokenize(rejected, tokenizer)
    full_lengths = {
        "prompt_tokens": len(prompt_ids),
        "chosen_tokens": len(chosen_ids),
        "rejected_tokens": len(rejected_ids),
    }
    truncated = len(prompt_ids) > max_prompt_length
    prompt_ids = prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt_ids)
    truncated |= len(chosen_ids) > room or len(rejected_ids) > room
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids[:room],
        "rejected_ids": rejected_ids[:room],
        "truncated": truncated,
        **full_lengths,
    }


def collate_pairs(features: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack B encoded pairs into 2B right-padded sequences: chosen first, then rejected.

    Returns:
        ``input_ids``, ``attention_mask``, ``labels``: each (2B, T), T the longest sequence; labels
        are ``IGNORE_INDEX`` on prompt and padding so only completion tokens are scored. Features
        with a ``pair_index`` also give ``pair_index`` (B,); unpaired rows (``data.unpaired``),
        whose ``chosen_ids`` is the completion and ``rejected_ids`` its KL counterpart, give
        ``label`` (B,), true for a desirable completion; features with ``sft`` (a mixture
        with a ``sft: false`` part) give ``sft`` (B,), true where the SFT term learns the chosen
        reply.
    """
    sequences, labels = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for feature in features:
            prompt, completion = list(feature["prompt_ids"]), list(feature[side])
            sequences.append(prompt + completion)
            labels.append([IGNORE_INDEX] * len(prompt) + completion)
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    label_ids = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (sequence, label) in enumerate(zip(sequences, labels, strict=True)):
        input_ids[i, : len(sequence)] = torch.tensor(sequence)
        label_ids[i, : len(label)] = torch.tensor(label)
        attention_mask[i, : len(sequence)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}
    if "label" in features[0]:
        # unpaired rows (KTO): the first B sequences are completions, the last B their KL rows
        batch["label"] = torch.tensor([bool(feature["label"]) for feature in features])
    if "pair_index" in features[0]:
        batch["pair_index"] = torch.tensor([feature["pair_index"] for feature in features])
    if "sft" in features[0]:
        # a mixture part with sft false: the SFT term leaves these pairs' chosen replies out
        batch["sft"] = torch.tensor([bool(feature["sft"]) for feature in features])
    return batch


def _tokenize(text: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    # A template that omits BOS relies on the tokenizer to add it (Llama-2 style); one whose
    # tokenizer adds nothing (Qwen2, SmolLM2) must not get one.
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
