"""Greedy answers of several prompts in one left-padded batch (GenerateSamples' path) are the
answers each prompt gets alone."""

from __future__ import annotations

from conftest import ROWS

from lit_dpo.models.generate import _until_end, generate_batch_ids, generate_ids


def test_batched_answers_are_the_one_prompt_answers(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    texts = [
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        for question, _, _ in ROWS[:3]
    ]
    prompts = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(p) for p in prompts}) > 1, "prompts of one length: no padding to test"
    generation = {"max_new_tokens": 12, "do_sample": False}
    alone = [generate_ids(model, tiny_tokenizer, p, generation) for p in prompts]
    batched = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    assert batched == alone
    assert all(len(answer) > 0 for answer in batched)
    assert not model.training  # eval, as it came


def test_an_answer_ends_at_its_first_end_token():
    # what generate returns for a row that finished early: its end token, then padding (here the
    # same id, as SmolLM2's pad is its end-of-turn token)
    assert _until_end([5, 6, 2, 2, 2], eos_token_id=2) == [5, 6, 2]
    assert _until_end([5, 6, 7], eos_token_id=2) == [5, 6, 7]
    assert _until_end([5, 3, 6, 2], eos_token_id=[2, 3]) == [5, 3]
    assert _until_end([5, 6], eos_token_id=None) == [5, 6]
