"""The speed and memory techniques give what the plain path gives (issue 7).

Each switch (``logps_chunk_size``, ``share_prompt``, ``precompute_reference``, ``group_by_length``)
is checked against the plain computation: full logits, one row per sequence, the reference run in
every step. LoRA B starts random so policy and reference differ and gradients are not zero.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROWS, tiny_datamodule

from lit_dpo.data.batches import IGNORE_INDEX, collate_pairs, encode_pair
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.data.sampler import BUCKET_BATCHES, PairSampler
from lit_dpo.train import reference_table as reference
from lit_dpo.train.forward import ScoringPath
from lit_dpo.train.logps import (
    completion_tokens,
    gathered_tokens,
    sequence_tokens,
)
from lit_dpo.train.module import DPOModule
from lit_dpo.train.packing import (
    CHOSEN,
    PAD,
    REJECTED,
    SHARED,
    end_to_end,
    end_to_end_is_cheaper,
    pack_pairs,
    packed_attention_mask,
    packed_block_mask,
    token_cost_in_scores,
)
from lit_dpo.train.settings import (
    EfficiencySettings,
    LoadSettings,
    LoRASettings,
    ObjectiveSettings,
)

PAIRS = [PreferencePair([{"role": "user", "content": q}], c, r) for q, c, r in ROWS]


def token_logps(hidden, weight, targets, chunk_size, bias=None) -> torch.Tensor:
    """One target per hidden state through the frozen head: ``gathered_tokens``, one per row."""
    rows = torch.arange(targets.shape[0])
    return gathered_tokens(hidden, weight, rows, targets, rows, len(rows), chunk_size, bias).logps


def sequence_logps(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = sequence_tokens(logits, labels)
    return tokens.sums(), tokens.counts()


def completion_logps(hidden, weight, labels, chunk_size) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = completion_tokens(hidden, weight, labels, chunk_size)
    return tokens.sums(), tokens.counts()


# --- hidden-state scoring ---------------------------------------------------------------------


def test_token_logps_matches_log_softmax_and_its_gradient_across_chunks():
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(11, 5, dtype=torch.float64), torch.randn(11, dtype=torch.float64)
    targets = torch.randint(0, 11, (7,))
    expected = (hidden @ weight.T + bias).log_softmax(-1).gather(-1, targets[:, None])[:, 0]
    upstream = torch.randn(7, dtype=torch.float64)
    (expected_grad,) = torch.autograd.grad(expected, hidden, upstream)

    got = token_logps(hidden, weight, targets, chunk_size=3, bias=bias)  # chunks of 3, 3, 1
    (got_grad,) = torch.autograd.grad(got, hidden, upstream.float())
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert torch.allclose(got_grad, expected_grad, atol=1e-6)


def test_token_logps_by_hand():
    # vocabulary of 2, logits [0, ln 3] -> p = (1/4, 3/4); d log p1 / d h = w1 - (w0/4 + 3 w1/4)
    weight = torch.tensor([[0.0], [math.log(3.0)]])
    hidden = torch.tensor([[1.0]], requires_grad=True)
    logp = token_logps(hidden, weight, torch.tensor([1]), chunk_size=8)
    logp.sum().backward()
    assert logp.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert hidden.grad.item() == pytest.approx(math.log(3.0) / 4, abs=1e-6)


def test_log_sum_sq_of_the_chunked_head_and_of_full_logits_by_hand_and_without_gradient():
    """Vocabulary of 2, logits [0, ln 3]: p = (1/4, 3/4), sum p^2 = 1/16 + 9/16 = 5/8. Asking for
    it leaves the log-probs and their gradient as they were."""
    weight = torch.tensor([[0.0], [math.log(3.0)]])
    hidden = torch.tensor([[[1.0], [1.0]]], requires_grad=True)  # (N=1, T=2, H=1)
    labels = torch.tensor([[IGNORE_INDEX, 1]])
    tokens = completion_tokens(hidden, weight, labels, chunk_size=8, log_sum_sq=True)
    assert tokens.log_sum_sq.tolist() == pytest.approx([math.log(5 / 8)], abs=1e-6)
    assert not tokens.log_sum_sq.requires_grad
    tokens.logps.sum().backward()
    assert hidden.grad[0, 0].item() == pytest.approx(math.log(3.0) / 4, abs=1e-6)
    full = sequence_tokens(hidden.detach() @ weight.T, labels, log_sum_sq=True)
    assert full.log_sum_sq.tolist() == pytest.approx([math.log(5 / 8)], abs=1e-6)
    assert completion_tokens(hidden, weight, labels, chunk_size=8).log_sum_sq is None


def test_token_logps_refuses_a_trainable_head():
    weight = torch.randn(11, 5, requires_grad=True)
    with pytest.raises(ValueError, match="freeze"):
        token_logps(torch.randn(3, 5), weight, torch.zeros(3, dtype=torch.long), chunk_size=2)


def test_completion_logps_equals_sequence_logps_of_full_logits():
    torch.manual_seed(0)
    hidden = torch.randn(3, 6, 5, requires_grad=True)
    weight = torch.randn(11, 5)
    labels = torch.randint(0, 11, (3, 6))
    labels[:, :2] = IGNORE_INDEX
    labels[2, 4:] = IGNORE_INDEX
    expected, expected_counts = sequence_logps(hidden @ weight.T, labels)
    (expected_grad,) = torch.autograd.grad(expected.sum(), hidden)
    got, counts = completion_logps(hidden, weight, labels, chunk_size=4)
    (got_grad,) = torch.autograd.grad(got.sum(), hidden)
    assert torch.allclose(got, expected, atol=1e-5)
    assert counts.tolist() == expected_counts.tolist() == [4, 4, 2]
    assert torch.allclose(got_grad, expected_grad, atol=1e-5)
    # unscored positions get no gradient, exactly
    assert got_grad[:, 0].abs().sum() == 0 and got_grad[2, 4:].abs().sum() == 0


def test_completion_logps_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5, 3\) vs \(2, 4\)"):
        completion_logps(torch.zeros(2, 5, 3), torch.zeros(7, 3), torch.zeros(2, 4).long(), 4)


# --- packing ----------------------------------------------------------------------------------


def _batch(rows: list[list[int]], prompt: list[int]) -> dict[str, torch.Tensor]:
    """collate_pairs of one pair per (chosen, rejected) in ``rows``, sharing ``prompt``."""
    features = [
        {"prompt_ids": prompt, "chosen_ids": c, "rejected_ids": r}
        for c, r in zip(rows[::2], rows[1::2], strict=True)
    ]
    return collate_pairs(features, pad_token_id=0)


def test_pack_pairs_by_hand():
    # one pair: prompt [5, 6], chosen [7, 8], rejected [7, 9, 10]: the shared prefix is [5, 6, 7]
    batch = _batch([[7, 8], [7, 9, 10]], prompt=[5, 6])
    packed = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 3, 4]]
    assert packed.shared.tolist() == [3]
    # chosen scores 7 (from 6 at 1) and 8 (from 7 at 2); rejected 7 (from 1), 9 (from the shared 7
    # at 2, not from chosen's 8 at 3) and 10 (from 9 at 4)
    assert packed.targets.tolist() == [7, 8, 7, 9, 10]
    assert packed.positions.tolist() == [1, 2, 1, 2, 4]
    assert packed.sequences.tolist() == [0, 0, 1, 1, 1]
    mask = packed.attention_mask[0, 0]
    assert mask[4].tolist() == [True, True, True, False, True, False]  # 9 does not see 8
    assert mask[3].tolist() == [True, True, True, True, False, False]


def test_packed_mask_lets_padding_see_itself_only():
    segments = torch.tensor([[SHARED, CHOSEN, REJECTED, PAD]])
    mask = packed_attention_mask(segments)[0, 0]
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, False, True, False],
        [False, False, False, True],
    ]


def test_pack_pairs_pads_rows_and_handles_a_reply_that_prefixes_the_other():
    # pair 0: chosen [7] is a prefix of rejected [7, 8]; pair 1: nothing shared after the prompt
    batch = _batch([[7], [7, 8], [3, 4, 5], [6]], prompt=[5])
    packed = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert packed.input_ids.tolist() == [[5, 7, 8, 0, 0], [5, 3, 4, 5, 6]]
    assert packed.shared.tolist() == [2, 1]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 0], [0, 1, 2, 3, 1]]
    # every scored token of the 4 unpacked rows, and no other
    assert sorted(packed.sequences.tolist()) == [0, 1, 1, 1, 2, 2, 3]


def test_block_mask_is_the_dense_mask_and_skips_blocks_nobody_attends():
    """The FlexAttention block mask allows exactly what the dense mask allows, and with rows of
    4 blocks of 128 (shared, chosen, rejected, padding) it skips the blocks above the diagonal,
    chosen's block for rejected's queries, and padding's."""
    from torch.nn.attention.flex_attention import create_mask

    segments = torch.tensor(
        [
            [SHARED] * 128 + [CHOSEN] * 128 + [REJECTED] * 128 + [PAD] * 128,
            [SHARED] * 200 + [CHOSEN] * 100 + [REJECTED] * 212,
        ]
    )
    block_mask = packed_block_mask(segments)
    dense = create_mask(block_mask.mask_mod, 2, 1, 512, 512, device="cpu")
    assert torch.equal(dense, packed_attention_mask(segments))
    # query block 2 (rejected) reads key blocks 0 (shared) and 2 (itself), not 1 (chosen)
    blocks = block_mask.to_dense()[0, 0]  # (query blocks, key blocks): 1 where computed
    assert blocks.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]


