"""``lit-dpo preflight``: will a config fit its device, with the right precision, and how long?

``lit-dpo preflight --config configs/t4.yaml --device t4`` reads the YAML the fit reads (any
``--model.x`` / ``--data.x`` / ``--trainer.x`` override works too), estimates the peak memory of a
training step from the model's config and the data's token lengths (``memory``), compares it with
the device, checks the precision against the GPU, and says which change fits when the step does
not. ``--measure true`` runs a few real steps here and times them (``measure``). It exits with
status 1 when the step does not fit or the precision is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lit_dpo.device import DEVICE_PRESETS, GIB, Device, lora_dtype_problems, precision_problems
from lit_dpo.errors import ConfigError, LitDPOError
from lit_dpo.host_memory import freed_memory_mode
from lit_dpo.models.adapters import ADAPTER_CONFIG, check_adapter, lora_weight_shapes
from lit_dpo.models.reference import describe_reference
from lit_dpo.preflight.disk import disk_lines, fit_writes
from lit_dpo.preflight.measure import format_duration, measure_steps, run_plan, run_seconds
from lit_dpo.preflight.memory import (
    PROJECTIONS,
    QWEN2_0_5B_INSTRUCT,
    Fix,
    MemoryEstimate,
    ModelShape,
    StepPlan,
    estimate_step_memory,
    lora_parameters,
    row_lengths,
    suggest_fixes,
)
from lit_dpo.sources import cache_dir
from lit_dpo.train.settings import Settings

if TYPE_CHECKING:
    from lit_dpo.cli import FitConfig

log = logging.getLogger(__name__)

# Allocators fragment, and the estimate was off by up to 15% on measured CPU runs: keep 10% free.
HEADROOM = 0.10
BUILTIN_SHAPES = {"Qwen/Qwen2-0.5B-Instruct": QWEN2_0_5B_INSTRUCT}


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
    reference: str = describe_reference(None)
    disk: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.budget

    @property
    def exit_status(self) -> int:
        """1 when the step does not fit or the precision is refused, else 0."""
        return 0 if self.fits and not self.problems else 1


def preflight(
    fit: FitConfig,
    device: Literal["t4", "l4", "a100"] | None = None,
    device_memory_gb: float | None = None,
    model_config: str | None = None,
    worst_case: bool = False,
    sample: int = 2000,
    measure: bool = False,
    steps: int = 4,
) -> Findings:
    """Estimate a training step's peak memory and check its precision before a run; with
    ``--measure true``, also time a few real steps here. Any fit setting may be given, as in fit.

    Args:
        fit: the fit config (``--config`` and any ``--model.*``, ``--data.*``, ``--trainer.*``).
        device: target GPU; by default this machine's GPU, or its RAM for accelerator cpu.
        device_memory_gb: memory of the target device in GiB (overrides ``device``'s).
        model_config: config.json of the model, for a hub model that cannot be reached from here.
        worst_case: assume every row is max_length tokens instead of tokenizing the data.
        sample: train pairs tokenized to find the longest row.
        measure: run a few real training steps here and time them.
        steps: training steps ``measure`` runs.

    Returns:
        The findings; their ``exit_status`` is 1 when the step does not fit or the precision is
        refused.
    """
    findings = check(fit, device, device_memory_gb, model_config, worst_case, sample)
    print(format_report(findings), flush=True)
    if measure:
        print(_measure(fit, findings.shape, findings.plan, steps), flush=True)
    return findings


def check(
    fit: FitConfig,
    device: str | None = None,
    device_memory_gb: float | None = None,
    model_config: str | None = None,
    worst_case: bool = False,
    sample: int = 2000,
) -> Findings:
    """Estimate and check the parsed config against the target device (see ``preflight``)."""
    settings, data_hp, trainer = fit.model.settings, fit.data.hparams, fit.trainer
    load, efficiency = settings.load, settings.efficiency
    target = _target_device(device, device_memory_gb, str(trainer.accelerator))
    shape, shape_source, model_file = _model_shape(settings.model, model_config)
    packed = efficiency.share_prompt
    seq_len, length_note = _longest_row(data_hp, packed, worst_case, sample)
    optimizer = _class_path(fit.config.model.optimizer)
    precision = str(trainer.precision)
    lora, reference_adapter = _lora_settings(settings)
    plan = StepPlan(
        batch_size=data_hp.batch_size,
        seq_len=seq_len,
        rows_per_pair=1 if packed else 2,
        quantization=load.quantization,
        weight_bytes=2 if load.compute_dtype != "float32" else 4,
        autocast_16bit="16" in precision or load.compute_dtype != "float32",
        **lora,
        gradient_checkpointing=efficiency.gradient_checkpointing,
        optimizer_state_bytes=optimizer_state_bytes(optimizer),
        logps_chunk_size=efficiency.logps_chunk_size,
        device=target.kind,
        model_file_bytes=model_file,
        return_freed_memory=freed_memory_mode(efficiency.return_freed_memory),
    )
    estimate = estimate_step_memory(shape, plan)
    budget = target.memory * (1 - HEADROOM)
    fixes = []
    if estimate.total > budget:
        accumulate = trainer.accumulate_grad_batches or 1
        fixes = suggest_fixes(shape, plan, budget, accumulate, data_hp.max_length)
    return Findings(
        config=", ".join(fit.files) or "(no --config)",
        device=target,
        model=settings.model,
        shape=shape,
        shape_source=shape_source,
        plan=plan,
        length_note=length_note,
        precision=precision,
        compute_dtype=load.compute_dtype,
        optimizer=optimizer,
        estimate=estimate,
        budget=budget,
        fixes=fixes,
        problems=precision_problems(precision, load.compute_dtype, target),
        reference=describe_reference(reference_adapter),
        disk=tuple(disk_lines(fit_writes(
            lora_parameters(shape, plan.lora_r, plan.lora_targets),
            plan.optimizer_state_bytes,
            root=Path(trainer.get("default_root_dir") or "."),
            cache=cache_dir(),
            checkpoints=_checkpoints_kept(trainer),
        ))),
    )


def _checkpoints_kept(trainer: Any) -> int:
    """Checkpoints a fit keeps on disk at once: each checkpoint callback's ``save_top_k`` (1 by
    default; all of them, -1, counted as 10) plus its ``last``; Lightning's own one if none."""
    kept = 0
    for callback in trainer.get("callbacks") or []:
        if not str(getattr(callback, "class_path", "")).endswith("Checkpoint"):
            continue
        settings = getattr(callback, "init_args", None) or {}
        top_k = settings.get("save_top_k", 1)
        kept += (10 if top_k == -1 else top_k) + (1 if settings.get("save_last") else 0)
    if not kept and trainer.get("enable_checkpointing", True) is not False:
        kept = 1
    return kept


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
        f"  reference: {f.reference}"
        + (
            f", {plan.reference_lora_parameters:,} LoRA weights"
            if plan.reference_lora_parameters
            else ""
        ),
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
    lines += ["", *f.disk] if f.disk else []
    lines.append("")
    if f.problems:
        lines += [f"precision: REFUSED: {problem}" for problem in f.problems]
    else:
        lines.append(f"precision: {f.precision} with compute dtype {f.compute_dtype}: ok")
        if f.precision.startswith("16"):
            lines.append(
                "  fp16: load_policy keeps the trainable LoRA weights fp32 for the gradient "
                "scaler (--measure true checks the loaded model)"
            )
    return "\n".join(lines)


