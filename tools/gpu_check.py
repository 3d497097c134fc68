"""Check on one GPU what CPU runs cannot (``make gpu-check``), in under 8 minutes.

Each check is a small function of the shared ``Setup`` that returns one ``Row`` (pass, fail or
skip, and what it measured):

- ``t4 recipe``: ``configs/t4.yaml`` as it is (16-mixed with the gradient scaler, fp32 LoRA
  weights, paged 8-bit AdamW, gradient checkpointing) trains a Qwen2-0.5B-shaped model (random
  weights from its config, SmolLM2's tokenizer, as ``tools/bench.py --gpu``) for some epochs of a
  few pairs through ``lit-dpo fit``: no NaN, and the loss falls;
- ``preflight estimate``: ``lit_dpo.preflight.memory`` against ``torch.cuda.max_memory_allocated``
  of training steps at max_length 1024 (prompt 512 and two replies of 512, batch 2);
- ``chunked head``, ``prefix sharing (mask)``, ``prefix sharing (flex)``,
  ``precomputed reference``: each speed technique's GPU speedup over the path it replaces, and
  that it gives that path's loss, log-probs and LoRA gradients;
- ``bench vs TRL``: ``tools/bench.py --gpu`` (lit-dpo against TRL's DPOTrainer, with MFU);
- ``exact resume``: a fit interrupted by SIGINT and resumed with ``--ckpt_path last`` logs the
  losses of an uninterrupted one (the CUDA random state of LoRA dropout restored).

It prints one table and last ``gpu_check=pass`` (no check failed) or ``gpu_check=fail``.
``--dry-run`` runs the same checks on the CPU with tiny shapes in a minute or two, reporting
as skipped what only a GPU can do (CUDA memory, FlexAttention's backward, the GPU bench), so CI
keeps this script working (``tests/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from lightning import Callback

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
DATASET = "embedded:ultrafeedback-mini"
# lit-dpo resolves `gpu_check.X` callbacks to this running module, whatever its name
sys.modules.setdefault("gpu_check", sys.modules[__name__])


@dataclass(frozen=True)
class Row:
    check: str
    status: str  # pass, fail or skip
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Setup:
    """What the checks share: the device, the models, and the sizes of this run.

    Args:
        dry_run: CPU and tiny shapes.
        device: ``cuda`` or ``cpu``.
        model_dir: the Qwen2-0.5B-shaped model (a tiny Qwen2 in a dry run).
        tiny_model_dir: a 2-layer Qwen2, for the checks where size does not matter.
        scratch: a folder for runs.
        precision: the T4 recipe's trainer precision (``32-true`` on a CPU, which has no fp16).
        compute_dtype: its 4-bit compute dtype.
        max_length: the recipe's max_length (shorter in a dry run).
        technique_batch: (pairs, prompt tokens, tokens of each reply) of the technique checks.
        repeats: timed repeats of each technique's step.
    """

    dry_run: bool
    device: str
    model_dir: str
    tiny_model_dir: str
    scratch: Path
    precision: str
    compute_dtype: str
    max_length: int
    technique_batch: tuple[int, int, int]
    repeats: int

    @property
    def accelerator(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    def autocast(self):
        """The recipe's autocast (Lightning's 16-mixed), for steps run outside a Trainer."""
        import torch

        if self.precision != "16-mixed":
            return nullcontext()
        return torch.autocast(self.device, dtype=torch.float16)


def make_setup(dry_run: bool, scratch: Path) -> Setup:
    """Build the models the checks train (random weights, SmolLM2's tokenizer) in ``scratch``."""
    sys.path.insert(0, str(TOOLS))
    from bench_model import build_gpu_model

    from lit_dpo.preflight.memory import QWEN2_0_5B_INSTRUCT, ModelShape

    tiny = ModelShape(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=QWEN2_0_5B_INSTRUCT.vocab_size,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    )
    tiny_dir = build_gpu_model(scratch / "qwen2-tiny", tiny)
    if dry_run:
        return Setup(
            dry_run=True,
            device="cpu",
            model_dir=tiny_dir,
            tiny_model_dir=tiny_dir,
            scratch=scratch,
            precision="32-true",
            compute_dtype="float32",
            max_length=64,
            technique_batch=(2, 12, 10),
            repeats=1,
        )
    return Setup(
        dry_run=False,
        device="cuda",
        model_dir=build_gpu_model(scratch / "qwen2-0.5b-shaped"),
        tiny_model_dir=tiny_dir,
        scratch=scratch,
        precision="16-mixed",
        compute_dtype="float16",
        max_length=1024,
        technique_batch=(4, 512, 512),
        repeats=5,
    )


# --- the T4 recipe ----------------------------------------------------------------------------


class Record(Callback):
    """What a check reads back from a ``lit-dpo fit``: losses by step, and the trained model's
    precision settings (used as ``--trainer.callbacks+=gpu_check.Record``)."""

    last: dict = {}

    def on_train_start(self, trainer, pl_module):
        from lit_dpo.device import lora_dtype_problems

        Record.last = {
            "losses": [],
            "scaler": getattr(trainer.precision_plugin, "scaler", None),
            "lora_not_fp32": lora_dtype_problems(pl_module.policy.named_parameters()),
            "optimizer": type(trainer.optimizers[0]).__name__,
            "checkpointing": pl_module.policy.get_base_model().is_activation_checkpointing,
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        Record.last["losses"].append(float(outputs["loss"]))


def check_t4_recipe(setup: Setup) -> Row:
    """configs/t4.yaml trains: no NaN, the loss falls, LoRA fp32 under the scaler."""
    from lit_dpo.cli import main

    root = setup.scratch / "t4"
    # a few pairs seen again and again, so that the loss must fall within a minute
    epochs, pairs, lr = (3, 4, 1e-2) if setup.dry_run else (6, 8, 1e-3)
    args = [
        "fit",
        f"--config={REPO / 'configs' / 't4.yaml'}",
        f"--model.model={setup.model_dir}",
        f"--data.dataset={DATASET}",
        f"--data.train_size={pairs}",
        "--data.val_size=2",
        "--data.num_workers=0",
        "--trainer.accumulate_grad_batches=1",
        f"--trainer.max_epochs={epochs}",
        "--trainer.val_check_interval=1.0",
        f"--model.optimizer.lr={lr}",
        "--model.optimization.warmup_ratio=0",
        # what a T4 runs: auto picks the dense mask below compute capability 8.0
        "--model.efficiency.packed_attention=mask",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.save_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=gpu_check.Record",
    ]
    if setup.dry_run:
        args += [
            "--trainer.accelerator=cpu",
            f"--trainer.precision={setup.precision}",
            f"--model.load.compute_dtype={setup.compute_dtype}",
        ]
    main(args)
    seen = Record.last
    losses = seen["losses"]
    per_epoch = len(losses) // epochs
    first, last = _mean(losses[:per_epoch]), _mean(losses[-per_epoch:])
    problems = []
    if not all(math.isfinite(v) for v in losses):
        problems.append("a non-finite loss")
    if not last < first:
        problems.append("the loss did not fall")
    if seen["lora_not_fp32"]:
        problems.append("LoRA not fp32: " + "; ".join(seen["lora_not_fp32"][:2]))
    if setup.precision == "16-mixed" and seen["scaler"] is None:
        problems.append("no gradient scaler under 16-mixed")
    if not seen["checkpointing"]:
        problems.append("gradient checkpointing off")
    scale = f", final loss scale {seen['scaler'].get_scale():.0f}" if seen["scaler"] else ""
    detail = (
        f"{len(losses)} steps, {setup.precision}, {seen['optimizer']}: mean loss first epoch "
        f"{first:.4f} -> last {last:.4f}{scale}"
    )
    return _row("t4 recipe", problems, detail)


# --- preflight's estimate against CUDA's allocator ---------------------------------------------


def check_preflight_estimate(setup: Setup) -> Row:
    """Estimate vs max_memory_allocated of steps at max_length (prompt half, replies half each)."""
    import torch
    from lightning import Trainer
    from torch.utils.data import DataLoader

    from lit_dpo.preflight.command import optimizer_state_bytes
    from lit_dpo.preflight.memory import ModelShape, StepPlan, estimate_step_memory

    pairs, half = 2, setup.max_length // 2
    batch = synthetic_batch(pairs, half, half, seed=0)
    module = recipe_module(setup, lora_dropout=0.05)

    class PeakAfterLoading(Callback):
        def on_train_start(self, trainer, pl_module):
            if setup.device == "cuda":
                torch.cuda.reset_peak_memory_stats()

    trainer = Trainer(
        accelerator=setup.accelerator,
        devices=1,
        precision=setup.precision,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[PeakAfterLoading()],
        default_root_dir=setup.scratch / "preflight",
    )
    trainer.fit(module, train_dataloaders=DataLoader([batch, batch], batch_size=None))
    shape = ModelShape.from_config(json.loads((Path(setup.model_dir) / "config.json").read_text()))
    plan = StepPlan(
        batch_size=pairs,
        seq_len=3 * half,  # the packed row: prompt once, both replies
        rows_per_pair=1,
        quantization="nf4",
        weight_bytes=2 if setup.compute_dtype != "float32" else 4,
        autocast_16bit=setup.precision == "16-mixed",
        lora_dropout=True,
        gradient_checkpointing=True,
        optimizer_state_bytes=optimizer_state_bytes("bitsandbytes.optim.PagedAdamW8bit"),
        logps_chunk_size=512,
        device=setup.device,
    )
    estimate = estimate_step_memory(shape, plan)
    # the caching allocator does not see the CUDA context, which the estimate adds
    estimated = estimate.total - estimate.runtime
    if setup.device != "cuda":
        return Row(
            "preflight estimate",
            "skip",
            f"ran the step; estimate {estimated / 2**30:.3f} GiB; max_memory_allocated needs CUDA",
        )
    measured = torch.cuda.max_memory_allocated()
    error = estimated / measured - 1
    detail = (
        f"{pairs} pairs x packed row {3 * half}: estimate {estimated / 2**30:.2f} GiB, "
        f"max_memory_allocated {measured / 2**30:.2f} GiB ({error:+.0%}), reserved "
        f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB"
    )
    return _row("preflight estimate", ["off by more than 25%"] if abs(error) > 0.25 else [], detail)


# --- the speed techniques ---------------------------------------------------------------------

PLAIN = {"logps_chunk_size": None, "share_prompt": False}
CHUNKED = {"logps_chunk_size": 512, "share_prompt": False}
PACKED = {"logps_chunk_size": 512, "share_prompt": True}


def check_chunked_head(setup: Setup) -> Row:
    return _technique(setup, "chunked head", PLAIN, CHUNKED)


def check_prefix_sharing_mask(setup: Setup) -> Row:
    return _technique(setup, "prefix sharing (mask)", CHUNKED, PACKED)


def check_prefix_sharing_flex(setup: Setup) -> Row:
    """FlexAttention's block mask against the dense mask, both packed (CUDA: it has no CPU
    backward; tests/test_techniques.py checks its forward on the CPU)."""
    if setup.device != "cuda":
        return Row("prefix sharing (flex)", "skip", "FlexAttention has no backward on a CPU")
    return _technique(setup, "prefix sharing (flex)", PACKED, PACKED, attention="flex_attention")


def check_precomputed_reference(setup: Setup) -> Row:
    """A step whose reference comes from a table (pre-computed in the same path) against one that
    runs the reference forward."""
    import torch

    from lit_dpo.train.pairs import split_pairs

    module, batch = _technique_inputs(setup)
    with torch.no_grad(), setup.autocast():
        reference = module._reference_logps(batch, _path(PACKED))
    table = torch.stack(split_pairs(reference), dim=-1).float()
    expected, expected_grads, on_the_fly = _timed_step(setup, module, batch, PACKED)
    module.reference_tables.tables["train"] = table
    try:
        got, grads, from_table = _timed_step(setup, module, batch, PACKED)
    finally:
        del module.reference_tables.tables["train"]
    return _compare_row(
        setup, "precomputed reference", expected, expected_grads, got, grads, on_the_fly, from_table
    )


def _technique(
    setup: Setup, name: str, before: dict, after: dict, attention: str | None = None
) -> Row:
    """``after`` against ``before`` on one batch: equal outputs, and the speedup."""
    module, batch = _technique_inputs(setup)
    causal_lm = module.policy.get_base_model()
    default = causal_lm.config._attn_implementation
    expected, expected_grads, slow = _timed_step(setup, module, batch, before)
    if attention is not None:
        causal_lm.set_attn_implementation(attention)
    try:
        got, grads, fast = _timed_step(setup, module, batch, after)
    finally:
        causal_lm.set_attn_implementation(default)
    return _compare_row(setup, name, expected, expected_grads, got, grads, slow, fast)


_TECHNIQUE_INPUTS: dict = {}


def _technique_inputs(setup: Setup):
    """One module (the recipe's settings, no dropout, random LoRA) and one batch for all."""
    import torch

    if not _TECHNIQUE_INPUTS:
        module = recipe_module(setup, lora_dropout=0.0)
        module.configure_model()
        module.policy.to(setup.device)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, parameter in sorted(module.policy.named_parameters()):
                if "lora_B" in name:
                    values = torch.randn(parameter.shape, generator=generator) * 0.01
                    parameter.copy_(values.to(parameter))
        pairs, prompt, reply = setup.technique_batch
        batch = synthetic_batch(pairs, prompt, reply, seed=1)
        batch = {key: value.to(setup.device) for key, value in batch.items()}
        _TECHNIQUE_INPUTS.update(module=module, batch=batch)
    return _TECHNIQUE_INPUTS["module"], _TECHNIQUE_INPUTS["batch"]


def _path(switches: dict):
    """The scoring path of ``logps_chunk_size`` and ``share_prompt`` switches."""
    from lit_dpo.train.forward import ScoringPath

    return ScoringPath(**switches)


def _timed_step(setup: Setup, module, batch, switches: dict) -> tuple[dict, dict, float]:
    """The step's statistics and LoRA gradients on the scoring path of ``switches``, and its mean
    seconds over ``repeats`` after one untimed (compilation, caches)."""

    def step():
        module.policy.zero_grad(set_to_none=True)
        with setup.autocast():
            stats = module.step_statistics(batch, "train", _path(switches))
        stats["loss"].backward()
        return stats

    step()
    _sync(setup)
    start = time.perf_counter()
    for _ in range(setup.repeats):
        stats = step()
    _sync(setup)
    seconds = (time.perf_counter() - start) / setup.repeats
    grads = {
        name: p.grad.detach().float().clone()
        for name, p in module.policy.named_parameters()
        if p.grad is not None
    }
    stats = {key: value.detach().float() for key, value in stats.items()}
    return stats, grads, seconds


def _compare_row(setup, name, expected, expected_grads, got, grads, slow, fast) -> Row:
    """Equal within the precision's rounding: summed log-probs (relative), loss, gradients
    (relative norm of the difference)."""
    logps = max(
        float(((got[key] - expected[key]).abs() / expected[key].abs().clamp(min=1)).max())
        for key in ("logps/chosen", "logps/rejected", "reference_logps/rejected")
    )
    loss = float((got["loss"] - expected["loss"]).abs())
    grad = max(
        float((grads[key] - value).norm() / value.norm().clamp(min=1e-12))
        for key, value in expected_grads.items()
    )
    limits = (1e-5, 1e-5, 1e-3) if setup.precision == "32-true" else (5e-3, 5e-3, 5e-2)
    problems = []
    if set(grads) != set(expected_grads) or not expected_grads:
        problems.append("other LoRA weights got gradients")
    for label, value, limit in zip(
        ("log-probs", "loss", "gradients"), (logps, loss, grad), limits, strict=True
    ):
        if not value <= limit:
            problems.append(f"{label} differ by {value:.2e} (limit {limit:.0e})")
    detail = (
        f"x{slow / fast:.2f} ({slow * 1e3:.0f} -> {fast * 1e3:.0f} ms a step); differences: "
        f"log-probs {logps:.1e} rel, loss {loss:.1e}, LoRA grads {grad:.1e} rel"
    )
    return _row(name, problems, detail)


# --- tools/bench.py --gpu ---------------------------------------------------------------------


def check_bench(setup: Setup) -> Row:
    """lit-dpo against TRL on the Qwen2-0.5B-shaped model, with MFU (a shortened run)."""
    if setup.device != "cuda":
        return Row("bench vs TRL", "skip", "GPU only (make bench compares on the CPU)")
    out = setup.scratch / "bench.json"
    command = [sys.executable, str(TOOLS / "bench.py"), "--gpu", "--warmup", "2", "--steps", "8"]
    completed = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=240
    )
    if completed.returncode:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
        return Row("bench vs TRL", "fail", f"exit {completed.returncode}: {' '.join(tail)}")
    rows = json.loads(out.read_text())["rows"]
    lit, trl = rows["lit-dpo"], rows["TRL"]
    delta = abs(lit["first loss"] - trl["first loss"])
    detail = (
        f"speedup x{lit['pairs/s'] / trl['pairs/s']:.2f}, memory ratio "
        f"{lit['peak GB'] / trl['peak GB']:.2f}, MFU {_percent(lit.get('MFU %'))} vs "
        f"{_percent(trl.get('MFU %'))}, first-loss delta {delta:.1e}"
    )
    return _row(
        "bench vs TRL", ["first losses differ by more than 1e-2"] if delta > 1e-2 else [], detail
    )


# --- exact resume -----------------------------------------------------------------------------


class SignalAt(Callback):
    """Sends this process SIGINT after its ``batches``-th batch, as Ctrl-C would."""

    def __init__(self, batches: int) -> None:
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += 1
        if self.seen == self.batches:
            os.kill(os.getpid(), signal.SIGINT)


def check_exact_resume(setup: Setup) -> Row:
    """Straight fit vs interrupted after batch 4 + ``--ckpt_path last``: identical losses."""
    from lit_dpo.cli import main

    def args(root: Path, *extra: str) -> list[str]:
        return [
            "fit",
            f"--model.model={setup.tiny_model_dir}",
            f"--data.dataset={DATASET}",
            "--data.train_size=6",
            "--data.val_size=2",
            "--data.batch_size=2",
            "--data.max_length=128",
            "--data.max_prompt_length=64",
            "--model.optimizer=torch.optim.AdamW",
            "--model.optimizer.lr=0.01",
            # dropout draws from the (CUDA) random state, which the resume must restore
            "--model.lora.dropout=0.2",
            f"--model.load.compute_dtype={setup.compute_dtype}",
            "--trainer.max_epochs=2",
            "--trainer.log_every_n_steps=1",
            "--trainer.num_sanity_val_steps=0",
            f"--trainer.accelerator={setup.accelerator}",
            f"--trainer.precision={setup.precision}",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={root}",
            *extra,
        ]

    main(args(setup.scratch / "straight"))
    straight = _logged_losses(setup.scratch / "straight")
    run = setup.scratch / "interrupted"
    try:
        main(args(run, "--trainer.callbacks+=gpu_check.SignalAt", "--trainer.callbacks.batches=4"))
    except SystemExit as stopped:
        if stopped.code != 128 + signal.SIGINT:
            raise
    else:
        return Row("exact resume", "fail", "SIGINT did not stop the fit")
    main(args(run, "--ckpt_path=last"))
    resumed = _logged_losses(run)
    problems = []
    if sorted(resumed) != sorted(straight):
        problems.append(f"steps {sorted(resumed)} logged, expected {sorted(straight)}")
        worst = math.inf
    else:
        worst = max(abs(resumed[step] - value) for step, value in straight.items())
        if worst > 1e-5:
            problems.append(f"losses differ by up to {worst:.1e}")
    detail = (
        f"{len(straight)} steps, interrupted after 4: largest loss difference, resumed vs "
        f"straight, {worst:.1e}"
    )
    return _row("exact resume", problems, detail)


def _logged_losses(root: Path) -> dict[int, float]:
    losses = {}
    for path in sorted(root.glob("lightning_logs/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


# --- shared pieces ----------------------------------------------------------------------------


def recipe_module(setup: Setup, lora_dropout: float):
    """A DPOModule with configs/t4.yaml's model settings, packed pairs under the dense mask."""
    from functools import partial

    import bitsandbytes

    from lit_dpo.train.module import DPOModule
    from lit_dpo.train.settings import (
        EfficiencySettings,
        LoadSettings,
        LoRASettings,
        OptimizationSettings,
    )

    return DPOModule(
        model=setup.model_dir,
        load=LoadSettings(quantization="nf4", compute_dtype=setup.compute_dtype),
        lora=LoRASettings(dropout=lora_dropout),
        efficiency=EfficiencySettings(gradient_checkpointing=True, packed_attention="mask"),
        optimizer=partial(bitsandbytes.optim.PagedAdamW8bit, lr=5e-5, weight_decay=0.0),
        optimization=OptimizationSettings(lr_schedule="constant", warmup_ratio=0.0),
    )


def synthetic_batch(pairs: int, prompt: int, reply: int, seed: int) -> dict:
    """``collate_pairs`` of ``pairs`` random pairs: a prompt, then two replies of ``reply`` tokens
    that differ from their first token on (the longest rows max_length allows)."""
    import torch

    from lit_dpo.data.batches import collate_pairs

    generator = torch.Generator().manual_seed(seed)

    def tokens(n: int) -> list[int]:
        return torch.randint(100, 40_000, (n,), generator=generator).tolist()

    features = []
    for index in range(pairs):
        chosen = tokens(reply)
        rejected = tokens(reply)
        rejected[0] = chosen[0] + 1
        features.append(
            {
                "prompt_ids": tokens(prompt),
                "chosen_ids": chosen,
                "rejected_ids": rejected,
                "pair_index": index,
            }
        )
    return collate_pairs(features, pad_token_id=0)


def _row(check: str, problems: list[str], detail: str) -> Row:
    if problems:
        return Row(check, "fail", "; ".join(problems) + "; " + detail)
    return Row(check, "pass", detail)


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _sync(setup: Setup) -> None:
    if setup.device == "cuda":
        import torch

        torch.cuda.synchronize()


CHECKS: dict[str, Callable[[Setup], Row]] = {
    "t4 recipe": check_t4_recipe,
    "preflight estimate": check_preflight_estimate,
    "chunked head": check_chunked_head,
    "prefix sharing (mask)": check_prefix_sharing_mask,
    "prefix sharing (flex)": check_prefix_sharing_flex,
    "precomputed reference": check_precomputed_reference,
    "bench vs TRL": check_bench,
    "exact resume": check_exact_resume,
}


def run_check(name: str, check: Callable[[Setup], Row], setup: Setup) -> Row:
    """One check, timed; an exception is a failed row naming it."""
    start = time.perf_counter()
    try:
        row = check(setup)
    except Exception as error:  # noqa: BLE001 - a failed check must not stop the others
        traceback.print_exc()
        row = Row(name, "fail", f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
    return Row(row.check, row.status, row.detail, time.perf_counter() - start)


def print_table(rows: list[Row]) -> None:
    print("\n| check | status | seconds | detail |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row.check} | {row.status} | {row.seconds:.0f} | {row.detail} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="on the CPU with tiny shapes (what CI runs)"
    )
    parser.add_argument(
        "--only", action="append", choices=list(CHECKS), help="run these checks (repeatable)"
    )
    args = parser.parse_args()
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --dry-run to check the script on the CPU")
        print("gpu_check=fail")
        return 1
    if args.dry_run:
        torch.set_num_threads(1)  # tiny shapes: threads only contend on a busy machine
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lit-dpo-gpu-check-") as scratch:
        setup = make_setup(args.dry_run, Path(scratch))
        names = args.only or list(CHECKS)
        rows = [run_check(name, CHECKS[name], setup) for name in names]
    print_table(rows)
    device = torch.cuda.get_device_name() if setup.device == "cuda" else "cpu (dry run)"
    print(f"\n{device}, {time.perf_counter() - started:.0f} s in all")
    passed = all(row.status != "fail" for row in rows)
    print(f"gpu_check={'pass' if passed else 'fail'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
