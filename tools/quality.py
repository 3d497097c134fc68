#!/usr/bin/env python3
"""How much a run learns from real human preferences within a fixed CPU budget (``make quality``).

Trains on the train part of a folder of real preference pairs (by default
``../shared/data/hh_harmless_dev``: Anthropic HH-RLHF harmless-base, ``train.jsonl`` and
``test.jsonl``) and evaluates the adapter on the held-out part with ``lit-dpo compare``'s
evaluator (``quality_eval.py``: the same tokenization and scoring for every run, TRL's included):

- log-prob preference accuracy of the reference (adapters off) and the policy, summed and per
  token; implicit-reward accuracy and margin, ``beta * (log p_policy - log p_reference)``; each
  accuracy with its 95% bootstrap interval over pairs, and every pair's outcome kept;
- perplexity of the chosen replies under the reference and the policy;
- optionally the mean length of greedy answers to held-out prompts;
- the fit's CPU time, wall time, and whether the health alarms saw the chosen log-probs fall.

The budget is CPU time (user + system, all threads, of the training process), not wall time: the
machines this runs on are shared, and CPU seconds are what a run costs whatever else runs beside
it. A run that reaches the budget stops after that step (the adapter of that step is evaluated).
Every child runs with ``--threads`` torch threads (default 1): one thread spends the fewest CPU
seconds per step, and two runs then share a 2-core machine without slowing each other's counts.

Splits: ``--folds K`` (choose settings here) pools the development data (``train.jsonl`` and
``test.jsonl``), cuts it into K seeded disjoint parts, and trains K runs, fold k on a sample of
the other parts (``data.train_size`` of the config) evaluated on part k; their held-out results
are pooled. ``--split dev`` trains on a seeded part of ``train.jsonl`` and evaluates on the other
300 pairs; ``--split test`` trains on ``train.jsonl`` and evaluates on ``test.jsonl`` (the old
final split, retired: it was read several times). Rows lit-dpo refuses (HH has a few with two
assistant turns in a row) are dropped for both sides, so TRL and lit-dpo see the same pairs.

    python tools/quality.py --folds 5 --label recipe          # configs/quality_cpu.yaml, pooled
    python tools/quality.py --folds 5 --label dpo --versus recipe -- --model.objective.sft_weight 0
    python tools/quality.py --diff recipe dpo                 # paired difference, recorded runs
    python tools/quality.py --trl --measure_budget            # TRL's tutorial epoch: the budget
    python tools/quality.py --quick                           # a few minutes, for CI-size checks

Every run (every fold) appends one JSON line to ``--results`` (``tools/quality_results.jsonl``);
``quality_records.py`` reads them back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tools"), str(REPO)]
import quality_records as records  # noqa: E402  (a sibling script, found through sys.path)
import yaml  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "hh_harmless_dev"
RESULTS = REPO / "tools" / "quality_results.jsonl"
# What TRL's DPOTrainer needs for one epoch of 256 pairs (max length 320, batch 4, the tutorial's
# settings) in CPU seconds of its process, one thread: 4,014 s measured 2026-12-02 on a 2-core
# AMD EPYC machine (`--trl --label tutorial --split test --budget 100000`; docs/quality.md). Used
# where no `--measure_budget` line of this machine is recorded.
DEFAULT_BUDGET = 4000.0
UNLIMITED = 1e9
DEV_HELD_OUT = 300
SEED = 42
# The tutorial's settings, for TRL and as the starting point of the study.
TUTORIAL = {"pairs": 256, "max_length": 320, "batch_size": 4, "beta": 0.1, "lr": 5e-4, "lora_r": 16}
# length limit of the greedy answers whose mean length is reported (--generations)
ANSWER_TOKENS = 96
QUICK = {"pairs": 32, "eval_pairs": 32, "max_length": 192, "budget": 600.0}
# The lit-dpo fit settings this script sets or reads, by config key: the one place to change when
# a key moves (as model.beta became model.objective.beta in lit-dpo 0.3).
KEYS = {
    "train_size": "data.train_size",
    "max_length": "data.max_length",
    "max_prompt_length": "data.max_prompt_length",
    "beta": "model.objective.beta",
    "epochs": "trainer.max_epochs",
    "seed": "data.seed",
}


def override(name: str, value: object) -> str:
    """The ``lit-dpo fit`` flag that sets setting ``name`` (a key of :data:`KEYS`)."""
    return f"--{KEYS[name]}={value}"


def configured(config_path: str, overrides: list[str], name: str, default: object = None) -> object:
    """Setting ``name`` (a key of :data:`KEYS`) as a fit will see it: the last ``--key=value`` or
    ``--key value`` override, else the config file's value, else ``default``."""
    flag, value = f"--{KEYS[name]}", None
    for n, item in enumerate(overrides):
        if item.startswith(flag + "="):
            value = item.split("=", 1)[1]
        elif item == flag and n + 1 < len(overrides):
            value = overrides[n + 1]
    if value is not None:
        return yaml.safe_load(value)
    try:
        return setting(yaml.safe_load((REPO / config_path).read_text()), name)
    except SystemExit:
        if default is None:
            raise
        return default


