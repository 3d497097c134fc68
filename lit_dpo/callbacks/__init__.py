"""What a fit writes and watches, as Lightning callbacks.

Re-exported here so that config ``class_path``s stay short (``lit_dpo.callbacks.HealthAlarms``):

- ``AdapterCheckpoint``, ``SaveAdapter``: PEFT adapters beside checkpoints and at the end of fit
- ``GenerateSamples``: answers of policy and reference after each validation
- ``HealthAlarms``: warnings when training shows a known DPO failure
- ``RunSummary``: the table printed when fit ends
- ``InterruptCheckpoint``: stop on Ctrl-C or SIGTERM with a checkpoint, resume exactly
- ``PlotMetrics``: training curves as a PNG when fit ends
- ``ProgressLog``: plain progress lines where stdout is a log file, not a terminal
- ``MetricHistory``: the run's own record of its metrics, which the reports read
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# class -> the module that defines it, imported on first use
_HOMES = {
    "AdapterCheckpoint": "adapters",
    "SaveAdapter": "adapters",
    "GenerateSamples": "samples",
    "HealthAlarms": "health",
    "InterruptCheckpoint": "interrupt",
    "MetricHistory": "history",
    "PlotMetrics": "plot_metrics",
    "ProgressLog": "progress_log",
    "RunSummary": "summary",
}

if TYPE_CHECKING:
    from lit_dpo.callbacks.adapters import AdapterCheckpoint, SaveAdapter
    from lit_dpo.callbacks.health import HealthAlarms
    from lit_dpo.callbacks.history import MetricHistory
    from lit_dpo.callbacks.interrupt import InterruptCheckpoint
    from lit_dpo.callbacks.plot_metrics import PlotMetrics
    from lit_dpo.callbacks.progress_log import ProgressLog
    from lit_dpo.callbacks.samples import GenerateSamples
    from lit_dpo.callbacks.summary import RunSummary

__all__ = [
    "AdapterCheckpoint",
    "GenerateSamples",
    "HealthAlarms",
    "InterruptCheckpoint",
    "MetricHistory",
    "PlotMetrics",
    "ProgressLog",
    "RunSummary",
    "SaveAdapter",
]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
