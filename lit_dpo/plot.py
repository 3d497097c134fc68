"""``lit-dpo plot``: a finished run's training curves as one PNG.

    lit-dpo plot --run_dir runs/cpu          # the newest lightning_logs/version_N under it
    lit-dpo plot --run_dir runs/cpu/lightning_logs/version_0 --out curves.png
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lit_dpo.reporting.curves import plot_run


def plot(run_dir: str, out: str | None = None) -> Path:
    """Plot loss, preference accuracy, reward margin and rewards of a run from its metrics.csv.

    Args:
        run_dir: a Lightning log folder holding metrics.csv, or a folder above such folders (the
            most recently written one is plotted).
        out: PNG to write; by default metrics.png beside metrics.csv.
    """
    path = plot_run(run_dir, out)
    print(f"plot written to {path}", flush=True)
    return path


def __getattr__(name: str):
    # lit-dpo 0.1 configs name the callback lit_dpo.plot.PlotMetrics
    if name == "PlotMetrics":
        warnings.warn(
            "lit_dpo.plot.PlotMetrics is lit_dpo.callbacks.PlotMetrics since lit-dpo 0.2; write "
            "that in configs (the old path goes in the next release)",
            FutureWarning,
            stacklevel=2,
        )
        from lit_dpo.callbacks.plot_metrics import PlotMetrics

        return PlotMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