def test_end_to_end_by_hand():
    """Two packed rows of 3 and 5 tokens (width 5) become one row of 8: no padding, each pair's
    positions and segments kept, scored positions moved by the tokens before their pair, and no
    pair attending the other."""
    batch = _batch([[7], [7, 8], [3, 4, 5], [6]], prompt=[5])
    rows = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"])
    joined = end_to_end(rows)
    assert joined.input_ids.tolist() == [[5, 7, 8, 5, 3, 4, 5, 6]]
    assert joined.position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 3, 1]]
    assert joined.groups.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]
    # pair 1's positions were 5 + p in the rows (width 5), now 3 + p
    by_rows = rows.positions.tolist()
    assert joined.positions.tolist() == [p if p < 5 else p - 2 for p in by_rows]
    assert torch.equal(joined.targets, rows.targets)
    assert torch.equal(joined.sequences, rows.sequences)
    # the same hidden input at each scored position: the flat rows' token ids agree
    assert torch.equal(
        joined.input_ids.flatten()[joined.positions], rows.input_ids.flatten()[rows.positions]
    )
    mask = joined.attention_mask[0, 0]
    assert not mask[3:, :3].any() and not mask[:3, 3:].any()
    assert torch.equal(mask[:3, :3], rows.attention_mask[0, 0, :3, :3])
    assert torch.equal(mask[3:, 3:], rows.attention_mask[1, 0])
    with pytest.raises(ValueError, match="already"):
        end_to_end(joined)


