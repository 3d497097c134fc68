#!/usr/bin/env python3
"""How much a run learns from real human preferences within a fixed CPU budget (``make quality``).

Trains on the train part of a folder of real preference pairs (by default
``../shared/data/hh_harmless_dev``: Anthropic HH-RLHF harmless-base, ``train.jsonl`` and
``test.jsonl``) and evaluates the adapter on the held-out part with ``lit-dpo compare``'s
evaluator (the same tokenization and scoring for every run, TRL's included):

- log-prob preference accuracy of the reference (adapters off) and the policy, summed and per
  token;
- implicit-reward accuracy and margin, ``beta * (log p_policy - log p_reference)``;
- perplexity of the chosen replies under the reference and the policy;
- optionally the mean length of greedy answers to held-out prompts;
- the fit's CPU time, wall time, and whether the health alarms saw the chosen log-probs fall.

The budget is CPU time (user + system, all threads, of the training process), not wall time: the
machines this runs on are shared, and CPU seconds are what a run costs whatever else runs beside
it. A run that reaches the budget stops after that step (the adapter of that step is evaluated).
Every child runs with ``--threads`` torch threads (default 1): one thread spends the fewest CPU
seconds per step, and two runs then share a 2-core machine without slowing each other's counts.

Splits: ``--split dev`` trains on a seeded part of ``train.jsonl`` and evaluates on the rest
(choose settings here); ``--split test`` trains on ``train.jsonl`` and evaluates on ``test.jsonl``
(the final tables only). Rows lit-dpo refuses (HH has a few with two assistant turns in a row) are
dropped for both sides, so TRL and lit-dpo see the same pairs.

    python tools/quality.py --label recipe            # configs/quality_cpu.yaml on the dev split
    python tools/quality.py --trl --label tutorial    # TRL's DPOTrainer, the tutorial's settings
    python tools/quality.py --quick                   # a few minutes, for CI-size checks
    python tools/quality.py --label lr1e-3 -- --model.optimizer.lr 1e-3 --model.beta 0.2

Every run appends one JSON line to ``--results`` (``tools/quality_results.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hh_harmless_dev"
RESULTS = REPO / "tools" / "quality_results.jsonl"
# What TRL's DPOTrainer needs for one epoch of 256 pairs (max length 320, batch 4, the tutorial's
# settings) in CPU seconds of its process, one thread: 4,014 s measured 2026-12-02 on a 2-core
# AMD EPYC machine (`--trl --label tutorial --split test --budget 100000`; docs/quality.md).
DEFAULT_BUDGET = 4000.0
DEV_HELD_OUT = 300
SEED = 42
# The tutorial's settings, for TRL and as the starting point of the study.
TUTORIAL = {"pairs": 256, "max_length": 320, "batch_size": 4, "beta": 0.1, "lr": 5e-4, "lora_r": 16}
# length limit of the greedy answers whose mean length is reported (--generations)
ANSWER_TOKENS = 96
QUICK = {"pairs": 32, "eval_pairs": 32, "max_length": 192, "budget": 600.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="run", help="name of this run in the results")
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--config", default="configs/quality_cpu.yaml", help="lit-dpo fit config")
    parser.add_argument("--trl", action="store_true", help="train TRL's DPOTrainer instead")
    parser.add_argument("--quick", action="store_true", help="a few minutes, small and short")
    parser.add_argument("--budget", type=float, help="CPU seconds for training (default: TRL's)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train/test .jsonl")
    parser.add_argument("--eval_pairs", type=int, help="held-out pairs evaluated (default: all)")
    parser.add_argument("--generations", type=int, default=0, help="held-out prompts answered")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child")
    parser.add_argument("overrides", nargs="*", help="after --: lit-dpo fit settings")
    parser.add_argument("--table", action="store_true",
                        help="print the results file as the docs' table, and run nothing")
    parser.add_argument("--answer_lengths", nargs="+", metavar="LABEL",
                        help="add the mean length of greedy answers to --generations held-out "
                             "prompts to these recorded runs of --split (their adapters must "
                             "still be under --out), and train nothing")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.results.read_text().splitlines() if line]))
        return
    if args.answer_lengths:
        add_answer_lengths(args)
        return
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    budget = args.budget or (QUICK["budget"] if args.quick else DEFAULT_BUDGET)
    eval_pairs = args.eval_pairs or (QUICK["eval_pairs"] if args.quick else None)
    # one folder per side and label: a TRL run and a lit-dpo run of the same label never collide
    run_dir = args.out / f"{args.split}-{'trl' if args.trl else 'lit'}-{args.label}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data = prepare_data(args.data, args.split, args.out / "data")
    print(f"quality: {args.label} on the {args.split} split ({data}), budget {budget:.0f} CPU s")

    if args.trl:
        settings = dict(TUTORIAL, **({"pairs": QUICK["pairs"]} if args.quick else {}))
        if args.quick:
            settings["max_length"] = QUICK["max_length"]
        fit = run_trl(data, run_dir, settings, budget)
    else:
        extra = list(args.overrides)
        if args.quick:
            length = QUICK["max_length"]
            extra += [f"--data.train_size={QUICK['pairs']}", f"--data.max_length={length}",
                      f"--data.max_prompt_length={length // 2}"]
        fit = run_lit(data, run_dir, args.config, extra, budget)
    beta = fit["beta"]
    evaluation = evaluate(run_dir / "adapter", data, run_dir, beta, fit["max_length"], eval_pairs,
                          args.generations)
    record = {
        "label": args.label,
        "split": args.split,
        "side": "trl" if args.trl else "lit-dpo",
        "quick": args.quick,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "budget_cpu_s": budget,
        "threads": args.threads,
        **fit,
        **evaluation,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")
    print(summary(record))


# --- data --------------------------------------------------------------------------------------


def prepare_data(source: Path, split: str, out: Path) -> Path:
    """A folder with ``train.jsonl`` and ``test.jsonl`` of rows lit-dpo accepts."""
    sys.path.insert(0, str(REPO))
    from lit_dpo.data.pairs import extract_pair
    from lit_dpo.errors import RowError

    def clean(path: Path) -> list[str]:
        kept = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                extract_pair(json.loads(line), f"{path.name} line {number}", "hh-rlhf")
            except RowError:
                continue
            kept.append(line)
        return kept

    train = clean(source / "train.jsonl")
    if split == "dev":
        random.Random(SEED).shuffle(train)
        train, test = train[:-DEV_HELD_OUT], train[-DEV_HELD_OUT:]
    else:
        test = clean(source / "test.jsonl")
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        text = "\n".join(rows) + "\n"
        path = folder / f"{name}.jsonl"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return folder


# --- training ----------------------------------------------------------------------------------


def run_lit(data: Path, run_dir: Path, config: str, overrides: list[str], budget: float) -> dict:
    """``lit-dpo fit`` in its own process, stopped by the CPU budget; its costs and settings."""
    args = [
        sys.executable, "-m", "lit_dpo", "fit", f"--config={config}",
        f"--data.dataset={data}", "--data.train_split=train", "--data.val_split=test",
        f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        # the held-out evaluation runs after the fit, with compare's evaluator, outside the budget
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks+=quality_budget.CPUBudget", f"--trainer.callbacks.seconds={budget}",
        *overrides,
    ]
    log = run_dir / "fit.log"
    seconds, wall = _run(args, log)
    text = log.read_text()
    config_path = next(run_dir.rglob("config.yaml"))
    import yaml

    settings = yaml.safe_load(config_path.read_text())
    alarms = [line for line in text.splitlines() if "health alarm at step" in line]
    return {
        "cpu_s": seconds,
        "wall_s": wall,
        "stopped_by_budget": "stopped by the CPU budget" in text,
        "steps": _last_step(run_dir),
        "beta": settings["model"]["beta"],
        "max_length": settings["data"]["max_length"],
        "settings": {"model": settings["model"], "data": settings["data"],
                     "trainer": {k: settings["trainer"].get(k) for k in
                                 ("max_epochs", "max_steps", "accumulate_grad_batches")}},
        "overrides": overrides,
        "alarms": alarms,
        "displacement_alarm": any("likelihood displacement" in a for a in alarms),
    }


def run_trl(data: Path, run_dir: Path, settings: dict, budget: float) -> dict:
    """TRL's DPOTrainer with the tutorial's settings, in its own process; its costs."""
    spec = run_dir / "trl_spec.json"
    spec.write_text(json.dumps({"data": str(data), "out": str(run_dir / "adapter"),
                                "budget": budget, **settings}))
    seconds, wall = _run([sys.executable, str(Path(__file__).with_name("quality_trl.py")),
                          str(spec)], run_dir / "fit.log")
    done = json.loads((run_dir / "adapter" / "trl_run.json").read_text())
    return {"cpu_s": seconds, "wall_s": wall, "beta": settings["beta"],
            "max_length": settings["max_length"], "settings": settings, **done}


def _run(args: list[str], log: Path) -> tuple[float, float]:
    """Run a child with its output in ``log``; its CPU seconds (user + system) and wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tools"), str(REPO)]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{args[1:4]} failed ({done.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu, 1), round(wall, 1)


