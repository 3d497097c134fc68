"""Long work said as plain lines a log file can hold: what it is, how far, how long.

A terminal shows live bars (Lightning's, ``datasets``', tqdm's). Sent to a file (a batch job,
SLURM, ``nohup``, ``make demo > log``), a bar is either silent until the end or a stream of
carriage-return frames glued into one endless line. Where a stream is not a terminal, lit-dpo
turns the libraries' bars off (:func:`quiet_library_bars`) and says instead, at most every
``EVERY_SECONDS``, what it is doing and how far it is (:class:`Progress`, :func:`track`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# seconds between two lines of the same work
EVERY_SECONDS = 30.0


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (a bar redraws there; a file gets lines)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def duration(seconds: float) -> str:
    """``7 s``, ``2 min 5 s``, ``1 h 4 min``."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def quiet_library_bars() -> None:
    """Turn off the progress bars of ``datasets`` (map, filter, split generation) and of
    ``transformers`` (weight loading, GGUF conversion), whose frames a log file cannot hold."""
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()


def library_bars_quiet() -> bool:
    """Whether ``datasets``' bars are off (then lit-dpo says how far tokenizing is itself)."""
    from datasets.utils import are_progress_bars_disabled

    return are_progress_bars_disabled()


class Progress:
    """Lines for ``total`` units of one piece of work: one when it starts, one at most every
    ``every_seconds`` while it goes on, one when it is done.

        tokenizing train_prefs: 61135 pairs
        tokenizing train_prefs: 12800/61135 pairs (21%), 30 s, ETA 1 min 53 s
        tokenizing train_prefs: 61135 pairs in 2 min 21 s

    Lines are written only by the process that made it: a copy pickled into a ``datasets`` worker
    stays silent, as each would only know its own shard.

    Args:
        what: the work, as the start of each line.
        total: units to do; None when unknown.
        unit: what is counted (``pairs``, ``batches``).
        every_seconds: least seconds between two lines; 0 writes one per ``advance``.
        logger: where lines go; ``lit_dpo.progress``'s logger at INFO by default.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str = "",
        every_seconds: float = EVERY_SECONDS,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.every_seconds = every_seconds
        self.logger = logger or log
        self.clock = clock
        self.done_count = 0
        self._pid = os.getpid()
        self._start = self._last = clock()
        self._say(f"{what}: {self._count(total)}" if total is not None else f"{what} ...")

    def advance(self, count: int = 1, note: str = "") -> None:
        """``count`` more units done; a line when ``every_seconds`` have passed since the last."""
        self.done_count += count
        now = self.clock()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        elapsed = now - self._start
        parts = [f"{self.what}: {self._fraction()}"]
        if note:
            parts.append(note)
        parts.append(duration(elapsed))
        left = (self.total or 0) - self.done_count
        if self.total and self.done_count and left > 0:
            parts.append(f"ETA {duration(elapsed / self.done_count * left)}")
        self._say(", ".join(parts))

    def finish(self) -> None:
        """The closing line, with the time the work took; none when nothing was done (the work
        was skipped: read from a cache)."""
        if not self.done_count:
            return
        elapsed = self.clock() - self._start
        self._say(f"{self.what}: {self._count(self.done_count)} in {duration(elapsed)}")

    def _fraction(self) -> str:
        if not self.total:
            return self._count(self.done_count)
        share = self.done_count / self.total
        return f"{self.done_count}/{self._count(self.total)} ({share:.0%})"

    def _count(self, count: int | None) -> str:
        return f"{count} {self.unit}".rstrip()

    def _say(self, line: str) -> None:
        if os.getpid() == self._pid:
            self.logger.info("%s", line)


def track(
    items: Iterable[Item], what: str, total: int | None = None, unit: str = ""
) -> Iterator[Item]:
    """``items``, one by one, with tqdm's bar on a terminal (stderr) and :class:`Progress` lines
    elsewhere."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if is_terminal(sys.stderr):
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=what, total=total, unit=unit or "it")
        return
    progress = Progress(what, total, unit)
    for item in items:
        yield item
        progress.advance()
    progress.finish()