def test_end_to_end_is_cheaper_by_hand():
    # rows of 2 and 6 tokens, width 6, a token worth 10 scores: padded 2 * (6 * 10 + 6**2) = 192,
    # joined 8 * 10 + 8**2 = 144
    uneven = torch.tensor(
        [[SHARED, CHOSEN] + [PAD] * 4, [SHARED] * 2 + [CHOSEN] * 2 + [REJECTED] * 2]
    )
    assert end_to_end_is_cheaper(uneven, token_cost=10.0)
    # rows of 4 and 4: padded 2 * (40 + 16) = 112, joined 80 + 64 = 144
    even = torch.tensor([[SHARED, SHARED, CHOSEN, REJECTED]] * 2)
    assert not end_to_end_is_cheaper(even, token_cost=10.0)
    # where attention is all the cost, one row of 8 (64 scores) still beats 2 rows of 6 (72)
    assert end_to_end_is_cheaper(uneven, token_cost=0.0)
    # but not 3 rows of 1 + 3 + 3 tokens: 7**2 = 49 > 3 * 3**2 = 27 (padded cost 3 * 3 * 1 + 27)
    three = torch.tensor([[SHARED, PAD, PAD], [SHARED, CHOSEN, REJECTED], [SHARED] * 3])
    assert not end_to_end_is_cheaper(three, token_cost=1.0)  # 7 + 49 = 56 > 9 + 27 = 36


