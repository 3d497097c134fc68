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

This file holds the settings and the command line; its sibling modules do the rest:
``bench_work.py`` and ``bench_kto.py`` (the pairs and batches), ``bench_lit.py`` and
``bench_trl.py`` (the two sides), ``bench_model.py`` (the models), ``bench_measure.py`` (timing
and memory) and ``bench_report.py`` (what is printed).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tools"), str(REPO)]
# first: its clock starts before the heavy imports, so the wall time includes them
import bench_measure  # noqa: E402, F401, I001  (a sibling script, found through sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

from bench_lit import run_lit  # noqa: E402
from bench_model import SMOLLM2, build_gpu_model  # noqa: E402
from bench_report import print_breakdown, report  # noqa: E402
from bench_trl import run_trl  # noqa: E402
from bench_work import plan_work  # noqa: E402

CPU = {
    "model": SMOLLM2,
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
    report(settings, results, args.peak_tflops, args.out, OBJECTIVES)


def _parse_setting(item: str) -> tuple[str, object]:
    import yaml

    key, _, value = item.partition("=")
    if not key.startswith(("model.", "data.")) or not _:
        raise SystemExit(f"--lit {item!r}: expected model.NAME=VALUE or data.NAME=VALUE")
    return key, yaml.safe_load(value)


# --- each run in its own process --------------------------------------------------------------


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


if __name__ == "__main__":
    main()
