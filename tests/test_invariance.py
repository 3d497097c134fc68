"""Batch invariance: batch 1 x gradient accumulation 8 gives what batch 8 x accumulation 1 gives.

The DPO loss of a batch is the mean of its pairs' losses, so 8 single-pair losses, each divided by
8 and back-propagated into the same gradients, must give the loss and the LoRA gradients of one
batch of the 8 pairs (TRL and torchtune test the same). A batch pads every sequence to its longest
and, with ``share_prompt``, packs each pair into one row: padding, packing and the chunked output
head must change nothing but the order of float sums. Every LoRA weight starts random, so that
policy and reference differ and lora_A gets a gradient too.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import ROWS, ultrafeedback_row, write_jsonl

from lit_dpo.data.batches import collate_pairs, encode_pair
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.train.module import DPOModule

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [PreferencePair([{"role": "user", "content": q}], c, r) for q, c, r in ROWS]
ACCUMULATE = len(PAIRS)  # 8
# Measured on CPU (printed with -s): losses differ by at most 1.2e-7, gradients by at most 6e-8,
# 6e-7 of the layer's largest gradient: float sums in another order.
LOSS_TOLERANCE = 1e-6
GRAD_ATOL = 1e-6
GRAD_RTOL = 1e-5

PATHS = {
    "shared-prompt-chunked-head": {"logps_chunk_size": 512, "share_prompt": True},  # the default
    "plain": {"logps_chunk_size": None, "share_prompt": False},
}


def _randomize_lora(policy: torch.nn.Module) -> None:
    """Every LoRA weight from one seed, so the result does not hang on the tests run before."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in sorted(policy.named_parameters()):
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _step(module: DPOModule, batch: dict[str, torch.Tensor], scale: float) -> dict:
    """Forward one batch and back-propagate ``scale * loss`` into the gradients already there."""
    stats = module.step_statistics(batch, "train")
    (scale * stats["loss"]).backward()
    return stats


def _module(model_dir, switches: dict, **objective) -> DPOModule:
    """The tiny model's module on one scoring path, LoRA without dropout and set from one seed."""
    module = DPOModule(
        model=str(model_dir), lora={"dropout": 0.0}, objective=objective, efficiency=switches
    )
    module.configure_model()
    _randomize_lora(module.policy)
    return module


def _lora_grads(module: DPOModule) -> dict[str, torch.Tensor]:
    named = module.policy.named_parameters()
    return {n: p.grad.clone() for n, p in named if "lora_" in n and p.grad is not None}


@pytest.mark.parametrize("switches", PATHS.values(), ids=PATHS.keys())
def test_one_batch_of_8_equals_8_accumulated_batches_of_1(tiny_model_dir, tiny_tokenizer, switches):
    module = _module(tiny_model_dir, switches)
    pad = tiny_tokenizer.pad_token_id
    features = [encode_pair(p, tiny_tokenizer, max_length=64, max_prompt_length=32) for p in PAIRS]
    lengths = {len(f["prompt_ids"]) + len(f["chosen_ids"]) for f in features}
    assert len(lengths) > 1, "pairs of one length: the batch of 8 would have no padding to test"

    module.policy.zero_grad(set_to_none=True)
    batch = _step(module, collate_pairs(features, pad), scale=1.0)
    batch_grads = _lora_grads(module)

    module.policy.zero_grad(set_to_none=True)
    singles = [_step(module, collate_pairs([f], pad), scale=1 / ACCUMULATE) for f in features]
    accumulated_grads = _lora_grads(module)

    single_losses = torch.stack([s["loss"].detach() for s in singles])
    assert abs(batch["loss"].item() - math.log(2)) > 1e-2, "policy equals reference: vacuous"
    loss_difference = (batch["loss"].detach() - single_losses.mean()).abs().item()
    per_pair_difference = (batch["losses"] - single_losses).abs().max().item()

    assert batch_grads and accumulated_grads.keys() == batch_grads.keys()
    # both lora_A and lora_B of every adapted layer (2 layers x 7 linear layers)
    assert len(batch_grads) == 2 * 2 * 7
    # each layer's difference relative to its own largest gradient, which spans 3e-4 to 0.13
    relative = {
        name: ((accumulated_grads[name] - grad).abs().max() / grad.abs().max()).item()
        for name, grad in batch_grads.items()
    }
    absolute = max((accumulated_grads[n] - g).abs().max().item() for n, g in batch_grads.items())
    print(
        f"|batch loss - mean of singles| = {loss_difference:.1e}, per pair at most "
        f"{per_pair_difference:.1e}; LoRA gradients: max |difference| {absolute:.1e}, "
        f"relative to the layer's largest gradient at most {max(relative.values()):.1e}"
    )
    assert loss_difference < LOSS_TOLERANCE
    assert per_pair_difference < LOSS_TOLERANCE
    # a zero gradient would make any tolerance vacuous
    assert min(grad.abs().max().item() for grad in batch_grads.values()) > 1e-4
    assert absolute < GRAD_ATOL
    assert max(relative.values()) < GRAD_RTOL, relative