def setting(config: dict, name: str) -> object:
    """Setting ``name`` (a key of :data:`KEYS`) of a fit's saved ``config.yaml``."""
    value = config
    for part in KEYS[name].split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"quality: the fit's config.yaml has no {KEYS[name]}; "
                             "update KEYS in tools/quality.py")
        value = value[part]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="run", help="name of this run in the results")
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--folds", type=int, help="cross-validate on K folds of dev + test")
    parser.add_argument("--only_folds", type=int, nargs="+", metavar="K",
                        help="with --folds: run these folds only (0-based), e.g. to resume; "
                             "with --table RUN... or --diff: compare on these folds only")
    parser.add_argument("--versus", metavar="RUN",
                        help="after the run: its paired difference against this recorded run; "
                             "with --table RUN...: the baseline of the table")
    parser.add_argument("--config", default="configs/quality_cpu.yaml", help="lit-dpo fit config")
    parser.add_argument("--trl", action="store_true", help="train TRL's DPOTrainer instead")
    parser.add_argument("--measure_budget", action="store_true",
                        help="with --trl: TRL's whole tutorial epoch, unbudgeted; its CPU s "
                             "become the default budget of later runs on this machine")
    parser.add_argument("--quick", action="store_true", help="a few minutes, small and short")
    parser.add_argument("--helpful", type=int, default=0, metavar="N",
                        help="mix N pairs of the embedded UltraFeedback-shaped set (helpful "
                             "questions) into each run's training pairs")
    parser.add_argument("--sft_parts", choices=["all", "helpful"], default="all",
                        help="with --helpful: which pairs' chosen replies the SFT term learns")
    parser.add_argument("--desirable_keep", type=float, metavar="F",
                        help="KTO's imbalance experiment: train on the fit's pairs as unpaired "
                             "rows, keeping only this share of the desirable ones")
    parser.add_argument("--budget", type=float, help="CPU seconds for training (default: TRL's)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train/test .jsonl")
    parser.add_argument("--eval_pairs", type=int, help="held-out pairs evaluated (default: all)")
    parser.add_argument("--generations", type=int, default=0, help="held-out prompts answered")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child")
    parser.add_argument("overrides", nargs="*", help="after --: lit-dpo fit settings")
    parser.add_argument("--table", nargs="*", metavar="RUN",
                        help="print the results file as the docs' table, and run nothing; with "
                             "RUNs and --versus BASE: those runs against BASE on shared pairs")
    parser.add_argument("--diff", nargs=2, metavar="RUN",
                        help="paired difference of two recorded runs (LABEL or LABEL@SPLIT) "
                             "on the same pairs, and run nothing")
    parser.add_argument("--answer_lengths", nargs="+", metavar="LABEL",
                        help="add the mean length of greedy answers to --generations held-out "
                             "prompts to these recorded runs of --split (their adapters must "
                             "still be under --out), and train nothing")
    args = parser.parse_args()
    if args.table is not None or args.diff:
        results = records.on_folds(records.load(args.results), args.only_folds)
    if args.table is not None:
        if args.table and not args.versus:
            parser.error("--table RUN... compares runs: name the baseline with --versus BASE")
        print(records.versus_table(results, args.table, args.versus) if args.table
              else records.table(results))
        return
    if args.diff:
        print(records.diff(results, *args.diff))
        return
    if args.answer_lengths:
        add_answer_lengths(args)
        return
    if args.measure_budget and not args.trl:
        parser.error("--measure_budget measures TRL's epoch: add --trl")
    if args.sft_parts != "all" and not args.helpful:
        parser.error("--sft_parts helpful needs --helpful N (the helpful pairs it trains on)")
    if args.desirable_keep is not None and (args.trl or not 0 < args.desirable_keep <= 1):
        parser.error("--desirable_keep is a share in (0, 1] of a lit-dpo run's desirable rows")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    if args.measure_budget:
        budget = UNLIMITED
    else:
        budget = args.budget or (QUICK["budget"] if args.quick else
                                 measured_budget(records.load(args.results)))
    if not args.folds:
        run_one(args, args.split, prepare_data(args.data, args.split, args.out / "data"), budget)
        return
    if args.folds < 2:
        parser.error(f"--folds needs at least 2 parts, got {args.folds}")
    outside = [k for k in args.only_folds or [] if not 0 <= k < args.folds]
    if outside:
        parser.error(f"--only_folds {outside} are not folds of --folds {args.folds} (0-based)")
    for fold in args.only_folds or range(args.folds):
        data = prepare_folds(args.data, args.folds, fold, args.out / "data")
        run_one(args, "cv", data, budget, {"folds": args.folds, "fold": fold})
    results = records.load(args.results)
    print(records.pooled_summary(records.select(results, f"{args.label}@cv")))
    if args.versus:
        print(records.diff(results, args.versus, f"{args.label}@cv"))


