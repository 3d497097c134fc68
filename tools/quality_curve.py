#!/usr/bin/env python3
"""Held-out accuracy against training CPU seconds, lit-dpo and TRL, from recorded runs.

Reads the quality study's JSON lines (``tools/quality_results.jsonl``) and draws one point per
run: x the training CPU seconds (per fold for a cross-validation), y a held-out accuracy pooled
over its folds with its 95% interval. lit-dpo's runs are joined in order of cost (settings that
spend more of the budget: more pairs, more epochs); TRL's tutorial runs are their own series.
The dashed line is the budget (TRL's CPU seconds for its tutorial epoch, re-measured with
``quality.py --trl --measure_budget``).

    python tools/quality_curve.py                       # cross-validated runs -> docs/images/
    python tools/quality_curve.py --split dev --metric logps_accuracy_per_token/policy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tools"), str(REPO)]
import quality_records as records  # noqa: E402  (a sibling script, found through sys.path)

OUT = REPO / "docs" / "images" / "quality_curve.png"
SIDES = {"lit-dpo": ("lit-dpo", "tab:blue", "o"), "trl": ("TRL DPOTrainer", "tab:orange", "s")}


def curve_points(results: list[dict], metric: str, split: str, labels: list[str] | None = None,
                 folds: list[int] | None = None) -> dict[str, list[tuple]]:
    """Per side, ``(label, cpu_s, value, low, high)`` of every run of ``split`` (``cv``:
    cross-validations pooled over their folds, or over ``folds`` only, so that settings recorded
    on different numbers of folds are drawn on the same pairs), sorted by CPU seconds; quick runs
    left out."""
    points: dict[str, list[tuple]] = {}
    for run in records.runs_in_order(records.on_folds(results, folds)):
        last = run[-1]
        if last["split"] != split or last.get("quick") or (labels and last["label"] not in labels):
            continue
        cpu = sum(r["cpu_s"] for r in run) / len(run)
        value, low, high = records.accuracy_interval(run, metric)
        points.setdefault(last["side"], []).append((last["label"], cpu, value, low, high))
    return {side: sorted(found, key=lambda p: p[1]) for side, found in points.items()}


def label_lifts(anchors: list[tuple[float, float]], gap: float = 9.0,
                reach: float = 60.0) -> list[float]:
    """How far (points) to lift each label above its anchor (x, y in points) so that labels whose
    anchors lie within ``reach`` of each other across are at least ``gap`` apart upwards, lowest
    anchors placed first."""
    lifts = [0.0] * len(anchors)
    placed: list[tuple[float, float]] = []  # (x, label's y) of the labels placed so far
    for index in sorted(range(len(anchors)), key=lambda i: anchors[i][1]):
        x, y = anchors[index]
        level = y
        for other_x, other_y in sorted(placed, key=lambda p: p[1]):
            if abs(other_x - x) < reach and level - gap < other_y < level + gap:
                level = other_y + gap
        lifts[index] = level - y
        placed.append((x, level))
    return lifts


def draw(points: dict[str, list[tuple]], metric: str, budget: float | None, out: Path) -> None:
    """Write the plot of ``curve_points`` to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for side, found in points.items():
        name, color, marker = SIDES.get(side, (side, "tab:gray", "^"))
        xs = [p[1] for p in found]
        ys = [p[2] for p in found]
        errors = [[p[2] - p[3] for p in found], [p[4] - p[2] for p in found]]
        axes.errorbar(xs, ys, yerr=errors, color=color, marker=marker, capsize=3,
                      linestyle="-" if side == "lit-dpo" else "none", label=name)
    # runs that spend the whole budget crowd at its line: lift each label clear of its neighbours'
    labelled = [(label, x, y) for found in points.values() for label, x, y, *_ in found]
    axes.margins(x=0.1)  # room for the labels of the rightmost points
    figure.canvas.draw()  # settles the axes' limits, which the data -> points transform needs
    to_points = 72 / figure.dpi
    anchors = [tuple(axes.transData.transform((x, y)) * to_points) for _, x, y in labelled]
    for (label, x, y), lift in zip(labelled, label_lifts(anchors), strict=True):
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4 + lift), fontsize=7,
                      bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                            "alpha": 0.8})
    if budget:
        axes.axvline(budget, color="gray", linestyle="--", linewidth=1,
                     label=f"budget: TRL's epoch, {budget:.0f} CPU s")
    axes.axhline(0.5, color="lightgray", linewidth=1)
    axes.set_xlabel("training CPU seconds (per fold)")
    axes.set_ylabel(f"held-out {records.NAMES.get(metric, metric)}")
    axes.set_title("Held-out accuracy against CPU seconds (95% intervals over pairs)", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "tools" / "quality_results.jsonl")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--metric", default="rewards/accuracies", choices=list(records.NAMES))
    parser.add_argument("--split", default="cv", choices=["cv", "dev", "test"])
    parser.add_argument("--labels", nargs="+", help="only these runs (default: all of --split)")
    parser.add_argument("--budget", type=float, help="CPU s of the dashed line (default: none)")
    parser.add_argument("--only_folds", type=int, nargs="+", metavar="K",
                        help="pool these folds only (default: each run's recorded folds)")
    args = parser.parse_args()
    points = curve_points(records.load(args.results), args.metric, args.split, args.labels,
                          args.only_folds)
    if not points:
        raise SystemExit(f"quality_curve: no recorded run of the {args.split} split in "
                         f"{args.results}; record some with tools/quality.py first")
    draw(points, args.metric, args.budget, args.out)
    for side, found in points.items():
        for label, cpu, value, low, high in found:
            print(f"{side:8} {label:28} {cpu:7.0f} CPU s  {value:.3f} [{low:.3f}, {high:.3f}]")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
