"""Preflight: the memory maths against hand-worked numbers, the checks, the command end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lit_dpo.cli import main
from lit_dpo.device import DEVICE_PRESETS, Device, lora_dtype_problems, precision_problems
from lit_dpo.preflight.command import optimizer_state_bytes
from lit_dpo.preflight.measure import batch_row_length, format_duration, run_plan, run_seconds
from lit_dpo.preflight.memory import (
    GIB,
    NF4_BYTES_PER_WEIGHT,
    QWEN2_0_5B_INSTRUCT,
    ModelShape,
    StepPlan,
    activation_bytes,
    base_weight_bytes,
    estimate_step_memory,
    layer_activation_bytes,
    logps_bytes,
    lora_parameters,
    row_lengths,
    suggest_fixes,
)

QWEN2_CONFIG = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
}
# hidden 8, 2 heads of 4, MLP 16, vocab 100, 3 layers
SMALL = ModelShape(8, 3, 2, 1, 4, 16, 100, True, 64)


def test_shape_from_config_matches_the_built_in_qwen2():
    assert ModelShape.from_config(QWEN2_CONFIG) == QWEN2_0_5B_INSTRUCT  # head_dim 896 / 14 = 64
    with pytest.raises(ValueError, match="vocab_size"):
        ModelShape.from_config({k: v for k, v in QWEN2_CONFIG.items() if k != "vocab_size"})


def test_qwen2_weights_and_lora_by_hand():
    """Per layer: q, o 896x896; k, v 896x128; gate, up, down 896x4864: 14,909,440 weights; x24 =
    357,826,560 at 0.5 + 1/64 + 4/16384 bytes = 178,913,280 + 5,591,040 + 87,360 = 184,591,680.
    Embeddings (tied) 151,936 x 896 = 136,134,656 plus 49 norms of 896 = 136,178,560 fp32 weights.
    LoRA r=16: 16 x (1792 + 1024 + 1024 + 1792 + 5760 x 3) = 366,592 a layer, 8,798,208 in all."""
    assert NF4_BYTES_PER_WEIGHT == 0.515869140625
    quantized, other = base_weight_bytes(QWEN2_0_5B_INSTRUCT, StepPlan(batch_size=1, seq_len=1))
    assert quantized == pytest.approx(184_591_680)
    assert other == 136_178_560 * 4
    assert lora_parameters(QWEN2_0_5B_INSTRUCT, 16) == 8_798_208
    assert lora_parameters(QWEN2_0_5B_INSTRUCT, 16, ("q_proj", "v_proj")) == 24 * 16 * 2816
    unquantized = StepPlan(batch_size=1, seq_len=1, quantization="none", weight_bytes=2)
    assert base_weight_bytes(QWEN2_0_5B_INSTRUCT, unquantized) == (
        0.0,
        (357_826_560 + 136_178_560) * 2,
    )


def test_layer_activations_by_hand():
    """SMALL, r=2 on 7 projections, T=10. fp32: 4 x 8 + 4 x 8 + 4 x 16 = 128 values = 512 B, LoRA
    7 x 2 x 4 = 56, heads + 2 norm scales (2 + 2) x 4 = 16, mask 10 x 4 = 40: 624 B.
    16-bit with dropout: hidden 8 x (5 x 2 + 7 x 4) = 304, attention 8 x (5 x 2 + 1 x 4) = 112,
    MLP 16 x (1 x 2 + 4 x 4) = 288, + 56 + 16 + mask 10 x 2 = 20: 796 B."""
    plan = StepPlan(batch_size=1, seq_len=10, lora_r=2)
    assert layer_activation_bytes(SMALL, plan) == 624
    mixed = replace(plan, autocast_16bit=True, lora_dropout=True)
    assert layer_activation_bytes(SMALL, mixed) == 796


def test_activations_and_logits_for_a_step_by_hand():
    """B=2, T=10, two rows a pair: 40 tokens. No checkpointing: 40 x 3 layers x 624 = 74,880.
    Full fp32 logits: 40 x 100 x (4 saved + 3 x 4 gradients) = 64,000. Chunked by 16: 16 x 100 x
    (4 + 4) = 12,800 plus two (40, 8) fp32 tensors = 2,560: 15,360. Checkpointing keeps 4 fp32
    layer inputs of 8: 40 x 4 x 8 x 4 = 5,120; one recomputed layer (40 x 624 = 24,960) adds what
    it exceeds the log-prob memory by: 24,960 - 15,360 = 9,600 chunked, nothing with full logits."""
    plan = StepPlan(batch_size=2, seq_len=10, lora_r=2)
    assert plan.tokens == 40
    assert activation_bytes(SMALL, plan) == 74_880
    assert logps_bytes(SMALL, plan) == 64_000
    chunked = replace(plan, logps_chunk_size=16)
    assert logps_bytes(SMALL, chunked) == 15_360
    assert activation_bytes(SMALL, replace(plan, gradient_checkpointing=True)) == 5_120
    assert activation_bytes(SMALL, replace(chunked, gradient_checkpointing=True)) == 5_120 + 9_600
    packed = replace(plan, rows_per_pair=1, seq_len=20)  # one row holding prompt + both replies
    assert packed.tokens == 40


def test_step_total_adds_the_parts_and_cpu_terms_only_on_cpu():
    plan = StepPlan(batch_size=2, seq_len=10, lora_r=2, model_file_bytes=1000.0)
    cpu = estimate_step_memory(SMALL, plan)
    assert cpu.total == pytest.approx(sum(value for _, value in cpu.rows()))
    # 4-bit: the model file is unmapped after loading
    assert cpu.model_file == 0
    # the default, between_steps: what one step's own frees leave behind
    assert cpu.cpu_retained == pytest.approx(0.85 * 74_880)
    kept = estimate_step_memory(SMALL, replace(plan, return_freed_memory="keep"))
    assert kept.cpu_retained == pytest.approx(0.9 * 74_880)
    released = estimate_step_memory(SMALL, replace(plan, return_freed_memory="promptly"))
    assert released.cpu_retained == 0
    unquantized = estimate_step_memory(SMALL, replace(plan, quantization="none"))
    assert unquantized.model_file == 1000.0  # the map holds the weights
    gpu = estimate_step_memory(SMALL, replace(plan, device="cuda"))
    assert gpu.model_file == 0 and gpu.cpu_retained == 0
    assert gpu.runtime == 0.5 * GIB and cpu.runtime == 0.6 * GIB
    with pytest.raises(ValueError, match="at least 1"):
        estimate_step_memory(SMALL, replace(plan, batch_size=0))


def test_full_logits_are_what_a_t4_cannot_hold_and_the_chunked_head_fixes_it():
    """The T4 recipe at its worst case (2 pairs x 2 rows x 1024 tokens) with full logits needs
    4096 x 151,936 x (2 + 4 + 12) bytes = 10.4 GiB for the logits alone."""
    plan = StepPlan(
        batch_size=2,
        seq_len=1024,
        autocast_16bit=True,
        lora_dropout=True,
        gradient_checkpointing=True,
        optimizer_state_bytes=2,
        device="cuda",
    )
    full = estimate_step_memory(QWEN2_0_5B_INSTRUCT, plan)
    assert full.logps / GIB == pytest.approx(4096 * 151936 * 18 / GIB)
    assert 12 * GIB < full.total < 14 * GIB
    chunked = estimate_step_memory(QWEN2_0_5B_INSTRUCT, replace(plan, logps_chunk_size=512))
    assert chunked.total < 3 * GIB


def test_suggest_fixes_lists_each_change_that_fits():
    plan = StepPlan(batch_size=8, seq_len=512, device="cuda")
    peak = estimate_step_memory(QWEN2_0_5B_INSTRUCT, plan).total
    budget = peak * 0.6
    fixes = suggest_fixes(QWEN2_0_5B_INSTRUCT, plan, budget, accumulate=2, max_length=512)
    assert fixes and all(fix.peak <= budget for fix in fixes)
    by_key = {tuple(sorted(fix.changes)): fix.changes for fix in fixes}
    batch = by_key[("data.batch_size", "trainer.accumulate_grad_batches")]
    # the same 16 pairs per optimizer step: 8 x 2 = batch x accumulation
    assert batch["data.batch_size"] * batch["trainer.accumulate_grad_batches"] == 16
    length = by_key[("data.max_length",)]["data.max_length"]
    assert length % 64 == 0 and length < 512
    # the next 64 up would not fit
    longer = replace(plan, seq_len=length + 64)
    assert estimate_step_memory(QWEN2_0_5B_INSTRUCT, longer).total > budget
    assert suggest_fixes(QWEN2_0_5B_INSTRUCT, plan, 0.5 * GIB) == []


def test_precision_checks_against_the_device():
    t4, a100 = DEVICE_PRESETS["t4"], DEVICE_PRESETS["a100"]
    (refusal,) = precision_problems("bf16-mixed", "bfloat16", t4)
    assert "7.5" in refusal and "16-mixed" in refusal and "float16" in refusal
    assert precision_problems("bf16-mixed", "float32", t4)  # bf16 autocast alone is refused too
    assert precision_problems("16-mixed", "float16", t4) == []
    assert precision_problems("bf16-mixed", "bfloat16", a100) == []
    assert precision_problems("bf16-mixed", "bfloat16", Device("cpu", GIB, None, "cpu")) == []
    (mismatch,) = precision_problems("16-mixed", "bfloat16", a100)
    assert "model.load.compute_dtype: float16" in mismatch


def test_lora_weights_stay_fp32_under_fp16_compute(tiny_model_dir):
    from lit_dpo.models.policy import load_policy

    policy = load_policy(str(tiny_model_dir), quantization="nf4", compute_dtype="float16")
    assert lora_dtype_problems(policy.named_parameters()) == []
    half = torch.nn.Linear(2, 2).half()
    assert lora_dtype_problems(half.named_parameters()) == [
        "weight is torch.float16",
        "bias is torch.float16",
    ]


def test_row_lengths_optimizer_state_and_run_time_by_hand():
    assert row_lengths([10, 4], [5, 9], [7, 2], packed=False) == [17, 13]
    assert row_lengths([10, 4], [5, 9], [7, 2], packed=True) == [22, 15]
    assert optimizer_state_bytes("bitsandbytes.optim.PagedAdamW8bit") == 2
    assert optimizer_state_bytes("torch.optim.AdamW") == 8
    # 4,000 pairs / 2 = 2,000 batches, 250 optimizer steps of 8; validation at 0.5 and 1.0 of the
    # epoch plus the sanity check; 300 / 2 = 150 validation batches
    plan = run_plan(4000, 300, 2, accumulate=8, val_check_interval=0.5)
    assert plan == type(plan)(
        train_batches=2000, optimizer_steps=250, validations=3, val_batches=150
    )
    # 2000 x 1.5 s + 2 x 150 x 0.5 s + 2 sanity batches x 0.5 s = 3000 + 150 + 1
    assert run_seconds(plan, 1.5, 0.5) == 3151
    # max_steps 3 stops mid-epoch before any validation: only the sanity check runs
    short = run_plan(160, 100, 8, max_steps=3)
    assert (short.train_batches, short.validations) == (3, 1)


def test_batch_row_length_of_a_collated_batch():
    """Pair 0: prompt 3, chosen 2, rejected 3; pair 1: prompt 2, chosen 4, rejected 1. Rows of
    prompt + reply are 5, 6, 6, 3 (padded to 6); packed rows 3 + 2 + 3 = 8 and 2 + 4 + 1 = 7."""
    from lit_dpo.data.batches import collate_pairs

    batch = collate_pairs(
        [
            {"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6, 7, 8]},
            {"prompt_ids": [1, 2], "chosen_ids": [4, 5, 6, 7], "rejected_ids": [8]},
        ],
        pad_token_id=0,
    )
    assert batch_row_length(batch, packed=False) == 6
    assert batch_row_length(batch, packed=True) == 8
    assert format_duration(30) == "30 s" and format_duration(1320) == "22 min"


def test_batch_tokens_are_the_tokens_the_forward_runs(tiny_model_dir):
    """The batch above: 4 rows of 6 unpacked (24); packed rows of 8 and 7, padded to 16, or 15
    end to end, which the tiny model's cost rule picks on a CPU (a token is worth 288 query-key
    scores: 15 * 288 + 15**2 = 4,545 < 2 * (8 * 288 + 8**2) = 4,736), as the forward does; under
    FlexAttention the rows stay padded. A StepPlan's tokens take the count when it is given."""
    from transformers import AutoModelForCausalLM

    from lit_dpo.data.batches import collate_pairs
    from lit_dpo.preflight.measure import batch_tokens

    batch = collate_pairs(
        [
            {"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6, 7, 8]},
            {"prompt_ids": [1, 2], "chosen_ids": [4, 5, 6, 7], "rejected_ids": [8]},
        ],
        pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert batch_tokens(batch, packed=False, causal_lm=model) == 24
    assert batch_tokens(batch, packed=True, causal_lm=model) == 15
    model.config._attn_implementation = "flex_attention"
    assert batch_tokens(batch, packed=True, causal_lm=model) == 16

    plan = StepPlan(batch_size=8, seq_len=172, rows_per_pair=1)
    assert plan.tokens == 1376
    assert replace(plan, batch_tokens=884).tokens == 884
    assert replace(plan, batch_tokens=5000).tokens == 1376  # never more than the padded rows


def _preflight(capsys, *args):
    code = 0
    try:
        main(["preflight", *args])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_t4_recipe_fits_a_t4_with_the_built_in_qwen2_config(capsys):
    code, out = _preflight(
        capsys, "--config", "configs/t4.yaml", "--device", "t4", "--worst_case=true"
    )
    assert code == 0, out
    assert "built-in copy of its published config" in out
    assert "compute capability 7.5" in out and ": fits" in out
    assert "precision: 16-mixed with compute dtype float16: ok" in out


def test_bf16_on_a_t4_is_refused_and_a_small_card_gets_fixes(capsys):
    code, out = _preflight(
        capsys,
        "--config=configs/t4.yaml",
        "--device=t4",
        "--worst_case=true",
        "--trainer.precision=bf16-mixed",
        "--model.load.compute_dtype=bfloat16",
    )
    assert code == 1 and "precision: REFUSED" in out and "16-mixed" in out
    code, out = _preflight(
        capsys,
        "--config=configs/t4.yaml",
        "--device=t4",
        "--worst_case=true",
        "--model.efficiency.gradient_checkpointing=false",
    )
    assert code == 1 and "does NOT fit" in out
    assert "changes that fit:" in out and "--model.efficiency.gradient_checkpointing true" in out
    code, out = _preflight(
        capsys, "--config=configs/t4.yaml", "--device_memory_gb=1", "--worst_case=true"
    )
    assert code == 1 and "1.0 GiB" in out and "no change of batch size" in out


def test_gpu_config_without_gpu_or_device_says_what_to_pass(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out = _preflight(capsys, "--config", "configs/t4.yaml", "--worst_case=true")
    assert code == 2 and "--device" in out and "no GPU" in out


def test_tiny_model_lengths_come_from_the_data_and_measure_times_steps(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys
):
    """The tiny data's longest packed row is worked out here from the tokenized pairs."""
    from lit_dpo.data.datamodule import PreferenceDataModule
    from lit_dpo.train.module import DPOModule

    packed = DPOModule().settings.efficiency.share_prompt
    data = PreferenceDataModule(
        dataset=str(tiny_data_dir),
        tokenizer=str(tiny_model_dir),
        max_length=64,
        max_prompt_length=32,
    )
    data.setup("fit")
    train = data.splits["train"]
    longest = max(
        row_lengths(
            [len(x) for x in train["prompt_ids"]],
            [len(x) for x in train["chosen_ids"]],
            [len(x) for x in train["rejected_ids"]],
            packed=packed,
        )
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps(QWEN2_CONFIG))
    code, out = _preflight(
        capsys,
        "--config=configs/cpu.yaml",
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tiny_data_dir}",
        "--data.max_length=64",
        "--data.max_prompt_length=32",
        "--data.batch_size=2",
        f"--trainer.default_root_dir={tmp_path}",
        "--measure=true",
        "--steps=2",
    )
    assert code == 0, out
    rows = "1 packed row" if packed else "2 rows (chosen, rejected)"
    assert f"2 pairs x {rows} of {longest} tokens" in out
    assert "longest of 6 tokenized pairs" in out
    assert "s per training batch" in out and "LoRA weights: all fp32" in out
    assert "2 training batches" in out and "whole run: 3 training batches" in out
    # a config.json given by hand replaces the model's own
    code, out = _preflight(
        capsys,
        "--config=configs/cpu.yaml",
        f"--model_config={config}",
        "--worst_case=true",
        "--data.max_length=128",
        "--data.max_prompt_length=64",
    )
    assert code == 0 and "vocab 151,936" in out and str(config) in out
