"""``lit-dpo sweep``: one fit per combination of settings, all sharing one reference table.

A sweep over settings that leave the reference as it is (beta, learning rate, schedule, objective)
would pay the reference forward of every pair again in every run. Each run here turns
``model.efficiency.precompute_reference`` on: the first run computes the reference log-probs of the
train and validation pairs once and caches them on disk (``lit_dpo.train.reference_table``, keyed by
the reference model and the pairs' token ids), and every later run with the same model and data
reads them instead. A setting that changes the pairs or the reference (``data.max_length``, the
model) gets its own table, as it must.

    lit-dpo sweep --config configs/cpu.yaml --grid '{model.objective.beta: [0.05, 0.1, 0.2]}'
    lit-dpo sweep --config configs/cpu.yaml --out runs/sweep_lr \\
        --grid '{model.optimizer.lr: [1e-4, 5e-4], model.objective.loss_type: [sigmoid, ipo]}'

Each run's fit writes under ``<out>/run_N``; the sweep writes ``sweep.md`` (a table of the
settings and the validation metrics of every run), ``sweep.json`` and ``sweep.png``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_dpo.errors import ConfigError
from lit_dpo.files import write_atomically, write_text_atomically
from lit_dpo.train.reference_table import tables_reused

if TYPE_CHECKING:
    from lit_dpo.cli import FitConfig

METRICS = (
    "val/rewards/accuracies",
    "val/rewards/margins",
    "val/logps_accuracy/policy",
    "val/logps_accuracy_per_token/policy",
    "val/loss",
)


def sweep(
    fit: FitConfig,
    grid: dict[str, list[Any]] | None = None,
    out: str = "runs/sweep",
    metrics: tuple[str, ...] = METRICS,
) -> list[dict[str, Any]]:
    """Run one fit per combination of the grid's values, all sharing one reference table, and
    tabulate their validation metrics. Any fit setting may be given, as in fit.

    Args:
        fit: the fit config every run starts from (``--config`` and any overrides).
        grid: setting -> values; every combination runs, e.g.
            ``{model.objective.beta: [0.05, 0.1], model.optimizer.lr: [1e-4, 5e-4]}``.
        out: folder of the runs (``run_N``) and of ``sweep.md``, ``sweep.json``, ``sweep.png``.
        metrics: validation metrics to tabulate and plot (as in ``fit_metrics.json``).

    Returns:
        One row per run: its settings, metrics, wall time and whether it reused the reference.
    """
    problems = [f"--grid {key}: give a list of values" for key, v in (grid or {}).items() if not v]
    if not grid or problems:
        raise ConfigError(
            "sweep: " + ("; ".join(problems) or "give --grid, the settings and their values")
            + ", e.g. --grid '{model.objective.beta: [0.05, 0.1]}'"
        )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base_config.yaml"
    write_text_atomically(base, fit.dump)
    keys = list(grid)
    rows = []
    combinations = list(itertools.product(*(grid[key] for key in keys)))
    for number, values in enumerate(combinations):
        settings = dict(zip(keys, values, strict=True))
        print(f"sweep: run {number + 1} of {len(combinations)}: {_label(settings)}", flush=True)
        rows.append(_run(fit, base, folder / f"run_{number}", settings, metrics))
    write_text_atomically(folder / "sweep.json", json.dumps(rows, indent=2) + "\n")
    table = sweep_table(rows, keys, metrics)
    write_text_atomically(folder / "sweep.md", table)
    _plot(rows, metrics, folder / "sweep.png")
    print(table, flush=True)
    print(f"written: {folder / 'sweep.md'}, {folder / 'sweep.json'}, {folder / 'sweep.png'}")
    return rows


def _run(
    fit: FitConfig,
    base: Path,
    run_dir: Path,
    settings: dict[str, Any],
    metrics: tuple[str, ...],
) -> dict[str, Any]:
    """One fit in its own process (a fresh start for each, as a user's run would have)."""
    args = [sys.executable, "-m", "lit_dpo", "fit", f"--config={base}"]
    if "model.efficiency.precompute_reference" not in settings:
        args.append("--model.efficiency.precompute_reference=true")
    args.append(f"--trainer.default_root_dir={run_dir}")
    # a logger writing to a folder of its own (CSV, TensorBoard) writes into the run's instead
    logger = fit.config.trainer.get("logger")
    if hasattr(logger, "get") and "save_dir" in (logger.get("init_args") or {}):
        args.append(f"--trainer.logger.init_args.save_dir={run_dir}")
    args += [f"--{key}={_cli_value(value)}" for key, value in settings.items()]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "fit.log"
    start = time.perf_counter()
    with log.open("w") as output:
        done = subprocess.run(args, stdout=output, stderr=subprocess.STDOUT, env=os.environ)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise ConfigError(f"sweep: the fit with {_label(settings)} failed; see {log}")
    results_file = run_dir / "fit_metrics.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    return {
        "run": run_dir.name,
        "settings": settings,
        "metrics": {key: results.get(key) for key in metrics},
        "seconds": round(seconds, 1),
        # the run's reference tables say whether they came from the cache
        "reference_reused": bool(tables_reused(run_dir)),
    }


def sweep_table(rows: list[dict[str, Any]], keys: list[str], metrics: tuple[str, ...]) -> str:
    """The Markdown table of a sweep: one row per run, settings then metrics."""
    header = ["run", *keys, *(m.removeprefix("val/") for m in metrics), "wall s", "reference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["run"], *(str(row["settings"][k]) for k in keys)]
        cells += [
            "-" if row["metrics"][m] is None else f"{row['metrics'][m]:.3f}" for m in metrics
        ]
        cells += [f"{row['seconds']:.0f}", "reused" if row["reference_reused"] else "computed"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], metrics: tuple[str, ...], path: Path) -> None:
    """One bar panel per metric, one bar per run, labelled by its settings."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(metrics), 4), dpi=100, layout="constrained")
    labels = [_label(row["settings"]) for row in rows]
    for axes, metric in zip(figure.subplots(1, len(metrics), squeeze=False)[0], metrics,
                            strict=True):
        values = [row["metrics"][metric] for row in rows]
        axes.bar(range(len(rows)), [v if v is not None else 0.0 for v in values])
        axes.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
        axes.set_title(metric.removeprefix("val/"), fontsize=9)
        axes.grid(axis="y", alpha=0.3)
    write_atomically(path, lambda staging: figure.savefig(staging, format="png"))


def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in settings.items())


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