def _last_step(run_dir: Path) -> int | None:
    import csv

    files = sorted(run_dir.rglob("metrics.csv"))
    if not files:
        return None
    with files[-1].open() as file:
        steps = [int(float(row["step"])) for row in csv.DictReader(file) if row.get("train/loss")]
    return max(steps) + 1 if steps else None


# --- evaluation --------------------------------------------------------------------------------


def evaluate(adapter: Path, data: Path, run_dir: Path, beta: float, max_length: int,
             eval_pairs: int | None, generations: int) -> dict:
    """``lit-dpo compare`` on the held-out pairs (and prompts): the numbers of one row."""
    held_out = sum(1 for _ in (data / "test.jsonl").open())
    args = [sys.executable, "-m", "lit_dpo", "compare", f"--adapter={adapter}",
            f"--dataset={data}", f"--val_size={eval_pairs or held_out}", f"--beta={beta}",
            f"--max_length={max_length}", "--edge_cases=false", f"--out={run_dir / 'compare'}"]
    if generations:
        prompts = run_dir / "prompts.json"
        prompts.write_text(json.dumps(_held_out_prompts(data / "test.jsonl", generations)))
        args += [f"--prompts={prompts}", f"--max_new_tokens={ANSWER_TOKENS}"]
    seconds, wall = _run(args, run_dir / "compare.log")
    report = json.loads((run_dir / "compare" / "compare.json").read_text())
    result = {"eval_cpu_s": seconds, "held_out": report["heldout"]}
    if generations:
        for side in ("reference", "policy"):
            lengths = [r[side]["tokens"] for r in report["results"]]
            result[f"answer_tokens/{side}"] = sum(lengths) / len(lengths)
        result["answer_prompts"] = len(report["results"])
    return result


