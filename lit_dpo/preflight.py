"""``lit-dpo preflight``: will a config fit its device, with the right precision, and how long?

``lit-dpo preflight --config configs/t4.yaml --device t4`` reads the YAML the fit reads (any
``--model.x`` / ``--data.x`` / ``--trainer.x`` override works too), estimates the peak memory of a
training step from the model's config and the data's token lengths (``lit_dpo.memory``), compares
it with the device, checks the precision against the GPU, and says which change fits when the
step does not. ``--measure`` runs a few real steps here and times them. It exits with status 1
when the step does not fit or the precision is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lit_dpo.errors import ConfigError, LitDPOError
from lit_dpo.memory import (
    GIB,
    PROJECTIONS,
    QWEN2_0_5B_INSTRUCT,
    Fix,
    MemoryEstimate,
    ModelShape,
    StepPlan,
    estimate_step_memory,
    row_lengths,
    suggest_fixes,
)
from lit_dpo.timing import format_duration, measure_steps, run_plan, run_seconds

log = logging.getLogger(__name__)

# Allocators fragment, and the estimate was off by up to 15% on measured CPU runs: keep 10% free.
HEADROOM = 0.10
BUILTIN_SHAPES = {"Qwen/Qwen2-0.5B-Instruct": QWEN2_0_5B_INSTRUCT}
BF16_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Device:
    """Where the run will train: memory in bytes, CUDA compute capability (None: CPU/unknown)."""

    name: str
    memory: float
    capability: tuple[int, int] | None
    kind: str


DEVICE_PRESETS = {
    # nvidia-smi's total memory of each card
    "t4": Device("NVIDIA T4 (16 GB)", 15.0 * GIB, (7, 5), "cuda"),
    "l4": Device("NVIDIA L4 (24 GB)", 22.5 * GIB, (8, 9), "cuda"),
    "a100": Device("NVIDIA A100 (40 GB)", 40.0 * GIB, (8, 0), "cuda"),
}


def precision_problems(precision: str, compute_dtype: str, device: Device) -> list[str]:
    """What is wrong with a precision setting on a device, each with the setting to use instead."""
    problems = []
    bf16 = "bf16" in precision or compute_dtype == "bfloat16"
    if bf16 and device.kind == "cuda":
        if device.capability is None:
            problems.append(
                "bf16 needs compute capability 8.0 (Ampere) or newer and this device's is "
                "unknown; on a T4 or V100 use trainer.precision: 16-mixed and "
                "model.compute_dtype: float16"
            )
        elif device.capability < BF16_MIN_CAPABILITY:
            major, minor = device.capability
            problems.append(
                f"bf16 (trainer.precision {precision}, model.compute_dtype {compute_dtype}) needs "
                f"compute capability 8.0 or newer; {device.name} has {major}.{minor}. Use "
                "trainer.precision: 16-mixed and model.compute_dtype: float16 (the LoRA weights "
                "stay fp32, which the fp16 gradient scaler needs)"
            )
    if precision.startswith("16") and compute_dtype == "bfloat16":
        problems.append(
            "trainer.precision 16-mixed autocasts to fp16 but model.compute_dtype is bfloat16: "
            "set model.compute_dtype: float16"
        )
    if precision.startswith("bf16") and compute_dtype == "float16":
        problems.append(
            "trainer.precision bf16-mixed with model.compute_dtype float16 mixes two 16-bit "
            "formats: set model.compute_dtype: bfloat16"
        )
    return problems


def lora_dtype_problems(named_parameters) -> list[str]:
    """Trainable weights that are not fp32: fp16's GradScaler refuses to unscale fp16 gradients."""
    import torch

    return [
        f"{name} is {param.dtype}"
        for name, param in named_parameters
        if param.requires_grad and param.dtype != torch.float32
    ]


def optimizer_state_bytes(class_path: str) -> float:
    """Optimizer bytes per trainable weight: Adam keeps two fp32 moments, 8-bit Adam two bytes."""
    name = class_path.lower()
    if "8bit" in name:
        return 2.0
    if "sgd" in name:
        return 4.0
    return 8.0