def test_token_cost_in_scores_of_smollm2():
    """SmolLM2-135M: hidden 576, 9 heads of 64, 3 key-value heads, MLP 1536. Linear multiply-adds
    per token per layer: q and o 2 * 576 * 576, k and v 2 * 576 * 192, the gated MLP
    3 * 576 * 1536 = 3,538,944 in all; a query-key pair costs 2 * 9 * 64 = 1,152: 3,072."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=576, num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536
    )
    assert token_cost_in_scores(config) == pytest.approx(3072.0)


def test_block_mask_of_pairs_end_to_end_is_their_dense_mask():
    from torch.nn.attention.flex_attention import create_mask

    segments = torch.tensor([[SHARED] * 100 + [CHOSEN] * 60 + [SHARED] * 40 + [REJECTED] * 56])
    groups = torch.tensor([[0] * 160 + [1] * 96])
    block_mask = packed_block_mask(segments, groups)
    dense = create_mask(block_mask.mask_mod, 1, 1, 256, 256, device="cpu")
    expected = packed_attention_mask(segments, groups)
    assert torch.equal(dense, expected)
    assert not expected[0, 0, 160:, :160].any()


def test_pack_pairs_rejects_left_padding():
    batch = _batch([[7], [7, 8]], prompt=[5])
    with pytest.raises(ValueError, match="right padding"):
        pack_pairs(batch["input_ids"].flip(-1), batch["attention_mask"].flip(-1), batch["labels"])


# --- the module's step paths on the tiny 4-bit model ------------------------------------------


# the step tests' scoring settings where gradient checkpointing is not what they test
NO_CHECKPOINTING = EfficiencySettings(gradient_checkpointing=False)


def _module(tiny_model_dir, **groups) -> DPOModule:
    """The tiny model's module with DPOModule's ``groups`` (``efficiency=EfficiencySettings()``),
    LoRA without dropout unless ``lora`` is given."""
    module = DPOModule(model=str(tiny_model_dir), **{"lora": LoRASettings(dropout=0.0), **groups})
    module.configure_model()
    # every LoRA weight set from one seed, so the result does not hang on the tests run before
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in sorted(module.policy.named_parameters()):
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def _tiny_batch(tokenizer) -> dict[str, torch.Tensor]:
    features = [encode_pair(p, tokenizer, max_length=64, max_prompt_length=32) for p in PAIRS[:4]]
    return collate_pairs(features, pad_token_id=tokenizer.pad_token_id)


def _step(module, batch, **switches) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    module.policy.zero_grad()
    stats = module.step_statistics(batch, "train", ScoringPath(**switches))
    stats["loss"].backward()
    grads = {n: p.grad.clone() for n, p in module.policy.named_parameters() if p.grad is not None}
    return stats, grads


PLAIN = {"logps_chunk_size": None, "share_prompt": False}
TECHNIQUES = [
    {"logps_chunk_size": 512, "share_prompt": False},
    {"logps_chunk_size": 3, "share_prompt": False},  # many chunks
    {"logps_chunk_size": 512, "share_prompt": True},
    {"logps_chunk_size": 5, "share_prompt": True},
]


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
@pytest.mark.parametrize("switches", TECHNIQUES, ids=lambda s: "-".join(map(str, s.values())))
def test_step_equals_plain_path(tiny_model_dir, tiny_tokenizer, switches, gradient_checkpointing):
    module = _module(
        tiny_model_dir, efficiency=EfficiencySettings(gradient_checkpointing=gradient_checkpointing)
    )
    batch = _tiny_batch(tiny_tokenizer)
    expected, expected_grads = _step(module, batch, **PLAIN)
    got, grads = _step(module, batch, **switches)
    assert abs(expected["loss"].item() - math.log(2)) > 1e-2, "policy equals reference: vacuous"
    for key in ("loss", "logps/chosen", "logps/rejected", "reference_logps/rejected"):
        assert torch.allclose(got[key], expected[key], rtol=1e-5, atol=1e-5), key
    assert expected_grads and set(grads) == set(expected_grads)
    for name, grad in expected_grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(grads[name], grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("joined", [False, True], ids=["rows", "end-to-end"])
def test_packed_pairs_in_rows_or_end_to_end_give_the_plain_step(
    tiny_model_dir, tiny_tokenizer, monkeypatch, joined
):
    """Both layouts of the packed pairs (one padded row per pair, or all pairs in one row), forced
    whatever the cost rule says, give the plain path's loss, log-probs and gradients."""
    from lit_dpo.train import forward

    calls = []

    def spy(packed):
        calls.append(packed.input_ids.shape)
        return end_to_end(packed)

    monkeypatch.setattr(forward, "end_to_end_is_cheaper", lambda segments, cost: joined)
    monkeypatch.setattr(forward, "end_to_end", spy)
    module = _module(tiny_model_dir, efficiency=EfficiencySettings(gradient_checkpointing=True))
    batch = _tiny_batch(tiny_tokenizer)
    expected, expected_grads = _step(module, batch, **PLAIN)
    got, grads = _step(module, batch, logps_chunk_size=7, share_prompt=True)
    # policy and reference, each through the chosen layout
    assert len(calls) == (2 if joined else 0)
    for key in ("loss", "logps/chosen", "logps/rejected", "reference_logps/rejected"):
        assert torch.allclose(got[key], expected[key], rtol=1e-5, atol=1e-5), key
    for name, grad in expected_grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_packed_path_without_quantization_and_with_eager_attention(tiny_model_dir, tiny_tokenizer):
    module = _module(
        tiny_model_dir, load=LoadSettings(quantization="none"), efficiency=NO_CHECKPOINTING
    )
    module.policy.get_base_model().config._attn_implementation = "eager"
    batch = _tiny_batch(tiny_tokenizer)
    expected, expected_grads = _step(module, batch, **PLAIN)
    got, grads = _step(module, batch, logps_chunk_size=64, share_prompt=True)
    assert torch.allclose(got["loss"], expected["loss"], atol=1e-5)
    for name, grad in expected_grads.items():
        assert torch.allclose(grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_flex_attention_gives_the_dense_mask_and_plain_log_probs(
    tiny_model_dir, tiny_tokenizer, monkeypatch
):
    """Packed pairs through transformers' flex_attention (the block mask) score what the dense
    mask and the plain path score, for policy and reference. Forward only: FlexAttention has no
    backward on a CPU (tools/gpu_check.py compares gradients on a GPU). transformers compiles
    flex_attention, which on a CPU means minutes of C++ builds; its eager form computes the same."""
    import transformers.integrations.flex_attention as hf_flex
    from torch.nn.attention.flex_attention import flex_attention

    def eager_flex(query, key, value, training=False, **kwargs):
        return flex_attention(query, key, value, **kwargs)

    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention", eager_flex)
    batch = _tiny_batch(tiny_tokenizer)
    module = _module(tiny_model_dir, efficiency=NO_CHECKPOINTING)
    flex = _module(
        tiny_model_dir,
        efficiency=EfficiencySettings(gradient_checkpointing=False, packed_attention="flex"),
    )
    assert flex.policy.get_base_model().config._attn_implementation == "flex_attention"
    # on a CPU the default (auto) keeps the dense mask under sdpa: flex has no backward here
    assert module.policy.get_base_model().config._attn_implementation == "sdpa"
    with torch.no_grad():
        plain = module.step_statistics(batch, "train", ScoringPath(**PLAIN))
        dense = module.step_statistics(batch, "train", ScoringPath(512, share_prompt=True))
        got = flex.step_statistics(batch, "train")
    assert abs(plain["loss"].item() - math.log(2)) > 1e-2, "policy equals reference: vacuous"
    for key in ("loss", "logps/chosen", "logps/rejected", "reference_logps/rejected"):
        assert torch.allclose(got[key], dense[key], rtol=1e-5, atol=1e-5), key
        assert torch.allclose(got[key], plain[key], rtol=1e-5, atol=1e-5), key


def test_packed_attention_is_chosen_by_device():
    from lit_dpo.device import (
        DEVICE_PRESETS,
        Device,
        packed_attention_for,
        packed_attention_problems,
    )

    cpu = Device("cpu", 0.0, None, "cpu")
    h100 = Device("NVIDIA H100", 80.0, (9, 0), "cuda")
    assert packed_attention_for("auto", cpu) == "mask"
    assert packed_attention_for("auto", DEVICE_PRESETS["t4"]) == "mask"  # 7.5: Triton smem
    assert packed_attention_for("auto", DEVICE_PRESETS["a100"]) == "flex"
    assert packed_attention_for("auto", h100) == "flex"
    assert packed_attention_for("mask", h100) == "mask"
    assert packed_attention_for("flex", DEVICE_PRESETS["t4"]) == "flex"
    assert packed_attention_problems("flex", h100) == []
    assert packed_attention_problems("auto", cpu) == []
    (problem,) = packed_attention_problems("flex", cpu)
    assert "needs a CUDA GPU" in problem and "no FlexAttention backward on cpu" in problem


def test_packed_attention_applies_to_share_prompt_only():
    from lit_dpo.errors import ConfigError

    with pytest.raises(ConfigError, match="packed_attention flex applies to share_prompt only"):
        DPOModule(efficiency=EfficiencySettings(share_prompt=False, packed_attention="flex"))


# objectives whose terms need more than a sum per row: LD-DPO's split, WPO's log sum p^2, the NLL
OBJECTIVES = [
    {"loss_type": "sigmoid", "ld_alpha": 0.5, "use_weighting": True},
    {"loss_type": ["ipo", "sft"], "loss_weights": [1.0, 0.5], "sft_weight": 0.3, "beta": 0.5},
    {"loss_type": "orpo", "use_weighting": True},
]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: "-".join(map(str, o.values())))
def test_objective_terms_equal_across_paths(tiny_model_dir, tiny_tokenizer, objective):
    module = _module(
        tiny_model_dir, objective=ObjectiveSettings(**objective), efficiency=NO_CHECKPOINTING
    )
    batch = _tiny_batch(tiny_tokenizer)
    expected, expected_grads = _step(module, batch, **PLAIN)
    for switches in TECHNIQUES:
        got, grads = _step(module, batch, **switches)
        for key in ("loss", "logps/chosen", "logps/rejected"):
            assert torch.allclose(got[key], expected[key], rtol=1e-5, atol=1e-5), (switches, key)
        for name, grad in expected_grads.items():
            # the NLL's gradients are ~10x DPO's: rounding scales with them (1e-5 of the largest)
            scale = 1e-4 * grad.abs().max()
            assert torch.allclose(grads[name], grad, rtol=1e-4, atol=scale), (switches, name)
    without = {**objective, "ld_alpha": None, "use_weighting": False, "sft_weight": 0.0}
    plainer = _module(
        tiny_model_dir, objective=ObjectiveSettings(**without), efficiency=NO_CHECKPOINTING
    )
    plain, _ = _step(plainer, batch, **PLAIN)
    assert abs(plain["loss"].item() - expected["loss"].item()) > 1e-4, "terms changed nothing"


