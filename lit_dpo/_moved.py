"""Module paths of lit-dpo 0.1, importable for one more release with a warning naming the new one.

Configs name classes by import path (``class_path: lit_dpo.health.HealthAlarms``). lit-dpo 0.2
moved its modules into subpackages; an old path still imports, as the module at its new place,
and warns with what to write instead. The next release removes this file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> (new module, the short package configs should name classes from)
MOVED = {
    "lit_dpo.loading": ("lit_dpo.data.loading", None),
    "lit_dpo.pairs": ("lit_dpo.data.pairs", None),
    "lit_dpo.batches": ("lit_dpo.data.batches", None),
    "lit_dpo.sampler": ("lit_dpo.data.sampler", None),
    "lit_dpo.datamodule": ("lit_dpo.data.datamodule", "lit_dpo.data"),
    "lit_dpo.policy": ("lit_dpo.models.policy", None),
    "lit_dpo.adapters": ("lit_dpo.models.adapters", None),
    "lit_dpo.inference": ("lit_dpo.models.inference", None),
    "lit_dpo.generate": ("lit_dpo.models.generate", None),
    "lit_dpo.logps": ("lit_dpo.train.logps", None),
    "lit_dpo.packing": ("lit_dpo.train.packing", None),
    "lit_dpo.loss": ("lit_dpo.train.losses", None),
    "lit_dpo.metrics": ("lit_dpo.train.metrics", None),
    "lit_dpo.reference": ("lit_dpo.train.reference_table", None),
    "lit_dpo.nonfinite": ("lit_dpo.train.nonfinite", None),
    "lit_dpo.run_checks": ("lit_dpo.train.run_checks", None),
    "lit_dpo.module": ("lit_dpo.train.module", "lit_dpo.train"),
    "lit_dpo.health": ("lit_dpo.callbacks.health", "lit_dpo.callbacks"),
    "lit_dpo.resume": ("lit_dpo.callbacks.interrupt", "lit_dpo.callbacks"),
    "lit_dpo.memory": ("lit_dpo.preflight.memory", None),
    "lit_dpo.timing": ("lit_dpo.preflight.measure", None),
    "lit_dpo.scoring": ("lit_dpo.compare.scoring", None),
    "lit_dpo.judge": ("lit_dpo.compare.judge", None),
    "lit_dpo.prompts": ("lit_dpo.compare.prompts", None),
    "lit_dpo.report": ("lit_dpo.compare.report", None),
    "lit_dpo.chat_api": ("lit_dpo.serve.api", None),
    "lit_dpo.chat_worker": ("lit_dpo.serve.worker", None),
}
# lit-dpo 0.3 gave each module one name and one job
MOVED_IN_0_3 = {
    "lit_dpo.train.reference": ("lit_dpo.train.reference_table", None),
    "lit_dpo.callbacks.plot": ("lit_dpo.callbacks.plot_metrics", "lit_dpo.callbacks"),
    "lit_dpo.callbacks.progress": ("lit_dpo.callbacks.progress_log", "lit_dpo.callbacks"),
    "lit_dpo.callbacks.model_card": ("lit_dpo.reporting.model_card", None),
    "lit_dpo.callbacks.run_facts": ("lit_dpo.reporting.run_facts", None),
}
MOVED.update(MOVED_IN_0_3)


def moved_message(old: str) -> str:
    """The warning an old module path gives."""
    new, short = MOVED[old]
    where = f"; configs name its classes from {short} (e.g. class_path: {short}.<Class>)"
    return (
        f"{old} is {new} since lit-dpo {'0.3' if old in MOVED_IN_0_3 else '0.2'}"
        f"{where if short else ''}; the old path goes in the next "
        "release"
    )


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new place, with a FutureWarning."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        warnings.warn(moved_message(spec.name), FutureWarning, stacklevel=2)
        # the module object itself: classes keep their new __module__, so configs saved from
        # now on name the new path
        return importlib.import_module(MOVED[spec.name][0])

    def exec_module(self, module) -> None:
        pass  # already executed at its new place


def install() -> None:
    """Add the finder once (``lit_dpo/__init__`` calls this)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
