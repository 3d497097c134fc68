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

from lit_dpo.callbacks.adapters import AdapterCheckpoint, SaveAdapter
from lit_dpo.callbacks.health import HealthAlarms
from lit_dpo.callbacks.history import MetricHistory
from lit_dpo.callbacks.interrupt import InterruptCheckpoint
from lit_dpo.callbacks.plot import PlotMetrics
from lit_dpo.callbacks.progress import ProgressLog
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