# --- KTO: a completion and its KL row share their prompt, as a pair's two replies do ------------


def _unpaired_batch(tokenizer) -> dict[str, torch.Tensor]:
    """4 unpaired rows of 4 prompts, desirable and undesirable in turn; each row's KL row is its
    prompt with the completion of the row before it (the first takes the last's), as
    ``data.unpaired.with_kl_completions`` builds them."""
    rows = [
        (pair.prompt, pair.chosen if i % 2 == 0 else pair.rejected, i % 2 == 0)
        for i, pair in enumerate(PAIRS[:4])
    ]
    encoded = [
        encode_pair(PreferencePair(prompt, reply, reply), tokenizer, 64, 32)
        for prompt, reply, _ in rows
    ]
    completions = [e["chosen_ids"] for e in encoded]
    kl_completions = completions[-1:] + completions[:-1]
    features = [
        {"prompt_ids": e["prompt_ids"], "chosen_ids": c, "rejected_ids": kl, "label": label}
        for e, c, kl, (_, _, label) in zip(encoded, completions, kl_completions, rows, strict=True)
    ]
    return collate_pairs(features, pad_token_id=tokenizer.pad_token_id)


UNPAIRED_KEYS = (
    "loss", "losses", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen",
    "logps/rejected", "reference_logps/chosen", "reference_logps/rejected",
)


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_unpaired_step_equals_plain_path(tiny_model_dir, tiny_tokenizer, loss_type):
    """Every scoring technique applies to KTO: the chunked head, and packing a completion with its
    KL row under their shared prompt (the KL row scored in the same forward, then detached by the
    baseline). Loss, KL baseline, rewards, log-probs and LoRA gradients equal the plain path's."""
    module = _module(
        tiny_model_dir, objective=ObjectiveSettings(loss_type=loss_type, desirable_weight=1.5)
    )
    batch = _unpaired_batch(tiny_tokenizer)
    expected, expected_grads = _step(module, batch, **PLAIN)
    # at policy = reference every weighted reply's loss is weight / 2: 1.5 / 2 and 1 / 2
    assert abs(expected["loss"].item() - 0.625) > 1e-2, "policy equals reference: vacuous"
    if loss_type == "kto":
        assert expected["kl"].item() > 0.1, "a baseline clamped at 0 tests nothing"
    assert expected_grads
    for switches in TECHNIQUES:
        got, grads = _step(module, batch, **switches)
        for key in UNPAIRED_KEYS:
            assert torch.allclose(got[key], expected[key], rtol=1e-5, atol=1e-5), (switches, key)
        assert set(grads) == set(expected_grads)
        for name, grad in expected_grads.items():
            assert grad.abs().sum() > 0, name
            assert torch.allclose(grads[name], grad, rtol=1e-4, atol=1e-6), (switches, name)


