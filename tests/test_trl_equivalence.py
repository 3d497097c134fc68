"""Our loss on our batches equals TRL's DPOTrainer loss on its batches, for the same pairs.

Both use a LoRA policy whose reference is the same network with adapters disabled. The adapter
starts random (``init_lora_weights=False``) so policy and reference differ and the losses are not
the trivial log 2 of an untrained adapter.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROWS

from lit_dpo.data.batches import collate_pairs, encode_pair
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.train.logps import sequence_tokens
from lit_dpo.train.losses import Objective, objective_loss, sft_nll

PAIRS = [PreferencePair([{"role": "user", "content": q}], c, r) for q, c, r in ROWS]


def sequence_logps(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) summed log-probs and scored-token counts of full logits."""
    tokens = sequence_tokens(logits, labels)
    return tokens.sums(), tokens.counts()


def _trl_trainer(tiny_model_dir, tokenizer, loss_type, beta, tmp_path):
    """A DPOTrainer that adds a random LoRA adapter itself, so its reference is the bare base."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    rows = [
        {
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in PAIRS
    ]
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(rows),
        beta=beta,
        loss_type=[loss_type],
        max_length=None,
        report_to=[],
        use_cpu=True,
        gradient_checkpointing=False,
    )
    torch.manual_seed(1)
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    # PEFT's non-default init is still near zero; a larger adapter makes the margins matter.
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    return trainer


def _trl_loss(trainer) -> float:
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def _our_loss(policy, tokenizer, loss_type, beta):
    features = [encode_pair(p, tokenizer, max_length=512, max_prompt_length=256) for p in PAIRS]
    batch = collate_pairs(features, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        policy_logps, counts = sequence_logps(logits, batch["labels"])
        with policy.disable_adapter():
            reference_logits = policy(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        reference_logps, _ = sequence_logps(reference_logits, batch["labels"])
    n = len(PAIRS)
    result = objective_loss(
        Objective(loss_types=(loss_type,), beta=beta),
        policy_logps,
        reference_logps,
        counts,
        chosen_nll=sft_nll(policy_logps[:n], counts[:n]),
    )
    return result.loss.item()


@pytest.mark.parametrize(("loss_type", "beta"), [("sigmoid", 0.1), ("ipo", 0.5), ("hinge", 0.1)])
def test_loss_matches_trl(tiny_model_dir, tiny_tokenizer, loss_type, beta, tmp_path):
    trainer = _trl_trainer(tiny_model_dir, tiny_tokenizer, loss_type, beta, tmp_path)
    theirs = _trl_loss(trainer)
    ours = _our_loss(trainer.model.eval(), tiny_tokenizer, loss_type, beta)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    if loss_type == "sigmoid":
        assert abs(ours - 0.6931472) > 1e-3, "policy equals reference: the comparison is vacuous"


def test_tokenization_matches_trl(tiny_model_dir, tiny_tokenizer, tmp_path):
    trainer = _trl_trainer(tiny_model_dir, tiny_tokenizer, "sigmoid", 0.1, tmp_path)
    theirs = trainer.train_dataset
    for i, pair in enumerate(PAIRS):
        ours = encode_pair(pair, tiny_tokenizer, max_length=512, max_prompt_length=256)
        assert ours["prompt_ids"] == theirs[i]["prompt_ids"]
        assert ours["chosen_ids"] == theirs[i]["chosen_ids"]
        assert ours["rejected_ids"] == theirs[i]["rejected_ids"]