@dataclass(frozen=True)
class Findings:
    """Everything the report says, gathered before it is written."""

    config: str
    device: Device
    model: str
    shape: ModelShape
    shape_source: str
    plan: StepPlan
    length_note: str
    precision: str
    compute_dtype: str
    optimizer: str
    estimate: MemoryEstimate
    budget: float
    fixes: list[Fix]
    problems: list[str]

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.budget


def main(argv: list[str]) -> None:
    args, overrides = _arguments().parse_known_args(argv)
    cli = _parse_config(args.config, overrides)
    findings = check(cli, args)
    print(format_report(findings), flush=True)
    if args.measure:
        print(_measure(cli, findings.shape, findings.plan, args.steps), flush=True)
    if not findings.fits or findings.problems:
        raise SystemExit(1)


def check(cli, args: argparse.Namespace) -> Findings:
    """Estimate and check the parsed config against the target device."""
    hp, data_hp, trainer = cli.model.hparams, cli.datamodule.hparams, cli.config.trainer
    device = _target_device(args, str(trainer.accelerator))
    shape, shape_source, model_file = _model_shape(hp.model, args.model_config)
    packed = bool(hp.get("share_prompt", False))
    seq_len, length_note = _longest_row(data_hp, packed, args.worst_case, args.sample)
    optimizer = _class_path(cli.config.model.optimizer)
    precision = str(trainer.precision)
    plan = StepPlan(
        batch_size=data_hp.batch_size,
        seq_len=seq_len,
        rows_per_pair=1 if packed else 2,
        quantization=hp.quantization,
        weight_bytes=2 if hp.compute_dtype != "float32" else 4,
        autocast_16bit="16" in precision or hp.compute_dtype != "float32",
        lora_r=hp.lora_r,
        lora_targets=_lora_targets(hp.target_modules),
        lora_dropout=hp.lora_dropout > 0,
        gradient_checkpointing=hp.gradient_checkpointing,
        optimizer_state_bytes=optimizer_state_bytes(optimizer),
        logps_chunk_size=hp.get("logps_chunk_size"),
        device=device.kind,
        model_file_bytes=model_file,
    )
    estimate = estimate_step_memory(shape, plan)
    budget = device.memory * (1 - HEADROOM)
    fixes = []
    if estimate.total > budget:
        accumulate = trainer.accumulate_grad_batches or 1
        fixes = suggest_fixes(shape, plan, budget, accumulate, data_hp.max_length)
    return Findings(
        config=args.config,
        device=device,
        model=hp.model,
        shape=shape,
        shape_source=shape_source,
        plan=plan,
        length_note=length_note,
        precision=precision,
        compute_dtype=hp.compute_dtype,
        optimizer=optimizer,
        estimate=estimate,
        budget=budget,
        fixes=fixes,
        problems=precision_problems(precision, hp.compute_dtype, device),
    )