def test_precomputed_reference_gives_the_on_the_fly_kto_losses(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    """The table holds each row's completion and its KL row, fixed when the split is prepared, so
    it stays valid in the second epoch, whose order the sampler shuffles anew."""
    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    kto = {
        "objective": ObjectiveSettings(loss_type="kto"),
        "data_settings": {"unpair": True, "train_size": 3},
    }
    expected, _ = _fit_losses(tiny_model_dir, tiny_data_dir, tmp_path / "a", **kto)
    got, module = _fit_losses(
        tiny_model_dir, tiny_data_dir, tmp_path / "b", efficiency=PRECOMPUTE, **kto
    )
    assert len(got) == len(expected) == 6  # 3 pairs unpaired into 6 rows, batches of 2, 2 epochs
    # the policy starts as the reference (LoRA B zero): each reply's loss 1/2, then training moves
    assert expected[0] == pytest.approx(0.5, abs=1e-6)
    assert max(abs(loss - 0.5) for loss in expected) > 1e-3, "training moved nothing: vacuous"
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # the train table: a completion and a KL row per unpaired row; validation's: its pairs
    assert module.reference_tables.tables["train"].shape == (6, 2)


def test_length_grouped_unpaired_batches_cut_the_sorted_rows(tiny_model_dir, tiny_data_dir):
    """Length grouping reads a row's completion and KL row together (``num_tokens``), as a pair's
    two replies: 6 pairs (the fixture's tie dropped) unpaired into 12 rows, cut longest first into
    batches of 5, the short batch (the 2 shortest) last."""
    data = tiny_datamodule(
        tiny_model_dir, tiny_data_dir, batch_size=5, unpair=True, group_by_length=True
    )
    data.setup("fit")
    lengths = data.splits["train"].with_format(None)["num_tokens"]
    batches = [batch["pair_index"].tolist() for batch in data.train_dataloader()]
    assert [len(batch) for batch in batches] == [5, 5, 2]
    assert sorted(i for batch in batches for i in batch) == list(range(12))
    longest_first = sorted(lengths, reverse=True)
    by_batch = [sorted((lengths[i] for i in batch), reverse=True) for batch in batches]
    assert by_batch[-1] == longest_first[10:]
    full = sorted(by_batch[:-1], reverse=True)
    assert [n for batch in full for n in batch] == longest_first[:10]
    assert len(set(lengths)) > 3, "rows of a few lengths: grouping would test little"


def test_share_prompt_needs_hidden_state_scoring():
    from lit_dpo.errors import ConfigError

    with pytest.raises(ConfigError, match="share_prompt needs logps_chunk_size"):
        DPOModule(efficiency=EfficiencySettings(logps_chunk_size=None, share_prompt=True))


def test_adapted_output_head_is_refused(tiny_model_dir):
    from lit_dpo.errors import ConfigError

    module = DPOModule(
        model=str(tiny_model_dir),
        load=LoadSettings(quantization="none"),
        lora=LoRASettings(target_modules=["q_proj", "lm_head"]),
    )
    with pytest.raises(ConfigError, match="output head is adapted"):
        module.configure_model()


# --- precomputed reference --------------------------------------------------------------------


PRECOMPUTE = EfficiencySettings(precompute_reference=True)


def _fit_losses(
    tiny_model_dir, tiny_data_dir, root, data_settings: dict | None = None, **groups
) -> tuple[list[float], DPOModule]:
    """The losses of a 2-epoch fit on the tiny data with DPOModule's ``groups``, LoRA without
    dropout."""
    from lightning import Callback, Trainer

    class Losses(Callback):
        def __init__(self):
            self.values = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.values.append(outputs["loss"].item())

    torch.manual_seed(0)
    module = DPOModule(
        model=str(tiny_model_dir),
        optimizer=lambda params: torch.optim.AdamW(params, lr=0.05),
        **{"lora": LoRASettings(dropout=0.0), **groups},
    )
    data = tiny_datamodule(tiny_model_dir, tiny_data_dir, **(data_settings or {}))
    losses = Losses()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[losses],
    )
    trainer.fit(module, data)
    return losses.values, module


