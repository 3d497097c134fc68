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


def test_adapters_in_one_batch_answer_as_each_alone(tiny_model_dir, tiny_tokenizer):
    """GenerateSamples' path: the policy, the base ("__base__") and a second adapter answer the
    same prompts in one batch exactly as each answers them alone."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lit_dpo.models.generate import (
        generate_for_adapters,
        mixes_adapters,
        policy_and_reference_answers,
    )

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    model.add_adapter(
        "reference", LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    texts = [
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        for question, _, _ in ROWS[:2]
    ]
    prompts = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    generation = {"max_new_tokens": 10, "do_sample": False}
    policy = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    with model.disable_adapter():
        plain = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    model.set_adapter("reference")
    reference = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    model.set_adapter("default")
    assert policy != plain and policy != reference  # the adapters change the answers

    names = ["default", "__base__", "reference"]
    assert mixes_adapters(model, names)
    mixed = generate_for_adapters(model, tiny_tokenizer, prompts, generation, names)
    assert mixed == [policy, plain, reference]
    assert model.active_adapter == "default" and model.training  # left as it came
    # with a frozen reference adapter, the reference is that adapter (not the base)
    both = policy_and_reference_answers(model, tiny_tokenizer, prompts, generation)
    assert both == (policy, reference)


def test_dora_adapters_are_not_mixed_but_still_answer(tiny_model_dir, tiny_tokenizer):
    """PEFT refuses DoRA in a mixed batch: policy and reference then answer one batch each."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lit_dpo.models.generate import mixes_adapters, policy_and_reference_answers

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules="all-linear", use_dora=True, init_lora_weights=False)
    model = get_peft_model(base, config)
    assert not mixes_adapters(model, ["default", "__base__"])
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": ROWS[0][0]}], tokenize=False, add_generation_prompt=True
    )
    prompts = [tiny_tokenizer(text, add_special_tokens=False)["input_ids"]]
    generation = {"max_new_tokens": 10, "do_sample": False}
    policy = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    with model.disable_adapter():
        plain = generate_batch_ids(model, tiny_tokenizer, prompts, generation)
    assert policy != plain
    assert policy_and_reference_answers(model, tiny_tokenizer, prompts, generation) == (
        policy,
        plain,
    )
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not mixes_adapters(plain, ["__base__"])  # no LoRA layers at all
