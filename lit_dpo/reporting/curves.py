"""Training curves as a PNG, drawn from a series of metric values: the ``PlotMetrics`` callback
gives the run's own metric history, ``lit-dpo plot`` a finished run's ``metrics.csv`` or
TensorBoard event file.

One PNG with four panels over optimizer steps: DPO loss, preference accuracy, reward margin, and
the chosen and rejected implicit rewards. ``train/*`` values are lines (one point per step),
``val/*`` values are markers (one per validation run). The metric names are those
:mod:`lit_dpo.train.module` logs.

    lit-dpo plot --run_dir runs/cpu          # the newest lightning_logs/version_N under it
    lit-dpo plot --run_dir runs/cpu/lightning_logs/version_0 --out curves.png
"""

from __future__ import annotations

import csv
from pathlib import Path

from lit_dpo.errors import DataError
from lit_dpo.files import write_atomically

# metric name -> [(optimizer step, value), ...]
Series = dict[str, list[tuple[int, float]]]

# panel title -> (metric, legend label); train/* drawn as lines, val/* as markers
PANELS: dict[str, tuple[tuple[str, str], ...]] = {
    "DPO loss": (("train/loss", "train"), ("val/loss", "val")),
    "preference accuracy": (
        ("train/rewards/accuracies", "train, implicit reward"),
        ("val/rewards/accuracies", "val, implicit reward"),
        ("val/logps_accuracy/policy", "val, log-prob (policy)"),
        ("val/logps_accuracy/reference", "val, log-prob (reference)"),
    ),
    "reward margin (chosen - rejected)": (
        ("train/rewards/margins", "train"),
        ("val/rewards/margins", "val"),
    ),
    "implicit rewards": (
        ("train/rewards/chosen", "train, chosen"),
        ("train/rewards/rejected", "train, rejected"),
        ("val/rewards/chosen", "val, chosen"),
        ("val/rewards/rejected", "val, rejected"),
    ),
}
FIGURE_INCHES = (11, 8)
TENSORBOARD_EVENTS = "events.out.tfevents.*"
DPI = 100


def find_metrics_file(run_dir: str | Path) -> Path:
    """The metrics of a finished run: ``RUN_DIR/metrics.csv`` (CSVLogger) or a TensorBoard event
    file in ``run_dir``, else the most recently written of either below it.

    Raises:
        DataError: there is none.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.csv").is_file():
        return run_dir / "metrics.csv"
    here = sorted(run_dir.glob(TENSORBOARD_EVENTS), key=lambda p: p.stat().st_mtime)
    if here:
        return here[-1]
    found = [*run_dir.rglob("metrics.csv"), *run_dir.rglob(TENSORBOARD_EVENTS)]
    if not found:
        raise DataError(
            f"no metrics.csv or TensorBoard event file in or below {run_dir}; pass a log folder "
            "such as runs/cpu/lightning_logs/version_0 (the run needs trainer.logger CSVLogger "
            "or TensorBoardLogger; PlotMetrics plots any run as it ends)"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def read_metrics(path: str | Path) -> Series:
    """Every metric of a CSVLogger file as ``{name: [(step, value), ...]}``, blanks dropped.

    Raises:
        DataError: the file has no ``step`` column.
    """
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if "step" not in (reader.fieldnames or []):
            raise DataError(f"{path}: no 'step' column; is this a Lightning CSVLogger metrics.csv?")
        series: Series = {}
        for row in reader:
            step = int(float(row["step"]))
            for name, value in row.items():
                if name not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(name, []).append((step, float(value)))
    return series


def read_tensorboard(path: str | Path) -> Series:
    """Every scalar of a TensorBoard event file as ``{name: [(step, value), ...]}``.

    Raises:
        DataError: the ``tensorboard`` package is not installed.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as error:
        raise DataError(f"{path} is a TensorBoard event file: pip install tensorboard") from error
    events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {
        name: [(event.step, event.value) for event in events.Scalars(name)]
        for name in events.Tags()["scalars"]
        if name != "epoch"
    }


def draw_metrics(series: Series, title: str = ""):
    """A matplotlib ``Figure`` (1100 x 800 pixels) with the four panels.

    Raises:
        DataError: none of the DPO metrics is in ``series``.
    """
    # A bare Figure renders with Agg and touches no global pyplot state or GUI backend.
    from matplotlib.figure import Figure

    if not any(name in series for curves in PANELS.values() for name, _ in curves):
        raise DataError(
            f"no DPO metrics to plot (expected e.g. train/loss); found {sorted(series)[:8]}"
        )
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    for axes, (panel, curves) in zip(figure.subplots(2, 2).flat, PANELS.items(), strict=True):
        for name, label in curves:
            if name not in series:
                continue
            steps, values = zip(*series[name], strict=True)
            if name.startswith("val/"):
                axes.plot(steps, values, "o--", label=label, markersize=6)
            else:
                axes.plot(steps, values, "-", label=label, linewidth=1.2)
        axes.set_title(panel)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def plot_metrics(series: Series, out: str | Path, title: str = "") -> Path:
    """:func:`draw_metrics` saved as a PNG at ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = draw_metrics(series, title)
    write_atomically(out, lambda staging: figure.savefig(staging, format="png"))
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Plot a run's metrics to ``out`` (default: ``metrics.png`` beside its metrics file)."""
    path = find_metrics_file(run_dir)
    series = read_metrics(path) if path.name == "metrics.csv" else read_tensorboard(path)
    target = Path(out) if out else path.with_name("metrics.png")
    return plot_metrics(series, target, title=str(path.parent))