def run_one(args: argparse.Namespace, split: str, data: Path, budget: float,
            fold: dict | None = None) -> dict:
    """Train and evaluate one run on ``data``; append its JSON line to the results file."""
    side = "trl" if args.trl else "lit"
    part = f"-fold{fold['fold']}of{fold['folds']}" if fold else ""
    # one folder per side, label and fold: runs never collide
    run_dir = args.out / f"{split}-{side}-{args.label}{part}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    print(f"quality: {args.label} on the {split} split{part} ({data}), budget {budget:.0f} CPU s",
          flush=True)
    if args.trl:
        settings = dict(TUTORIAL, **({"pairs": QUICK["pairs"]} if args.quick else {}))
        if args.quick:
            settings["max_length"] = QUICK["max_length"]
        fit = run_trl(data, run_dir, settings, budget)
    else:
        extra = list(args.overrides)
        if args.quick:
            length = QUICK["max_length"]
            extra = [override("train_size", QUICK["pairs"]), override("max_length", length),
                     override("max_prompt_length", length // 2), *extra]
        if args.desirable_keep is not None:
            train_size = configured(args.config, extra, "train_size")
            data, rows = prepare_imbalanced(data, int(train_size), args.desirable_keep,
                                            int(configured(args.config, extra, "seed", 42)))
            extra.append(override("train_size", rows))
        if args.helpful:
            extra = with_helpful_mixture(extra, data, args)
        fit = run_lit(data, run_dir, args.config, extra, budget)
    eval_pairs = args.eval_pairs or (QUICK["eval_pairs"] if args.quick else None)
    evaluation = evaluate(run_dir / "adapter", data, run_dir, fit["beta"], fit["max_length"],
                          eval_pairs, args.generations)
    record = {
        "label": args.label,
        "split": split,
        **(fold or {}),
        "side": "trl" if args.trl else "lit-dpo",
        "quick": args.quick,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "budget_cpu_s": budget,
        "budget_measurement": args.measure_budget,
        "threads": args.threads,
        **fit,
        **evaluation,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")
    print(summary(record), flush=True)
    return record


def machine() -> str:
    """The CPU model and core count: the budget is re-measured per kind of machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def measured_budget(results: list[dict]) -> float:
    """TRL's CPU seconds for its tutorial epoch on this kind of machine (the latest
    ``--measure_budget`` run; a cross-validated one: the mean over its folds, whose pairs differ
    in length), else :data:`DEFAULT_BUDGET`."""
    here = machine()
    measured = [r for r in results if r.get("budget_measurement") and r.get("machine") == here
                and not r.get("stopped_by_budget") and not r.get("quick")]
    if measured:
        latest = measured[-1]
        if latest["split"] != "cv":
            return round(latest["cpu_s"])
        folds = {r["fold"]: r["cpu_s"] for r in measured
                 if (r["label"], r["split"], r.get("folds")) == (
                     latest["label"], "cv", latest["folds"])}
        return round(sum(folds.values()) / len(folds))
    print(f"quality: no --trl --measure_budget line for {here}; budget {DEFAULT_BUDGET:.0f} CPU s "
          "(measured 2026-12-02 on a 2-core AMD EPYC)", flush=True)
    return DEFAULT_BUDGET


def summary(record: dict) -> str:
    """One run's numbers for the terminal, accuracies with their 95% intervals."""
    held = record["held_out"]

    def cell(key: str) -> str:
        low, high = held.get(f"{key}/ci_low"), held.get(f"{key}/ci_high")
        interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
        return f"{held[key]:.3f}{interval}"

    rows = [("log-prob accuracy, summed", "logps_accuracy"),
            ("log-prob accuracy, per token", "logps_accuracy_per_token")]
    lines = [f"\n{record['label']} ({record['side']}, {record['split']} split"
             f"{', fold ' + str(record['fold']) if 'fold' in record else ''}): "
             f"{record['cpu_s']:.0f} CPU s, {record['wall_s']:.0f} s wall, "
             f"{int(held['pairs'])} held-out pairs",
             f"{'':32}{'reference':>22}{'policy':>22}"]
    lines += [f"{label:32}{cell(key + '/reference'):>22}{cell(key + '/policy'):>22}"
              for label, key in rows]
    lines.append(f"{'chosen perplexity':32}{held['perplexity_chosen/reference']:22.2f}"
                 f"{held['perplexity_chosen/policy']:22.2f}")
    lines.append(f"{'implicit-reward accuracy':32}{'':22}{cell('rewards/accuracies'):>22}"
                 f"  (margin {held['rewards/margins']:.3f})")
    if record.get("alarms"):
        lines.append("alarms: " + "; ".join(a.split(": ", 1)[-1][:80] for a in record["alarms"]))
    return "\n".join(lines)


# --- data --------------------------------------------------------------------------------------


def clean_rows(path: Path) -> list[str]:
    """The lines of a JSONL file of HH-RLHF rows that lit-dpo accepts."""
    from lit_dpo.data.pairs import extract_pair
    from lit_dpo.errors import RowError

    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            extract_pair(json.loads(line), f"{path.name} line {number}", "hh-rlhf")
        except RowError:
            continue
        kept.append(line)
    return kept


def fold_parts(count: int, folds: int, seed: int = SEED) -> list[list[int]]:
    """Indices ``0..count-1`` cut into ``folds`` disjoint parts that cover them all, in a seeded
    random order; part sizes differ by at most one.

    Raises:
        ValueError: fewer than 2 folds, or more folds than items.
    """
    if not 2 <= folds <= count:
        raise ValueError(f"need 2 <= folds <= items, got {folds} folds of {count}")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return [order[k::folds] for k in range(folds)]


def prepare_folds(source: Path, folds: int, fold: int, out: Path) -> Path:
    """A folder whose ``test.jsonl`` is part ``fold`` of the development data (``train.jsonl``
    and ``test.jsonl`` of ``source``, pooled) and whose ``train.jsonl`` is the other parts; the
    fit samples its ``data.train_size`` pairs from them (seeded)."""
    rows = clean_rows(source / "train.jsonl") + clean_rows(source / "test.jsonl")
    parts = fold_parts(len(rows), folds)
    train = [rows[i] for k, part in enumerate(parts) if k != fold for i in part]
    test = [rows[i] for i in parts[fold]]
    return _write_split(out / f"cv{folds}-fold{fold}", train, test)


def with_helpful_mixture(extra: list[str], data: Path, args: argparse.Namespace) -> list[str]:
    """``extra`` (the fit's own overrides) followed by the helpful mixture's flags: they come last
    so that the mixture's combined ``data.train_size`` wins over a ``--data.train_size N`` the
    user gave for the HH part (which would otherwise cut the mixture back to ``N`` pairs)."""
    train_size = int(configured(args.config, extra, "train_size"))
    return [*extra, *mixture_flags(data, train_size, args.helpful, args.sft_parts)]


def mixture_flags(data: Path, train_size: int, helpful: int, sft_parts: str) -> list[str]:
    """``lit-dpo fit`` flags that train on a mixture: the ``train_size`` pairs of ``data`` a
    single-dataset fit would take (the same seeded draw) and ``helpful`` pairs of the embedded
    UltraFeedback-shaped set; with ``sft_parts`` ``helpful`` the SFT term leaves the HH part out.
    The mixture replaces ``data.dataset`` and its splits."""
    mixture = [
        {"dataset": str(data), "train_split": "train", "val_split": "test",
         "max_pairs": train_size, "sft": sft_parts == "all"},
        {"dataset": "embedded:ultrafeedback-mini", "max_pairs": helpful},
    ]
    return [f"--data.mixture={json.dumps(mixture)}", override("train_size", train_size + helpful)]


def prepare_data(source: Path, split: str, out: Path) -> Path:
    """A folder with ``train.jsonl`` and ``test.jsonl`` of rows lit-dpo accepts."""
    train = clean_rows(source / "train.jsonl")
    if split == "dev":
        random.Random(SEED).shuffle(train)
        train, test = train[:-DEV_HELD_OUT], train[-DEV_HELD_OUT:]
    else:
        test = clean_rows(source / "test.jsonl")
    return _write_split(out / split, train, test)


def prepare_imbalanced(folder: Path, train_size: int, keep: float,
                       seed: int) -> tuple[Path, int]:
    """A sibling of ``folder``: its train pairs as unpaired rows keeping a ``keep`` share of the
    desirable ones (``quality_unpaired``), its held-out pairs unchanged.

    Returns:
        the folder, and its number of training rows (the fit's new ``data.train_size``).
    """
    from quality_unpaired import imbalanced_train

    train = imbalanced_train(folder, train_size, keep, seed)
    test = (folder / "test.jsonl").read_text().splitlines()
    out = folder.with_name(f"{folder.name}-desirable{keep:g}-of{train_size}")
    return _write_split(out, train, test), len(train)


def _write_split(folder: Path, train: list[str], test: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        text = "\n".join(rows) + "\n"
        path = folder / f"{name}.jsonl"
        # rewritten only when changed: the datasets cache keys on the file
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
        "beta": setting(settings, "beta"),
        "max_length": setting(settings, "max_length"),
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
    """The held-out pairs scored pair by pair (``quality_eval.py``: compare's evaluator), and
    with ``generations`` the mean length of greedy answers (``lit-dpo compare``)."""
    held_out = sum(1 for _ in (data / "test.jsonl").open())
    scored = run_dir / "held_out.json"
    seconds, _ = _run([sys.executable, str(Path(__file__).with_name("quality_eval.py")),
                       str(adapter), str(data), str(eval_pairs or held_out), str(beta),
                       str(max_length), str(scored)], run_dir / "eval.log")
    result = {"eval_cpu_s": seconds, **json.loads(scored.read_text())}
    if generations:
        prompts = run_dir / "prompts.json"
        prompts.write_text(json.dumps(_held_out_prompts(data / "test.jsonl", generations)))
        _run([sys.executable, "-m", "lit_dpo", "compare", f"--adapter={adapter}",
              f"--prompts={prompts}", "--val_size=0", "--edge_cases=false",
              f"--max_new_tokens={ANSWER_TOKENS}", f"--max_length={max_length}",
              f"--out={run_dir / 'compare'}"], run_dir / "compare.log")
        report = json.loads((run_dir / "compare" / "compare.json").read_text())
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
    lines = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    for label in args.answer_lengths:
        matches = [r for r in lines if r["label"] == label and r["split"] == args.split]
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
        lines = [json.loads(line) for line in args.results.read_text().splitlines() if line]
        for r in lines:
            if (r["label"], r["split"], r["date"]) == (label, args.split, record["date"]):
                r.update({f"answer_tokens/{m}": sum(v) / len(v) for m, v in lengths.items()})
                r["answer_prompts"] = args.generations
                print(f"{label}: answer tokens reference {r['answer_tokens/reference']:.1f}, "
                      f"policy {r['answer_tokens/policy']:.1f}", flush=True)
        args.results.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))


def _held_out_prompts(path: Path, count: int) -> list[list[dict[str, str]]]:
    from lit_dpo.data.pairs import extract_pair

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [extract_pair(row, "held out", "hh-rlhf").prompt for row in rows[:count]]


if __name__ == "__main__":
    main()