def format_report(f: Findings) -> str:
    """The preflight report as printed."""
    device, plan, shape = f.device, f.plan, f.shape
    capability = ""
    if device.capability:
        capability = f", compute capability {device.capability[0]}.{device.capability[1]}"
    rows = "2 rows (chosen, rejected)" if plan.rows_per_pair == 2 else "1 packed row"
    scoring = (
        f"head in chunks of {plan.logps_chunk_size}" if plan.logps_chunk_size else "full logits"
    )
    lines = [
        f"preflight: {f.config} on {device.name}: {device.memory / GIB:.1f} GiB{capability}",
        f"model: {f.model}: {shape.num_layers} layers, hidden {shape.hidden_size}, "
        f"{shape.num_heads}/{shape.num_kv_heads} heads, MLP {shape.intermediate_size}, "
        f"vocab {shape.vocab_size:,} ({f.shape_source})",
        f"step: {plan.batch_size} pairs x {rows} of {plan.seq_len} tokens",
        f"  ({f.length_note})",
        f"  {plan.quantization}, LoRA r={plan.lora_r} on {len(plan.lora_targets)} projections, "
        f"{f.precision}, gradient checkpointing {'on' if plan.gradient_checkpointing else 'off'}, "
        f"{scoring}, {f.optimizer.rsplit('.', 1)[-1]}",
        "",
        "peak memory of a training step (estimate)",
    ]
    lines += [f"  {label:36}{value / GIB:7.2f} GiB" for label, value in f.estimate.rows()]
    verdict = "fits" if f.fits else "does NOT fit"
    lines.append(
        f"  {'total':36}{f.estimate.total / GIB:7.2f} GiB of {f.budget / GIB:.1f} GiB usable "
        f"(90% of {device.memory / GIB:.1f}): {verdict}"
    )
    if device.kind == "cuda":
        lines.append("  (GPU numbers use the CPU-calibrated model and are not measured yet)")
    if not f.fits:
        lines.append("")
        if f.fixes:
            lines.append("changes that fit:")
            for fix in f.fixes:
                changes = " ".join(f"--{k} {_yaml(v)}" for k, v in fix.changes.items())
                lines.append(f"  {changes}  -> {fix.peak / GIB:.2f} GiB")
        else:
            lines.append("no change of batch size, max_length or checkpointing fits this device")
    lines.append("")
    if f.problems:
        lines += [f"precision: REFUSED: {problem}" for problem in f.problems]
    else:
        lines.append(f"precision: {f.precision} with compute dtype {f.compute_dtype}: ok")
        if f.precision.startswith("16"):
            lines.append(
                "  fp16: load_policy keeps the trainable LoRA weights fp32 for the gradient "
                "scaler (--measure checks the loaded model)"
            )
    return "\n".join(lines)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-dpo preflight",
        description="Estimate a training step's peak memory and check precision before a run. "
        "Other arguments (--model.x, --data.x, --trainer.x) override the config as in fit.",
    )
    parser.add_argument("--config", required=True, help="the YAML the fit uses")
    parser.add_argument(
        "--device",
        choices=sorted(DEVICE_PRESETS),
        help="target GPU (default: this machine's GPU, or its RAM for accelerator cpu)",
    )
    parser.add_argument(
        "--device-memory-gb", type=float, help="memory of the target device in GiB (overrides)"
    )
    parser.add_argument(
        "--model-config",
        help="config.json of the model, for a hub model that cannot be reached from here",
    )
    parser.add_argument(
        "--worst-case",
        action="store_true",
        help="assume every row is max_length tokens instead of tokenizing the data",
    )
    parser.add_argument(
        "--sample", type=int, default=2000, help="train pairs tokenized to find the longest"
    )
    parser.add_argument(
        "--measure", action="store_true", help="run a few real training steps here and time them"
    )
    parser.add_argument("--steps", type=int, default=4, help="training steps --measure runs")
    return parser