def add_answer_lengths(args: argparse.Namespace) -> None:
    """Answer ``--generations`` held-out prompts with the base and each named run's adapter and
    record the mean answer lengths in that run's line of the results file."""
    if not args.generations:
        raise SystemExit("--answer_lengths needs --generations N (how many held-out prompts)")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    data = prepare_data(args.data, args.split, args.out / "data")
    records = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    for label in args.answer_lengths:
        matches = [r for r in records if r["label"] == label and r["split"] == args.split]
        if not matches:
            raise SystemExit(f"no recorded run {label!r} on the {args.split} split")
        record = matches[-1]
        side = "trl" if record["side"] == "trl" else "lit"
        run_dir = args.out / f"{args.split}-{side}-{label}"
        prompts = run_dir / "prompts.json"
        prompts.write_text(json.dumps(_held_out_prompts(data / "test.jsonl", args.generations)))
        out = run_dir / "answers"
        _run([sys.executable, "-m", "lit_dpo", "compare", f"--adapter={run_dir / 'adapter'}",
              f"--prompts={prompts}", "--val_size=0", "--edge_cases=false",
              f"--max_new_tokens={ANSWER_TOKENS}", f"--max_length={record['max_length']}",
              f"--out={out}"], run_dir / "answers.log")
        report = json.loads((out / "compare.json").read_text())
        lengths = {model: [r[model]["tokens"] for r in report["results"]]
                   for model in ("reference", "policy")}
        # read again: a run beside this one may have added its line meanwhile
        records = [json.loads(line) for line in args.results.read_text().splitlines() if line]
        for r in records:
            if (r["label"], r["split"], r["date"]) == (label, args.split, record["date"]):
                r.update({f"answer_tokens/{m}": sum(v) / len(v) for m, v in lengths.items()})
                r["answer_prompts"] = args.generations
                print(f"{label}: answer tokens reference {r['answer_tokens/reference']:.1f}, "
                      f"policy {r['answer_tokens/policy']:.1f}", flush=True)
        args.results.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _held_out_prompts(path: Path, count: int) -> list[list[dict[str, str]]]:
    from lit_dpo.data.pairs import extract_pair

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [extract_pair(row, "held out", "hh-rlhf").prompt for row in rows[:count]]


