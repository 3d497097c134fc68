"""A DPO step and what it needs: log-probs (``logps``, ``forward``), prefix packing (``packing``),
objectives (``losses``), metrics (``metrics``), the reference table (``reference``), the non-finite
guard (``nonfinite``), the checks before a run (``run_checks``) and the LightningModule
(``module``)."""

from lit_dpo.train.module import DPOModule

__all__ = ["DPOModule"]