def _target_device(name: str | None, memory_gb: float | None, accelerator: str) -> Device:
    if name:
        device = DEVICE_PRESETS[name]
    elif accelerator == "cpu":
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        device = Device("this machine's RAM (accelerator cpu)", memory, None, "cpu")
    else:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            device = Device(props.name, props.total_memory, (props.major, props.minor), "cuda")
        elif memory_gb is None:
            raise ConfigError(
                f"the config trains on accelerator {accelerator!r} but this machine has no GPU: "
                f"name the target with --device ({', '.join(sorted(DEVICE_PRESETS))}) or "
                "--device_memory_gb"
            )
        else:
            device = Device("GPU", 0.0, None, "cuda")
    if memory_gb is not None:
        device = Device(device.name, memory_gb * GIB, device.capability, device.kind)
    return device


def _model_shape(model: str, config_path: str | None) -> tuple[ModelShape, str, float]:
    """(shape, where it came from, bytes of local weight files)."""
    if config_path:
        try:
            return ModelShape.from_config(json.loads(Path(config_path).read_text())), config_path, 0
        except (OSError, ValueError) as error:
            raise ConfigError(f"--model_config {config_path}: {error}") from error
    from transformers import AutoConfig

    from lit_dpo.sources import resolve_model

    path = resolve_model(model)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if model in BUILTIN_SHAPES:
            return BUILTIN_SHAPES[model], "built-in copy of its published config", 0.0
        raise ConfigError(
            f"cannot read the config of {model!r} ({error}); pass --model_config "
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
    from lit_dpo.data.datamodule import PreferenceDataModule

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


def _lora_settings(run: Settings) -> tuple[dict[str, Any], str | None]:
    """The policy's LoRA settings of a StepPlan, and the reference adapter folder (or None).

    A policy that starts from a saved adapter (``model.load.adapter``, or a copy of
    ``model.load.reference_adapter``) has that adapter's rank, targets and dropout, not the
    ``model.lora.*`` settings; a reference adapter's weights are counted from its header.

    Raises:
        ConfigError: an adapter folder that cannot be read.
    """
    lora, reference_adapter = run.lora, run.load.reference_folder
    start = run.load.adapter or reference_adapter
    settings = {
        "lora_r": lora.r,
        "lora_targets": _lora_targets(lora.target_modules),
        "lora_dropout": lora.dropout > 0,
    }
    if start is None:
        return settings, None
    allow_pickle = run.load.allow_pickle
    problems = check_adapter(start, allow_pickle)
    if reference_adapter is not None and reference_adapter != start:
        problems += check_adapter(reference_adapter, allow_pickle)
    if problems:
        raise ConfigError("; ".join(problems))
    config = json.loads((Path(start) / ADAPTER_CONFIG).read_text())
    settings = {
        "lora_r": int(config.get("r", lora.r)),
        "lora_targets": _lora_targets(config.get("target_modules") or lora.target_modules),
        "lora_dropout": float(config.get("lora_dropout") or 0.0) > 0,
    }
    if reference_adapter is not None:
        settings["reference_lora_parameters"] = sum(
            math.prod(shape)
            for key, shape in lora_weight_shapes(reference_adapter).items()
            if "lora_" in key
        )
    return settings, reference_adapter


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


def _measure(fit: FitConfig, shape: ModelShape, plan: StepPlan, steps: int) -> str:
    """Time ``steps`` real training batches and two validation batches here; project the run."""
    config = fit.trainer
    seen = measure_steps(fit.model, fit.data, config, plan.rows_per_pair == 1, steps)
    # the batches as they ran: their longest row, and the tokens of the heaviest
    measured = replace(plan, seq_len=max(seen.widths), batch_tokens=max(seen.tokens))
    estimate = estimate_step_memory(shape, measured)
    # the caching allocator does not see the CUDA context: compare like with like
    estimated = estimate.total - (estimate.runtime if seen.device == "cuda" else 0.0)
    data = fit.data
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
    lora_problems = lora_dtype_problems(fit.model.policy.named_parameters())
    lines = [
        "",
        f"measured here ({config.accelerator}, {len(seen.widths)} training batches of "
        f"{plan.batch_size} pairs, longest row {max(seen.widths)} tokens, heaviest batch "
        f"{max(seen.tokens)} tokens):",
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
