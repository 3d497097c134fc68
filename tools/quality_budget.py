"""A Lightning callback that stops a fit once its process has used a given number of CPU seconds.

``tools/quality.py`` adds it to the fits it runs (``--trainer.callbacks+=quality_budget.CPUBudget``
with ``tools/`` on the path): the quality study compares runs at equal cost, and on a shared
machine CPU seconds (all threads, user and system) measure cost where wall time does not.
"""

from __future__ import annotations

import logging
import time

from lightning import Callback

log = logging.getLogger(__name__)


class CPUBudget(Callback):
    """Stop training after the step during which the process passed ``seconds`` of CPU time.

    Args:
        seconds: CPU seconds (``time.process_time``: this process, every thread) the run may use,
            counted from the start of the process: loading and tokenizing are part of the cost.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        used = time.process_time()
        if used >= self.seconds and not trainer.should_stop:
            trainer.should_stop = True
            print(
                f"quality: stopped by the CPU budget after step {trainer.global_step} "
                f"({used:.0f} of {self.seconds:.0f} CPU s)",
                flush=True,
            )
