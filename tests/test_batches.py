"""Chat-template formatting, truncation and collation."""

from __future__ import annotations

import torch

from lit_dpo.data.batches import IGNORE_INDEX, collate_pairs, encode_pair, render_pair
from lit_dpo.data.pairs import PreferencePair

PAIR = PreferencePair(
    [{"role": "user", "content": "What is the capital of France?"}],
    "The capital of France is Paris.",
    "It is Lyon.",
)


def test_boundary_is_exact_and_completion_ends_the_turn(tiny_tokenizer):
    prompt, chosen, rejected = render_pair(PAIR, tiny_tokenizer)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert chosen == "The capital of France is Paris.<|im_end|>\n"
    assert rejected == "It is Lyon.<|im_end|>\n"
    full = tiny_tokenizer.apply_chat_template(
        [*PAIR.prompt, {"role": "assistant", "content": PAIR.chosen}], tokenize=False
    )
    assert prompt + chosen == full


def test_no_double_bos(tiny_tokenizer):
    encoded = encode_pair(PAIR, tiny_tokenizer, max_length=64, max_prompt_length=32)
    bos = tiny_tokenizer.bos_token_id
    assert encoded["prompt_ids"][0] == bos
    assert encoded["prompt_ids"][1] != bos
    # the tokens decode back to the rendered text: nothing added, nothing lost
    assert tiny_tokenizer.decode(encoded["chosen_ids"]).replace(" ", "") == (
        "ThecapitalofFranceisParis.<|im_end|>"
    )


def test_prompt_is_cut_from_the_left_and_completions_from_the_right(tiny_tokenizer):
    full = encode_pair(PAIR, tiny_tokenizer, max_length=64, max_prompt_length=32)
    assert not full["truncated"]
    cut = encode_pair(PAIR, tiny_tokenizer, max_length=8, max_prompt_length=4)
    assert cut["truncated"]
    assert cut["prompt_ids"] == full["prompt_ids"][-4:]
    assert cut["chosen_ids"] == full["chosen_ids"][:4]
    assert len(cut["prompt_ids"]) + len(cut["chosen_ids"]) <= 8


def test_collate_puts_chosen_first_and_masks_prompt_and_padding():
    features = [
        {"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6]},
        {"prompt_ids": [7, 8], "chosen_ids": [9], "rejected_ids": [10, 11]},
    ]
    batch = collate_pairs(features, pad_token_id=0)
    assert batch["input_ids"].tolist() == [
        [1, 2, 3, 4, 5],
        [7, 8, 9, 0, 0],
        [1, 2, 3, 6, 0],
        [7, 8, 10, 11, 0],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
    ]
    i = IGNORE_INDEX
    assert batch["labels"].tolist() == [
        [i, i, i, 4, 5],
        [i, i, 9, i, i],
        [i, i, i, 6, i],
        [i, i, 10, 11, i],
    ]
    assert batch["labels"].dtype == torch.long