def _parse_config(config: str, overrides: list[str]):
    from lit_dpo.cli import DPOCLI
    from lit_dpo.datamodule import PreferenceDataModule
    from lit_dpo.module import DPOModule

    class ConfigOnly(DPOCLI):
        # The trainer is not built: a GPU config must parse on a machine without one.
        def instantiate_trainer(self, **kwargs):
            return None

    if not Path(config).exists():
        raise ConfigError(f"--config {config}: no such file")
    # LightningCLI warns when given args while sys.argv holds others (ours: "preflight ...").
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return ConfigOnly(
            DPOModule,
            PreferenceDataModule,
            run=False,
            args=["--config", config, *overrides],
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = argv


def _target_device(args: argparse.Namespace, accelerator: str) -> Device:
    if args.device:
        device = DEVICE_PRESETS[args.device]
    elif accelerator == "cpu":
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        device = Device("this machine's RAM (accelerator cpu)", memory, None, "cpu")
    else:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            device = Device(props.name, props.total_memory, (props.major, props.minor), "cuda")
        elif args.device_memory_gb is None:
            raise ConfigError(
                f"the config trains on accelerator {accelerator!r} but this machine has no GPU: "
                f"name the target with --device ({', '.join(sorted(DEVICE_PRESETS))}) or "
                "--device-memory-gb"
            )
        else:
            device = Device("GPU", 0.0, None, "cuda")
    if args.device_memory_gb is not None:
        device = Device(device.name, args.device_memory_gb * GIB, device.capability, device.kind)
    return device


def _model_shape(model: str, config_path: str | None) -> tuple[ModelShape, str, float]:
    """(shape, where it came from, bytes of local weight files)."""
    if config_path:
        try:
            return ModelShape.from_config(json.loads(Path(config_path).read_text())), config_path, 0
        except (OSError, ValueError) as error:
            raise ConfigError(f"--model-config {config_path}: {error}") from error
    from transformers import AutoConfig

    from lit_dpo.sources import resolve_model

    path = resolve_model(model)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if model in BUILTIN_SHAPES:
            return BUILTIN_SHAPES[model], "built-in copy of its published config", 0.0
        raise ConfigError(
            f"cannot read the config of {model!r} ({error}); pass --model-config "
            "path/to/config.json"
        ) from error
    files = (
        sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
        if Path(path).is_dir()
        else 0
    )
    return ModelShape.from_config(config), "its config.json", float(files)


def _longest_row(data_hp: Any, packed: bool, worst_case: bool, sample: int) -> tuple[int, str]:
    """The longest row a batch will pad to, tokenizing up to ``sample`` train pairs."""
    worst = data_hp.max_length * (2 if packed else 1)
    if worst_case:
        return worst, "worst case: every reply fills max_length"
    from lit_dpo.datamodule import PreferenceDataModule

    size = min(data_hp.train_size or sample, sample)
    try:
        settings = {k: v for k, v in data_hp.items() if not k.startswith("_")}
        data = PreferenceDataModule(**{**settings, "train_size": size, "val_size": 1})
        data.setup("fit")
    except (LitDPOError, OSError) as error:
        log.warning("could not tokenize the data (%s); assuming the worst case", error)
        return worst, "worst case: the data could not be read here"
    split = data.splits["train"]
    lengths = row_lengths(
        [len(x) for x in split["prompt_ids"]],
        [len(x) for x in split["chosen_ids"]],
        [len(x) for x in split["rejected_ids"]],
        packed,
    )
    report = data.report.get("train", {})
    truncated = report.get("truncated", 0)
    ordered = sorted(lengths)
    median = ordered[len(ordered) // 2]
    note = (
        f"longest of {len(lengths)} tokenized pairs; median {median}, "
        f"{truncated} truncated to max_length {data_hp.max_length}"
    )
    return max(lengths), note


def _lora_targets(target_modules: Any) -> tuple[str, ...]:
    if target_modules == "all-linear":
        return PROJECTIONS
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return tuple(p for p in PROJECTIONS if any(p in name or name in p for name in names))


def _class_path(optimizer: Any) -> str:
    if isinstance(optimizer, str):
        return optimizer
    return str(getattr(optimizer, "class_path", None) or "torch.optim.AdamW")


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _measure(cli, shape: ModelShape, plan: StepPlan, steps: int) -> str:
    """Time ``steps`` real training batches and two validation batches here; project the run."""
    config = cli.config.trainer
    seen = measure_steps(cli.model, cli.datamodule, config, plan.rows_per_pair == 1, steps)
    estimate = estimate_step_memory(shape, replace(plan, seq_len=max(seen.widths)))
    # the caching allocator does not see the CUDA context: compare like with like
    estimated = estimate.total - (estimate.runtime if seen.device == "cuda" else 0.0)
    data = cli.datamodule
    run = run_plan(
        len(data.splits["train"]),
        len(data.splits["val"]),
        plan.batch_size,
        config.accumulate_grad_batches or 1,
        config.max_epochs,
        config.max_steps,
        config.val_check_interval if config.val_check_interval is not None else 1.0,
        config.check_val_every_n_epoch,
        config.num_sanity_val_steps if config.num_sanity_val_steps is not None else 2,
    )
    total = run_seconds(run, seen.train_batch_s, seen.val_batch_s)
    lora_problems = lora_dtype_problems(cli.model.policy.named_parameters())
    lines = [
        "",
        f"measured here ({config.accelerator}, {len(seen.widths)} training batches of "
        f"{plan.batch_size} pairs, longest row {max(seen.widths)} tokens):",
        f"  {seen.train_batch_s:.2f} s per training batch, {seen.val_batch_s:.2f} s per "
        "validation batch",
        f"  {seen.peak_label}: {seen.peak / GIB:.2f} GiB (estimate for these batches: "
        f"{estimated / GIB:.2f} GiB)",
        f"  whole run: {run.train_batches} training batches ({run.optimizer_steps} optimizer "
        f"steps), {run.validations} validation run(s) of {run.val_batches} batches: "
        f"about {format_duration(total)} (generation of samples not included)",
        "  LoRA weights: "
        + ("all fp32" if not lora_problems else "NOT fp32: " + "; ".join(lora_problems[:3])),
    ]
    return "\n".join(lines)
