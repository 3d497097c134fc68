"""A DPO step and what it needs: the batch layout (``pairs``), log-probs (``logps``, ``forward``),
prefix packing (``packing``), objectives (``losses``, one record per loss type in
``losses.registry``), a step's objective and statistics (``step``; ``unpaired_step`` for KTO's
unpaired rows), metrics (``metrics``), the reference log-prob table (``reference_table``), the
non-finite guard (``nonfinite``), the settings in groups (``settings``) and their checks
(``run_checks``), and the LightningModule (``module``) with what it delegates: loading the policy
(``policy_setup``), the optimizer and schedule (``optimization``), what a checkpoint keeps
(``checkpoint_state``).

``DPOModule`` is imported on first use, so ``import lit_dpo.train.losses`` (pure maths) does not
load Lightning, transformers or peft.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lit_dpo.train.module import DPOModule

__all__ = ["DPOModule"]


def __getattr__(name: str):
    if name == "DPOModule":
        from lit_dpo.train.module import DPOModule

        return DPOModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