def test_precomputed_reference_gives_the_on_the_fly_losses(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    expected, _ = _fit_losses(tiny_model_dir, tiny_data_dir, tmp_path / "a")
    got, module = _fit_losses(tiny_model_dir, tiny_data_dir, tmp_path / "b", efficiency=PRECOMPUTE)
    assert len(got) == len(expected) == 6  # 5 pairs, batches of 2, 2 epochs
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert set(module.reference_tables.tables) == {"train", "val"}
    tables = sorted((tmp_path / "cache" / "reference_logps").glob("*.pt"))
    assert len(tables) == 2

    # a later run reads the tables instead of computing them
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached table")

    monkeypatch.setattr(reference, "compute_table", refuse)
    again, _ = _fit_losses(tiny_model_dir, tiny_data_dir, tmp_path / "c", efficiency=PRECOMPUTE)
    assert again == pytest.approx(got, rel=1e-6)


def test_compute_table_and_lookup_follow_pair_index():
    import datasets

    dataset = datasets.Dataset.from_list(
        [
            {"prompt_ids": [1] * n, "chosen_ids": [2], "rejected_ids": [3], "pair_index": i}
            for i, n in enumerate([5, 1, 3])
        ]
    )

    def score(batch):  # chosen: -pair_index, rejected: -10 * pair_index
        index = batch["pair_index"].float()
        return torch.cat([-index, -10 * index])

    def collate(features):
        return {"pair_index": torch.tensor([f["pair_index"] for f in features])}

    table = reference.compute_table(score, dataset, collate, batch_size=2)
    assert table.tolist() == [[0.0, 0.0], [-1.0, -10.0], [-2.0, -20.0]]
    assert reference.lookup(table, torch.tensor([2, 0])).tolist() == [-2.0, 0.0, -20.0, 0.0]


def test_fingerprints_change_with_weights_and_tokens():
    import datasets

    model = torch.nn.Linear(4, 3)
    before = reference.model_fingerprint(model, {"quantization": "nf4"})
    assert reference.model_fingerprint(model, {"quantization": "none"}) != before
    with torch.no_grad():
        model.weight[0, 0] += 1
    assert reference.model_fingerprint(model, {"quantization": "nf4"}) != before

    rows = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4]}]
    key = reference.pairs_fingerprint(datasets.Dataset.from_list(rows))
    rows[0]["chosen_ids"] = [3, 4]
    assert reference.pairs_fingerprint(datasets.Dataset.from_list(rows)) != key


# --- length-grouped batches -------------------------------------------------------------------


def test_length_grouped_sampler_is_a_seeded_permutation_with_grouped_batches():
    torch.manual_seed(0)
    lengths = torch.randint(10, 500, (2 * 4 * BUCKET_BATCHES + 3,)).tolist()
    sampler = PairSampler(lengths, batch_size=4, seed=7, group_by_length=True)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    assert order == list(PairSampler(lengths, batch_size=4, seed=7, group_by_length=True))
    sampler.set_epoch(1)
    assert list(sampler) != order
    # the DataLoader cuts the order into 100 full batches, then the short one
    loader = torch.utils.data.DataLoader(lengths, batch_size=4, sampler=sampler)
    assert [len(batch) for batch in loader] == [4] * 100 + [3]

    def padding(indices):
        batches = [indices[i : i + 4] for i in range(0, len(indices), 4)]
        return sum(
            len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches
        )

    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(7)).tolist()
    assert padding(order) < padding(shuffled) / 5