# --- unpaired objectives (KTO) ------------------------------------------------------------------


def _unpaired_features(tokenizer) -> list[dict]:
    """8 unpaired rows of the 8 prompts, desirable and undesirable in turn, each with its KL row
    (its prompt with the completion of the row before it, as ``data.unpaired`` builds them)."""
    rows = [(p.prompt, p.chosen if i % 2 else p.rejected, bool(i % 2)) for i, p in enumerate(PAIRS)]
    encoded = [
        encode_pair(PreferencePair(prompt, reply, reply), tokenizer, 64, 32)
        for prompt, reply, _ in rows
    ]
    completions = [e["chosen_ids"] for e in encoded]
    return [
        {"prompt_ids": e["prompt_ids"], "chosen_ids": c, "rejected_ids": kl, "label": label}
        for e, c, kl, (_, _, label) in zip(
            encoded, completions, completions[-1:] + completions[:-1], rows, strict=True
        )
    ]


def _accumulated(module, batches, pad) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batches' losses (each divided by their number, back-propagated into the same
    gradients), and the LoRA gradients they leave."""
    module.policy.zero_grad(set_to_none=True)
    losses = [
        _step(module, collate_pairs(b, pad), scale=1 / len(batches))["losses"] for b in batches
    ]
    return torch.cat(losses), _lora_grads(module)


def _assert_same_step(batch_losses, batch_grads, losses, grads) -> None:
    assert (batch_losses - losses).abs().max().item() < LOSS_TOLERANCE
    assert batch_grads and grads.keys() == batch_grads.keys()
    # a zero gradient would make the tolerances vacuous (APO-zero's reach 7e-5: its desirable
    # and undesirable rows pull against each other)
    assert min(grad.abs().max().item() for grad in batch_grads.values()) > 1e-5
    for name, grad in batch_grads.items():
        assert (grads[name] - grad).abs().max().item() < GRAD_ATOL, name
        assert ((grads[name] - grad).abs().max() / grad.abs().max()).item() < GRAD_RTOL, name


@pytest.mark.parametrize("switches", PATHS.values(), ids=PATHS.keys())
def test_apo_zero_unpaired_batch_of_8_equals_8_accumulated_batches_of_1(
    tiny_model_dir, tiny_tokenizer, switches
):
    """Unpaired APO-zero has no KL baseline: a row's loss is its own, so batch invariance holds
    as for pairs (the KL rows are scored, unused)."""
    module = _module(tiny_model_dir, switches, loss_type="apo_zero_unpaired")
    features, pad = _unpaired_features(tiny_tokenizer), tiny_tokenizer.pad_token_id
    module.policy.zero_grad(set_to_none=True)
    batch = _step(module, collate_pairs(features, pad), scale=1.0)
    batch_grads = _lora_grads(module)
    # at policy = reference every row's loss is 1/2
    assert (batch["losses"] - 0.5).abs().max() > 1e-2, "policy equals reference: vacuous"
    losses, grads = _accumulated(module, [[f] for f in features], pad)
    _assert_same_step(batch["losses"], batch_grads, losses, grads)


@pytest.mark.parametrize("switches", PATHS.values(), ids=PATHS.keys())
def test_kto_accumulated_batches_each_estimate_their_own_kl_baseline(
    tiny_model_dir, tiny_tokenizer, switches
):
    """KTO's loss hangs on its batch through the KL baseline z0, the mean log-ratio of the
    batch's KL rows. As in TRL, each micro-batch of an accumulated step estimates z0 from its own
    rows, so 4 accumulated batches of 2 do NOT take the step of one batch of 8. Where the four
    estimates are averaged, as DDP ranks average theirs (``all_gather``, here over the four
    micro-batches), they give the batch of 8's z0, losses and gradients: padding, packing and the
    chunked head change nothing (tests/test_ddp.py runs the real gather over 2 processes)."""
    module = _module(tiny_model_dir, switches, loss_type="kto")
    features, pad = _unpaired_features(tiny_tokenizer), tiny_tokenizer.pad_token_id
    module.policy.zero_grad(set_to_none=True)
    batch = _step(module, collate_pairs(features, pad), scale=1.0)
    batch_grads = _lora_grads(module)
    # at policy = reference every row's loss is 1/2
    assert (batch["losses"] - 0.5).abs().max() > 1e-2, "policy equals reference: vacuous"
    micro_batches = [features[i : i + 2] for i in range(0, 8, 2)]

    own, _ = _accumulated(module, micro_batches, pad)
    difference = (own - batch["losses"]).abs().max().item()
    assert difference > 1e-3, "the micro-batches' own baselines changed nothing: vacuous"

    # each micro-batch's unclamped mean KL log-ratio, as each of 4 ranks would hold it
    means = []
    module.all_gather = lambda local: means.append(local) or torch.stack([local] * 4)
    module._trainer = SimpleNamespace(world_size=4)
    with torch.no_grad():
        for micro_batch in micro_batches:
            module.step_statistics(collate_pairs(micro_batch, pad), "train")
    assert batch["kl"].item() > 0.01, "a baseline clamped at 0 tests nothing"
    module.all_gather = lambda local: torch.stack(means)
    shared, grads = _accumulated(module, micro_batches, pad)
    print(
        f"KTO: batch of 8 vs 4 x 2 accumulated, own baselines: {difference:.1e}; "
        f"shared: {(shared - batch['losses']).abs().max().item():.1e}"
    )
    _assert_same_step(batch["losses"], batch_grads, shared, grads)


def test_trainer_accumulating_8_batches_of_1_takes_the_step_of_one_batch_of_8(
    tiny_model_dir, tmp_path
):
    """The same through Lightning: one SGD step after 8 accumulated batches of 1 (Lightning scales
    each loss by 1/8) moves the LoRA weights as one step on a batch of 8 does."""
    from lightning import Callback, Trainer

    from lit_dpo.data.datamodule import PreferenceDataModule

    data_dir = tmp_path / "prefs"
    data_dir.mkdir()
    write_jsonl(data_dir / "train_prefs.jsonl", [ultrafeedback_row(*row) for row in ROWS])
    write_jsonl(data_dir / "test_prefs.jsonl", [ultrafeedback_row(*row) for row in ROWS[:2]])

    class Weights(Callback):
        """Randomizes LoRA before the step and keeps the LoRA weights before and after it."""

        def on_fit_start(self, trainer, pl_module):
            _randomize_lora(pl_module.policy)
            self.before = _lora_weights(pl_module)
            self.batches = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches += 1

        def on_fit_end(self, trainer, pl_module):
            self.after = _lora_weights(pl_module)

    def fit(batch_size: int, accumulate: int) -> Weights:
        module = DPOModule(
            model=str(tiny_model_dir),
            lora={"dropout": 0.0},
            optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
            optimization={"lr_schedule": "constant", "warmup_ratio": 0.0},
        )
        data = PreferenceDataModule(
            dataset=str(data_dir),
            tokenizer=str(tiny_model_dir),
            batch_size=batch_size,
            max_length=64,
            max_prompt_length=32,
        )
        weights = Weights()
        trainer = Trainer(
            accelerator="cpu",
            max_steps=1,
            accumulate_grad_batches=accumulate,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
            callbacks=[weights],
        )
        trainer.fit(module, data)
        assert trainer.global_step == 1
        assert weights.batches == accumulate
        return weights

    one_batch = fit(batch_size=ACCUMULATE, accumulate=1)
    accumulated = fit(batch_size=1, accumulate=ACCUMULATE)

    assert one_batch.before.keys() == accumulated.before.keys() == one_batch.after.keys()
    assert len(one_batch.before) == 2 * 2 * 7
    for name, weight in one_batch.before.items():
        assert torch.equal(accumulated.before[name], weight), name
    moved = {n: (one_batch.after[n] - w).abs().max().item() for n, w in one_batch.before.items()}
    difference = max(
        (accumulated.after[n] - w).abs().max().item() for n, w in one_batch.after.items()
    )
    print(
        f"LoRA weights after the step: max |accumulated - one batch| {difference:.1e}; "
        f"the step moved every layer by at least {min(moved.values()):.1e}"
    )
    # 5e-7: two float32 steps at the weights' size (up to ~2); every layer moved 500 times that
    assert min(moved.values()) > 1e-4, "a layer the step did not move tests nothing"
    for name, weight in one_batch.after.items():
        torch.testing.assert_close(accumulated.after[name], weight, rtol=0, atol=5e-7, msg=name)


def _lora_weights(module: DPOModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.policy.named_parameters() if "lora_" in n}
