"""Benchmark lit-dpo against TRL's DPOTrainer on identical work (``make bench``).

Both sides train the same 4-bit NF4 model with the same LoRA (targets, rank, alpha, dropout 0),
starting from the same seeded random adapter (so the first loss is not the trivial log 2), on the
same pairs in the same batches, with the same beta, AdamW, constant learning rate, gradient
checkpointing and number of optimizer steps. Each side runs in its own subprocess, so each peak RSS
is its own. The first ``--warmup`` steps are not timed.

- lit-dpo runs its product path: PreferenceDataModule + DPOModule + a Lightning Trainer, with its
  defaults unless ``--lit model.efficiency.share_prompt=false`` (any DPOModule / data module
  setting) says otherwise. Its wall time includes everything, reference pre-computation too.
- TRL gets the pairs in lit-dpo's batch order (``train_sampling_strategy="sequential"``) as
  conversational rows, which it tokenizes itself; the bench checks that its token ids equal
  lit-dpo's. TRL casts QLoRA adapters to bf16; the bench casts them back to fp32, as lit-dpo keeps
  them, so that both train the same model.

Prints the settings, a table, and last a line
``speedup=<lit/trl pairs per s> memory_ratio=<lit/trl peak> loss_delta=<|first-loss difference|>``.
``--gpu`` benchmarks a Qwen2-0.5B-shaped model with random weights on the GPU and adds the model
FLOPs utilisation. ``--objectives`` adds a lit-dpo and a TRL row for each objective family beyond
DPO: DPO + SFT (TRL: ``loss_type [sigmoid, sft]``), SimPO (TRL: CPOTrainer ``loss_type simpo``,
``cpo_alpha 0``) and ORPO (TRL: ORPOTrainer); CPOTrainer and ORPOTrainer tokenize the pairs their
own way (not checked equal to lit-dpo's) and score full logits. It adds KTO too (TRL: KTOTrainer),
on the same pairs unpaired (``data.unpair``): each of a row's two sequences, its completion and its
KL row (its prompt with another row's completion), is counted as a pair's two are, so its "pairs/s"
are unpaired rows per second; ``--only kto`` runs the KTO rows alone. Timings on a shared machine
are noisy: compare ratios from one invocation.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports: the wall time includes them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from itertools import islice  # noqa: E402
from pathlib import Path  # noqa: E402

# Dense bf16 peaks (TFLOPS) by device name, for the model FLOPs utilisation in --gpu mode.
BF16_PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "T4": 65.0,  # fp16: the T4 has no bf16
}
# LoRA B of the shared starting adapter ~ N(0, this): far enough from the reference for a real loss.
ADAPTER_B_STD = 0.01
CPU = {
    "model": "embedded:SmolLM2-135M-Instruct",
    "dataset": "embedded:ultrafeedback-mini",
    "batch_size": 4,
    "max_length": 320,
    "max_prompt_length": 160,
    "warmup": 2,
    "steps": 15,
    "compute_dtype": "float32",
}
GPU = {
    **CPU,
    "model": "qwen2-0.5b-shaped",  # built from its config with random weights
    "batch_size": 16,
    "max_length": 1024,
    "max_prompt_length": 512,
    "warmup": 3,
    "steps": 20,
    "compute_dtype": "bfloat16",
}
COMMON = {
    "lora_r": 16,
    "lora_alpha": 32,
    "target_modules": "all-linear",
    "gradient_checkpointing": True,
    "beta": 0.1,
    "lr": 5e-4,
    "seed": 42,
}


# --ablation: lit-dpo with each technique switched off, or an opt-in one switched on
ABLATION = {
    "lit-dpo, share_prompt off": {"model.efficiency.share_prompt": False},
    "lit-dpo, plain path (full logits, no sharing)": {
        "model.efficiency.logps_chunk_size": None,
        "model.efficiency.share_prompt": False,
    },
    "lit-dpo + precompute_reference": {"model.efficiency.precompute_reference": True},
    "lit-dpo + group_by_length": {"data.group_by_length": True},
    "lit-dpo + both": {"model.efficiency.precompute_reference": True, "data.group_by_length": True},
}


# --objectives: label -> (lit-dpo settings, (TRL trainer, its settings)); DPO is the main row
SFT_WEIGHT = 0.1
OBJECTIVES = {
    "DPO + SFT": (
        {"model.objective.sft_weight": SFT_WEIGHT},
        ("dpo", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, SFT_WEIGHT]}),
    ),
    "SimPO": (
        {
            "model.objective.loss_type": "simpo",
            "model.objective.beta": 2.0,
            "model.objective.simpo_gamma": 1.0,
        },
        ("cpo", {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0}),
    ),
    "ORPO": ({"model.objective.loss_type": "orpo"}, ("orpo", {})),
    # The same unpaired rows on both sides: lit-dpo's, in its batches (kto_rows). Not matched:
    # TRL scores the KL rows in a separate no-grad forward and each of its 4 passes runs full
    # sequences, where lit-dpo packs a completion with its KL row under their shared prompt.
    "KTO": (
        {"model.objective.loss_type": "kto", "data.unpair": True},
        ("kto", {"loss_type": "kto"}),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen2-0.5B-shaped model on the GPU")
    for key in ("batch_size", "max_length", "max_prompt_length", "warmup", "steps"):
        parser.add_argument("--" + key.replace("_", "-"), type=int)
    parser.add_argument("--gradient-checkpointing", choices=["on", "off"])
    parser.add_argument(
        "--lit",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="lit-dpo setting, e.g. model.efficiency.share_prompt=false or "
        "data.group_by_length=true",
    )
    parser.add_argument(
        "--only",
        choices=["lit", "trl", "kto"],
        help="run one side of the DPO row, or only the KTO rows (lit-dpo and TRL)",
    )
    parser.add_argument(
        "--ablation", action="store_true", help="also run lit-dpo with each technique toggled"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also print where each side's peak resident memory goes, phase by phase",
    )
    parser.add_argument(
        "--objectives",
        action="store_true",
        help="also run lit-dpo and TRL with DPO + SFT, SimPO, ORPO and KTO",
    )
    parser.add_argument("--peak-tflops", type=float, help="GPU bf16 peak, if not in the table")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", choices=["lit", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        spec = json.loads(args.spec.read_text())
        result = run_lit(spec) if args.child == "lit" else run_trl(spec)
        args.spec.with_suffix(".result.json").write_text(json.dumps(result))
        return

    settings = {**(GPU if args.gpu else CPU), **COMMON, "gpu": args.gpu}
    settings["breakdown"] = args.breakdown
    for key in ("batch_size", "max_length", "max_prompt_length", "warmup", "steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.gradient_checkpointing:
        settings["gradient_checkpointing"] = args.gradient_checkpointing == "on"
    settings["lit"] = dict(_parse_setting(item) for item in args.lit)
    runs = []  # (label, side, lit settings)
    if args.only in (None, "lit"):
        runs.append(("lit-dpo", "lit", settings["lit"]))
    if args.only in (None, "trl"):
        runs.append(("TRL", "trl", settings["lit"]))
    if args.ablation:
        runs += [(label, "lit", {**settings["lit"], **v}) for label, v in ABLATION.items()]
    trl_objectives = {}  # run label -> (TRL trainer, its settings), for --objectives
    families = ["KTO"] if args.only == "kto" else list(OBJECTIVES) if args.objectives else []
    for family in families:
        lit, trl = OBJECTIVES[family]
        runs.append((f"lit-dpo {family}", "lit", {**settings["lit"], **lit}))
        runs.append((f"TRL {family}", "trl", {**settings["lit"], **lit}))
        trl_objectives[f"TRL {family}"] = trl
    with tempfile.TemporaryDirectory(prefix="lit-dpo-bench-") as scratch:
        scratch = Path(scratch)
        if args.gpu:
            settings["model_path"] = build_gpu_model(scratch / "qwen2-0.5b-shaped")
        else:
            from lit_dpo.sources import resolve_model

            settings["model_path"] = resolve_model(settings["model"])
        print("settings:", json.dumps(settings, indent=1), flush=True)
        results = []
        for n, (label, side, lit) in enumerate(runs):
            # TRL gets lit-dpo's batches: the same plan as the main lit-dpo run
            spec = {**settings, "lit": lit, **plan_work({**settings, "lit": lit})}
            spec["trl_objective"] = trl_objectives.get(label, ("dpo", {"loss_type": ["sigmoid"]}))
            print(
                f"{label}: {spec['pairs']} {'rows' if 'kl_ids' in spec else 'pairs'} in "
                f"{len(spec['batches'])} batches "
                f"({settings['warmup']} warm-up, {settings['steps']} timed), "
                f"{spec['timed_tokens']} tokens timed",
                flush=True,
            )
            spec_path = scratch / f"run{n}.json"
            spec_path.write_text(json.dumps(spec))
            results.append((label, spec, run_child(side, spec_path, scratch / f"cache{n}")))
    if args.breakdown:
        print_breakdown(results)
    report(settings, results, args.peak_tflops, args.out)


def _parse_setting(item: str) -> tuple[str, object]:
    import yaml

    key, _, value = item.partition("=")
    if not key.startswith(("model.", "data.")) or not _:
        raise SystemExit(f"--lit {item!r}: expected model.NAME=VALUE or data.NAME=VALUE")
    return key, yaml.safe_load(value)


# --- the work: which pairs, in which batches --------------------------------------------------


def plan_work(settings: dict) -> dict:
    """lit-dpo's own first batches, and the same pairs as TRL rows."""
    from lit_dpo.data.batches import encode_pair
    from lit_dpo.data.datamodule import PreferenceDataModule
    from lit_dpo.data.loading import load_source
    from lit_dpo.data.pairs import detect_format, extract_pair
    from lit_dpo.errors import DataError

    batches_needed = settings["warmup"] + settings["steps"]
    data = PreferenceDataModule(**data_kwargs(settings, batches_needed))
    data.setup("fit")
    split = data.splits["train"]
    batches = [b["pair_index"].tolist() for b in islice(data.train_dataloader(), batches_needed)]
    if len(batches) < batches_needed:
        raise SystemExit(f"only {len(split)} pairs: fewer than {batches_needed} batches")

    raw = load_source(settings["dataset"]).splits[data.split_names["train"]]
    row_format = detect_format(raw[0], settings["dataset"])
    by_ids = {}
    for i, row in enumerate(raw):
        try:
            pair = extract_pair(row, f"row {i}", row_format)
        except DataError:
            continue
        encoded = encode_pair(
            pair, data.tokenizer, settings["max_length"], settings["max_prompt_length"]
        )
        by_ids[_key(encoded)] = (pair, encoded["truncated"])

    order = [index for batch in batches for index in batch]
    if data.unpaired["train"]:
        return {"batches": batches, "pairs": len(order), **kto_rows(settings, split, order, by_ids)}
    ids, rows = [], []
    for index in order:
        pair_ids = {k: split[index][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        pair, truncated = by_ids[_key(pair_ids)]
        if truncated:
            # TRL truncates prompt + reply from the end; lit-dpo keeps the prompt's end
            raise SystemExit("a benchmark pair is truncated: raise --max-length")
        ids.append(pair_ids)
        rows.append(
            {
                "prompt": pair.prompt,
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }
        )
    timed = ids[settings["warmup"] * settings["batch_size"] :]
    return {
        "batches": batches,
        "pairs": len(order),
        "ids": ids,
        "trl_rows": rows,
        "timed_pairs": len(timed),
        # real tokens of the 2 sequences of each pair, padding excluded: the same for both sides
        "timed_tokens": sum(
            2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in timed
        ),
    }


def kto_rows(settings: dict, split, order: list[int], by_ids: dict) -> dict:
    """lit-dpo's unpaired rows (``data.unpair``) in batch ``order``, as TRL's conversational
    unpaired rows, with their token ids and each one's KL completion.

    TRL builds a row's KL completion by rotating completions within its batch of the sequential
    order; lit-dpo takes the completion of the row before it in the split (``data.unpaired``), so
    that it stays fixed under shuffling. The TRL side is handed lit-dpo's KL completions
    (``kl_ids``), so both estimate the KL baseline from the same mismatched rows.
    """
    texts = {}  # (prompt ids, completion ids) -> (prompt messages, completion text)
    for (prompt, chosen, rejected), (pair, truncated) in by_ids.items():
        if not truncated:
            texts[(prompt, chosen)] = (pair.prompt, pair.chosen)
            texts[(prompt, rejected)] = (pair.prompt, pair.rejected)
    ids, rows, kl_ids = [], [], []
    for index in order:
        row = split[index]
        key = (tuple(row["prompt_ids"]), tuple(row["chosen_ids"]))
        if key not in texts:
            # TRL truncates prompt + reply from the end; lit-dpo keeps the prompt's end
            raise SystemExit("a benchmark row is truncated (or not found): raise --max-length")
        prompt, completion = texts[key]
        ids.append({"prompt_ids": list(key[0]), "completion_ids": list(key[1])})
        kl_ids.append(list(row["rejected_ids"]))
        rows.append(
            {
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": completion}],
                "label": bool(row["label"]),
            }
        )
    timed = slice(settings["warmup"] * settings["batch_size"], None)
    return {
        "ids": ids,
        "kl_ids": kl_ids,
        "trl_rows": rows,
        "timed_pairs": len(ids[timed]),
        # a row's 2 sequences (completion, KL row), padding excluded: the same for both sides
        "timed_tokens": sum(
            2 * len(r["prompt_ids"]) + len(r["completion_ids"]) + len(kl)
            for r, kl in zip(ids[timed], kl_ids[timed], strict=True)
        ),
    }


def data_kwargs(settings: dict, batches: int) -> dict:
    kwargs = {
        "dataset": settings["dataset"],
        "tokenizer": settings["model_path"],
        "train_size": batches * settings["batch_size"],
        "val_size": 1,
        "batch_size": settings["batch_size"],
        "max_length": settings["max_length"],
        "max_prompt_length": settings["max_prompt_length"],
        "seed": settings["seed"],
    }
    kwargs.update({k[5:]: v for k, v in settings["lit"].items() if k.startswith("data.")})
    return kwargs


def _key(encoded: dict) -> tuple:
    return tuple(tuple(encoded[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids"))


# --- the two sides, each in its own process ---------------------------------------------------


def run_child(side: str, spec_path: Path, cache: Path) -> dict:
    """One run in its own process; lit-dpo gets an empty cache ``cache``."""
    env = dict(os.environ)
    if side == "lit":
        # Empty, so a pre-computed reference is computed and paid for in this run; the converted
        # model is shared, not converted again.
        from lit_dpo.sources import cache_dir

        cache.mkdir()
        if (cache_dir() / "models").exists():
            (cache / "models").symlink_to(cache_dir() / "models")
        env["LIT_DPO_CACHE"] = str(cache)
    command = [sys.executable, __file__, "--child", side, "--spec", str(spec_path)]
    completed = subprocess.run(command, env=env)
    if completed.returncode:
        raise SystemExit(f"the {side} run failed (exit {completed.returncode})")
    return json.loads(spec_path.with_suffix(".result.json").read_text())


class StepClock:
    """Step boundaries and first loss, fed by each side's callback."""

    def __init__(self, warmup: int, gpu: bool, phases: MemoryPhases | None = None) -> None:
        self.warmup, self.gpu, self.phases = warmup, gpu, phases
        self.steps = 0
        self.first_step_start = self.timed_start = self.timed_end = None
        self.cpu_start = self.cpu_end = None
        self.first_loss = None

    def step_start(self) -> None:
        if self.first_step_start is None:
            self.first_step_start = time.perf_counter()
        if self.steps == self.warmup:
            self._sync()
            self.timed_start, self.cpu_start = time.perf_counter(), _cpu_seconds()

    def step_end(self) -> None:
        self.steps += 1
        self._sync()
        self.timed_end, self.cpu_end = time.perf_counter(), _cpu_seconds()
        if self.phases is not None:
            self.phases.after_step(self.steps, self.warmup)

    def loss(self, value: float) -> None:
        if self.first_loss is None:
            self.first_loss = value

    def result(self, extra: dict) -> dict:
        import torch

        if self.gpu:
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return {
            "steps": self.steps,
            "timed_s": self.timed_end - self.timed_start,
            "timed_cpu_s": self.cpu_end - self.cpu_start,
            "setup_s": self.first_step_start - STARTED,
            "wall_s": time.perf_counter() - STARTED,
            "peak_bytes": peak,
            "first_loss": self.first_loss,
            "device": torch.cuda.get_device_name() if self.gpu else "cpu",
            "threads": torch.get_num_threads(),
            "memory_phases": self.phases.close() if self.phases is not None else None,
            **extra,
        }

    def _sync(self) -> None:
        if self.gpu:
            import torch

            torch.cuda.synchronize()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_as_lit_dpo_does(model) -> None:
    """TRL's QLoRA model set to train as lit-dpo's does: fp32 LoRA weights (TRL makes them bf16,
    which a CPU without bf16 matmuls runs many times slower) and the 4-bit kernel that keeps its
    backward after a no-grad pass (a bitsandbytes bug on AVX512-BF16 CPUs; see
    lit_dpo/models/policy.py). Used by this bench and by quality_trl.py."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def starting_adapter(model, seed: int) -> None:
    """The same random LoRA weights on both sides: named alike by peft, filled in name order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_A" in name:
                std = parameter.shape[1] ** -0.5
            elif "lora_B" in name:
                std = ADAPTER_B_STD
            else:
                continue
            values = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(values.to(parameter))


def run_lit(spec: dict) -> dict:
    from functools import partial

    import torch
    from lightning import Callback, Trainer

    from lit_dpo.data.datamodule import PreferenceDataModule
    from lit_dpo.train.module import DPOModule

    phases = MemoryPhases.start(spec)
    clock = StepClock(spec["warmup"], spec["gpu"], phases)
    seen = []
    kl_means = []
    if "kl_ids" in spec:
        from lit_dpo.train import unpaired_step

        baseline = unpaired_step.kl_baseline

        def recorded_baseline(policy_kl, reference_kl, gather=None):
            kl_means.append(float((policy_kl - reference_kl).detach().mean()))
            return baseline(policy_kl, reference_kl, gather)

        unpaired_step.kl_baseline = recorded_baseline

    class Measure(Callback):
        def setup(self, trainer, pl_module, stage):
            if phases:
                phases.mark("data: pairs tokenized")

        def on_fit_start(self, trainer, pl_module):
            if phases:
                phases.mark("model: loaded, 4-bit, LoRA")
            starting_adapter(pl_module.policy, spec["seed"])

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["pair_index"].tolist())
            clock.step_start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.loss(outputs["loss"].item())
            clock.step_end()

    # DPOModule's settings by dotted key, as --lit gives them (model.objective.beta=...)
    settings = {
        "load.quantization": "nf4",
        "load.compute_dtype": spec["compute_dtype"],
        "lora.r": spec["lora_r"],
        "lora.alpha": spec["lora_alpha"],
        "lora.dropout": 0.0,
        "lora.target_modules": spec["target_modules"],
        "efficiency.gradient_checkpointing": spec["gradient_checkpointing"],
        "objective.beta": spec["beta"],
        "optimization.lr_schedule": "constant",
        "optimization.warmup_ratio": 0.0,
    }
    settings.update({k[6:]: v for k, v in spec["lit"].items() if k.startswith("model.")})
    module_kwargs: dict = {
        "model": spec["model_path"],
        "optimizer": partial(torch.optim.AdamW, lr=spec["lr"], weight_decay=0.0),
    }
    for key, value in settings.items():
        group, _, name = key.partition(".")
        module_kwargs.setdefault(group, {})[name] = value
    batches = len(spec["batches"])
    trainer = Trainer(
        accelerator="gpu" if spec["gpu"] else "cpu",
        devices=1,
        precision="bf16-mixed" if spec["gpu"] else "32-true",
        max_steps=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Measure()],
    )
    trainer.fit(DPOModule(**module_kwargs), PreferenceDataModule(**data_kwargs(spec, batches)))
    if seen != spec["batches"]:
        raise SystemExit("lit-dpo trained on other batches than planned")
    if phases:
        phases.mark("fit ended")
    extra = {"first_kl_mean": kl_means[0]} if kl_means else {}
    return clock.result({"settings": {k: str(v) for k, v in settings.items()}, **extra})


def run_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        TrainerCallback,
    )

    from lit_dpo.models.policy import nf4_config

    phases = MemoryPhases.start(spec)
    clock = StepClock(spec["warmup"], spec["gpu"], phases)
    dtype = getattr(torch, spec["compute_dtype"])
    quantization = nf4_config(dtype)
    # Loaded as lit-dpo's policy.py loads it (norms and embeddings in fp32), so both sides train
    # the same model; TRL takes an instantiated base model with a peft_config.
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_path"],
        dtype=dtype,
        quantization_config=quantization,
        device_map={"": "cuda"} if spec["gpu"] else None,
        use_safetensors=True,
        trust_remote_code=False,
    )
    if phases:
        phases.mark("model: loaded, 4-bit")
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=spec["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=len(spec["batches"]),
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=0.0,  # lit-dpo does not clip unless asked
        beta=spec["beta"],
        max_length=spec["max_length"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="sequential",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        use_cpu=not spec["gpu"],
        bf16=spec["gpu"],
        seed=spec["seed"],
    )
    kind, objective = spec["trl_objective"]
    config_class, trainer_class = trl_classes(kind)
    args = config_class(**{**common, **objective})
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"], trust_remote_code=False)
    lora = LoraConfig(
        r=spec["lora_r"],
        lora_alpha=spec["lora_alpha"],
        lora_dropout=0.0,
        target_modules=spec["target_modules"],
        task_type="CAUSAL_LM",
    )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(spec["trl_rows"]),
        processing_class=tokenizer,
        peft_config=lora,
    )
    if phases:
        phases.mark("DPOTrainer: LoRA, pairs tokenized")
    for i, expected in enumerate(spec["ids"] if kind in ("dpo", "kto") else []):
        got = trainer.train_dataset[i]
        if any(got[k] != expected[k] for k in expected):
            raise SystemExit(f"TRL tokenized pair {i} differently from lit-dpo")
    if kind == "kto":
        # lit-dpo's KL rows instead of TRL's in-batch rotation (see kto_rows)
        dataset = trainer.train_dataset.remove_columns("KL_completion_ids")
        trainer.train_dataset = dataset.add_column("KL_completion_ids", spec["kl_ids"])
    train_as_lit_dpo_does(trainer.model)
    starting_adapter(trainer.model, spec["seed"])

    compute_loss = trainer.compute_loss

    def recorded_loss(model, inputs, *args, **kwargs):
        out = compute_loss(model, inputs, *args, **kwargs)
        if model.training:
            clock.loss((out[0] if isinstance(out, tuple) else out).item())
        return out

    trainer.compute_loss = recorded_loss
    kl_logps = []  # KTO: the policy's, then the reference's KL-row log-probs of each step
    if kind == "kto":
        compute_kl_logps = trainer._compute_kl_logps

        def recorded_kl_logps(model, batch):
            logps = compute_kl_logps(model, batch)
            kl_logps.append(logps.detach().float())
            return logps

        trainer._compute_kl_logps = recorded_kl_logps

    class Measure(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.step_start()

        def on_step_end(self, args, state, control, **kwargs):
            clock.step_end()

    trainer.add_callback(Measure())
    trainer.train()
    if phases:
        phases.mark("fit ended")
    extra = {"first_kl_mean": float((kl_logps[0] - kl_logps[1]).mean())} if kl_logps else {}
    return clock.result(extra)


def trl_classes(kind: str) -> tuple[type, type]:
    """TRL's config and trainer classes for ``dpo``, ``cpo`` (SimPO, CPO), ``orpo`` or ``kto``."""
    if kind == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if kind == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer


# --- --breakdown: where each side's peak resident memory goes ------------------------------------


class MemoryPhases:
    """Resident memory of one side's process at its phase boundaries, and each phase's own peak.

    Phases: imports, data, model loading (with quantization), the first step, the rest of the
    warm-up, the timed steps, the end of the fit. At each boundary: the resident set, how much of
    it is pages of mapped files (the memory-mapped model file) and, from glibc, the freed memory
    its heaps keep (allocator retention) and what is live in them.
    """

    def __init__(self, steps: int) -> None:
        from lit_dpo.host_memory import ResidentSampler

        self.steps = steps
        self.sampler = ResidentSampler()
        self.rows: list[dict] = []
        self.mark("imports: Python, torch, Lightning or TRL")

    @classmethod
    def start(cls, spec: dict) -> MemoryPhases | None:
        """A recorder when ``--breakdown`` asked for one, on a CPU run."""
        return cls(len(spec["batches"])) if spec.get("breakdown") and not spec["gpu"] else None

    def mark(self, phase: str) -> None:
        from lit_dpo.host_memory import malloc_stats, resident

        peak = self.sampler.take()
        now, heap = resident(), malloc_stats() or {}
        self.rows.append(
            {
                "phase": phase,
                "peak": peak,
                "rss": now.get("rss", 0),
                "file": now.get("file", 0),
                "free_held": heap.get("free_held"),
                "in_use": heap.get("in_use"),
                "mapped": heap.get("mapped"),
            }
        )

    def after_step(self, step: int, warmup: int) -> None:
        if step == 1:
            self.mark("step 1")
        elif step == warmup:
            self.mark(f"steps 2-{warmup} (warm-up)")
        elif step == self.steps:
            self.mark(f"steps {warmup + 1}-{step} (timed)")

    def close(self) -> list[dict]:
        self.sampler.close()
        return self.rows


def print_breakdown(results: list) -> None:
    """Per side: the phase table, then the peak split into what each phase left resident."""
    gb = 1e9
    for label, _, r in results:
        rows = r.get("memory_phases")
        if not rows:
            continue
        print(f"\nmemory of {label} (GB; 'peak' is the most resident during the phase)")
        print("| phase | peak | resident after | of it mapped files | malloc: free kept | in use |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            heap = [
                "-" if row[k] is None else f"{row[k] / gb:.2f}" for k in ("free_held", "in_use")
            ]
            print(
                f"| {row['phase']} | {row['peak'] / gb:.2f} | {row['rss'] / gb:.2f} | "
                f"{row['file'] / gb:.2f} | " + " | ".join(heap) + " |"
            )
        print(f"  {label}: " + peak_split(rows))


def peak_split(rows: list[dict]) -> str:
    """'peak 2.54 GB in <phase> = 0.42 imports + ... + 0.61 transient in the phase'."""
    top = max(range(len(rows)), key=lambda i: rows[i]["peak"])
    parts, before = [], 0
    for row in rows[:top]:
        parts.append(f"{(row['rss'] - before) / 1e9:+.2f} {row['phase'].split(':')[0]}")
        before = row["rss"]
    parts.append(f"{(rows[top]['peak'] - before) / 1e9:+.2f} transient in the phase")
    kept = rows[top - 1] if top else rows[0]
    extra = f"; going in, {kept['file'] / 1e9:.2f} GB were mapped file pages"
    if kept["free_held"] is not None:
        extra += f" and {kept['free_held'] / 1e9:.2f} GB freed memory malloc kept"
    return (
        f"peak {rows[top]['peak'] / 1e9:.2f} GB in '{rows[top]['phase']}' = "
        + " ".join(parts)
        + extra
    )


# --- GPU model and report ---------------------------------------------------------------------


def build_gpu_model(path: Path, shape=None) -> str:
    """A Qwen2-0.5B-shaped causal LM (or ``shape``, a ``ModelShape``) with random weights, and
    SmolLM2's tokenizer (ids fit)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from lit_dpo.preflight.memory import QWEN2_0_5B_INSTRUCT
    from lit_dpo.sources import resolve_model

    shape = shape or QWEN2_0_5B_INSTRUCT
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(CPU["model"]), trust_remote_code=False)
    config = Qwen2Config(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def model_flops_per_pair(config: dict, lengths: list[int]) -> float:
    """FLOPs of the plain DPO computation on one pair's two sequences of ``lengths`` tokens.

    Policy forward (2 per weight and token), its backward to the inputs (2 more: the base is
    frozen, the LoRA weight gradients are negligible) and the reference forward (2): 6 per weight
    and token, plus causal attention. Recomputation (checkpointing) is not counted, and neither is
    work a technique skips: this is the work of the task, so skipping some raises the figure.
    """
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q = config["num_attention_heads"] * head_dim
    kv = config["num_key_value_heads"] * head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * config["intermediate_size"]
    weights = layers * per_layer + config["vocab_size"] * hidden
    total = 0.0
    for n in lengths:
        attention = 2 * 2 * layers * q * n * n / 2  # QK^T and AV, causal half
        total += 3 * (2 * weights * n + attention)
    return total


def report(settings: dict, results: list, peak_tflops: float | None, out: Path | None) -> None:
    """The table, and the summary line of the first lit-dpo run against TRL."""
    rows = {}
    for label, spec, r in results:
        rows[label] = {
            "pairs/s": spec["timed_pairs"] / r["timed_s"],
            "tokens/s": spec["timed_tokens"] / r["timed_s"],
            "cpu s/pair": r["timed_cpu_s"] / spec["timed_pairs"],
            "peak GB": r["peak_bytes"] / 1e9,
            "first loss": r["first_loss"],
            "setup s": r["setup_s"],
            "wall s": r["wall_s"],
        }
        if settings["gpu"]:
            rows[label]["MFU %"] = _mfu(settings, spec, r, peak_tflops)
    columns = list(next(iter(rows.values())))
    print("\n| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, row in rows.items():
        cells = ["-" if v is None else f"{v:.4g}" for v in row.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = {label: r for label, _, r in results}
        out.write_text(json.dumps({"settings": settings, "rows": rows, "raw": raw}, indent=1))
    if "lit-dpo" in rows and "TRL" in rows:
        lit, trl = rows["lit-dpo"], rows["TRL"]
        print(
            f"speedup={lit['pairs/s'] / trl['pairs/s']:.3f} "
            f"memory_ratio={lit['peak GB'] / trl['peak GB']:.3f} "
            f"loss_delta={abs(lit['first loss'] - trl['first loss']):.2e}"
        )
    raw = {label: r for label, _, r in results}
    for family in OBJECTIVES:
        lit, trl = rows.get(f"lit-dpo {family}"), rows.get(f"TRL {family}")
        if lit and trl:
            line = (
                f"{family}: speedup={lit['pairs/s'] / trl['pairs/s']:.3f} "
                f"memory_ratio={lit['peak GB'] / trl['peak GB']:.3f} "
                f"loss_delta={abs(lit['first loss'] - trl['first loss']):.2e}"
            )
            lit_kl = raw[f"lit-dpo {family}"].get("first_kl_mean")
            trl_kl = raw[f"TRL {family}"].get("first_kl_mean")
            if lit_kl is not None and trl_kl is not None:
                # the first batch's mean KL-row log-ratio before the clamp at 0: the same KL rows
                # scored alike, even where the baseline is clamped and the loss does not show it
                line += f" kl_delta={abs(lit_kl - trl_kl):.2e} (first kl mean {lit_kl:.4g})"
            print(line)


def _mfu(settings: dict, spec: dict, result: dict, peak_tflops: float | None) -> float | None:
    """Model FLOPs (of the plain computation) per second over the GPU's dense bf16 peak, in %."""
    config = json.loads((Path(settings["model_path"]) / "config.json").read_text())
    start = settings["warmup"] * settings["batch_size"]
    if "kl_ids" in spec:  # KTO: a completion and its KL row
        sequences = [
            [len(p["prompt_ids"]) + len(p["completion_ids"]), len(p["prompt_ids"]) + len(kl)]
            for p, kl in zip(spec["ids"][start:], spec["kl_ids"][start:], strict=True)
        ]
    else:
        sequences = [
            [len(p["prompt_ids"]) + len(p[s]) for s in ("chosen_ids", "rejected_ids")]
            for p in spec["ids"][start:]
        ]
    flops = sum(model_flops_per_pair(config, lengths) for lengths in sequences)
    device = result["device"]
    peak = peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device), None)
    return 100 * flops / result["timed_s"] / (peak * 1e12) if peak else None


if __name__ == "__main__":
    main()