def test_length_grouped_batches_are_the_cuts_the_dataloader_makes_short_one_last():
    """One bucket of 43 distinct lengths: sorted and cut into 10 batches of 4 and one of 3, the
    full batches shuffled and the short one, the 3 shortest pairs, kept last. Were the short batch
    shuffled in with the others, the DataLoader's cuts of 4 would straddle two groups after it."""
    lengths = torch.randperm(43, generator=torch.Generator().manual_seed(0)).add(10).tolist()
    assert 43 < 4 * BUCKET_BATCHES
    for epoch in range(3):
        sampler = PairSampler(lengths, batch_size=4, seed=7, group_by_length=True)
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(lengths, batch_size=4, sampler=sampler)
        batches = [sorted(batch.tolist(), reverse=True) for batch in loader]
        assert [len(batch) for batch in batches] == [4] * 10 + [3]
        assert batches[-1] == [12, 11, 10]  # the 3 shortest
        # every full batch is 4 consecutive lengths of the sorted 43, from the longest down
        assert sorted(batches[:-1], reverse=True) == [
            list(range(52 - 4 * i, 48 - 4 * i, -1)) for i in range(10)
        ]
        assert batches[:-1] != sorted(batches[:-1], reverse=True), "full batches not shuffled"


def test_datamodule_groups_by_length_over_every_pair(tiny_model_dir, tiny_data_dir):
    data = tiny_datamodule(tiny_model_dir, tiny_data_dir, batch_size=4, group_by_length=True)
    data.setup("fit")
    batches = [batch["pair_index"].tolist() for batch in data.train_dataloader()]
    assert [len(batch) for batch in batches] == [4, 2]  # 6 pairs: the short batch last
    seen = [i for batch in batches for i in batch]
    assert sorted(seen) == list(range(len(data.splits["train"])))
    again = [i for batch in data.train_dataloader() for i in batch["pair_index"].tolist()]
    assert seen == again


def test_validation_runs_longest_first_and_scores_the_same(
    tiny_model_dir, tiny_data_dir, tiny_tokenizer
):
    """Validation pairs are visited longest first (less padding per batch); the held-out
    metrics are means over pairs, so they equal those of the split order."""
    # 6 pairs, not in length order
    data = tiny_datamodule(tiny_model_dir, tiny_data_dir, val_split="train_prefs")
    data.setup("fit")
    split = data.splits["val"]
    lengths = split.with_format(None)["num_tokens"]
    longest_first = list(data.val_dataloader())
    order = [i for batch in longest_first for i in batch["pair_index"].tolist()]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    assert order != list(range(len(lengths))), "the tiny split is already longest first"
    in_split_order = list(data._loader(split, shuffle=False))

    module = _module(tiny_model_dir, efficiency=NO_CHECKPOINTING)
    module.eval()

    def means(batches):
        with torch.no_grad():
            stats = [module.step_statistics(batch, "val") for batch in batches]
        rows = sum(len(batch["pair_index"]) for batch in batches)
        return {
            key: sum(float(s[key].sum()) for s in stats) / rows
            for key in ("losses", "rewards/margins", "logps/chosen", "reference_logps/rejected")
        }

    assert means(longest_first) == pytest.approx(means(in_split_order), abs=1e-5)


def test_ranks_share_out_exactly_the_batches_of_one_process_with_the_global_batch():
    lengths = list(range(10, 47))  # 37 pairs: the last global batch is short and padded
    for group in (False, True):
        one = list(PairSampler(lengths, batch_size=4, seed=3, group_by_length=group))
        ranks = [
            list(PairSampler(lengths, 2, seed=3, group_by_length=group, num_replicas=2, rank=r))
            for r in (0, 1)
        ]
        assert len(ranks[0]) == len(ranks[1]) == 19
        for step in range(len(one) // 4):
            together = ranks[0][2 * step : 2 * step + 2] + ranks[1][2 * step : 2 * step + 2]
            assert sorted(together) == sorted(one[4 * step : 4 * step + 4])
        assert not set(ranks[0][:18]) & set(ranks[1][:18])


def test_a_resumed_sampler_continues_the_interrupted_epoch_then_starts_the_next():
    sampler = PairSampler(list(range(20)), batch_size=4, seed=5)
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    sampler.set_epoch(2)
    epoch_2 = list(sampler)
    resumed = PairSampler(list(range(20)), batch_size=4, seed=5)
    resumed.resume(epoch=1, consumed=8)
    resumed.set_epoch(1)  # Lightning sets the epoch again before iterating
    assert list(resumed) == epoch_1[8:]
    assert len(resumed) == 20
    resumed.set_epoch(2)
    assert list(resumed) == epoch_2