def summary(record: dict) -> str:
    held = record["held_out"]
    rows = [
        ("log-prob accuracy, summed", "logps_accuracy"),
        ("log-prob accuracy, per token", "logps_accuracy_per_token"),
        ("chosen perplexity", "perplexity_chosen"),
    ]
    lines = [f"\n{record['label']} ({record['side']}, {record['split']} split): "
             f"{record['cpu_s']:.0f} CPU s, {record['wall_s']:.0f} s wall",
             f"{'':32}{'reference':>10}{'policy':>9}"]
    lines += [f"{label:32}{held[key + '/reference']:10.3f}{held[key + '/policy']:9.3f}"
              for label, key in rows]
    lines.append(f"{'implicit-reward accuracy / margin':32}{'':10}"
                 f"{held['rewards/accuracies']:9.3f} / {held['rewards/margins']:.3f}")
    if record.get("alarms"):
        lines.append("alarms: " + "; ".join(a.split(": ", 1)[-1][:80] for a in record["alarms"]))
    return "\n".join(lines)


def table(records: list[dict]) -> str:
    """The results as a markdown table, one row per run in the order they ran."""
    head = ("| run | split | side | CPU s (budget) | steps | log-prob acc. summed ref -> policy "
            "| per token ref -> policy | reward acc. / margin | chosen ppl ref -> policy "
            "| displacement alarm | answer tokens ref -> policy |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in records:
        h = r["held_out"]
        budget = "-" if r["budget_cpu_s"] >= 1e5 else f"{r['budget_cpu_s']:.0f}"
        alarm = r.get("displacement_alarm")
        lines.append(
            f"| {r['label']}{' (quick)' if r.get('quick') else ''} | {r['split']} | {r['side']} "
            f"| {r['cpu_s']:.0f} ({budget}) | {r.get('steps')} "
            f"| {h['logps_accuracy/reference']:.3f} -> {h['logps_accuracy/policy']:.3f} "
            f"| {h['logps_accuracy_per_token/reference']:.3f} -> "
            f"{h['logps_accuracy_per_token/policy']:.3f} "
            f"| {h['rewards/accuracies']:.3f} / {h['rewards/margins']:.3f} "
            f"| {h['perplexity_chosen/reference']:.2f} -> {h['perplexity_chosen/policy']:.2f} "
            f"| {'-' if alarm is None else ('yes' if alarm else 'no')} "
            f"| {_answer_tokens(r)} |"
        )
    return "\n".join(lines)


def _answer_tokens(record: dict) -> str:
    if "answer_tokens/policy" not in record:
        return "-"
    return (f"{record['answer_tokens/reference']:.1f} -> {record['answer_tokens/policy']:.1f} "
            f"({record.get('answer_prompts', '?')} prompts)")


if __name__ == "__main__":
    main()
