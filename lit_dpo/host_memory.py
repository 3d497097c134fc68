"""This process's memory on a CPU host: how much is resident, and handing freed memory back.

On a CPU every tensor comes from glibc's ``malloc``. Blocks under its mmap threshold (128 KiB at
start, raised by glibc up to 32 MiB each time a larger mmapped block is freed) come from the heap,
and a freed heap block stays resident, to be reused, until the heap's top is trimmed. A training
step allocates and frees thousands of mid-sized activations (a few MiB each), so after the first
steps the threshold sits above them and the resident set keeps the freed memory of a whole
forward, fragmented: about as much again as the live tensors. ``release_freed_memory_promptly``
fixes the threshold low, so those blocks are mapped and unmapped on their own and a free gives
them back at once; ``trim_freed_memory`` hands back what the heap still holds free.

``FreedMemory`` names the three ways a fit can run (``DPOModule(return_freed_memory=...)``):
``keep`` (glibc's own way: fastest, most memory), ``between_steps`` (the heap trimmed after each
training batch: the pages are faulted in again once per step, not once per allocation) and
``promptly`` (the threshold fixed low as well: least memory, every activation's pages zeroed
again on each allocation, which halves CPU steps per second here).

Where glibc is not the allocator (macOS, musl, a preloaded jemalloc or tcmalloc) these do nothing
and say so; ``resident`` and ``malloc_stats`` return what the system reports, or nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from pathlib import Path
from typing import Literal, get_args

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks from this size up are mapped on their own and unmapped when freed: every activation of a
# step (hidden states, attention and MLP outputs of a layer: a few MiB), none of the small
# bookkeeping allocations Python and torch make by the thousand. 256 KiB is where the cost of a
# mapping (a system call and zeroed pages) is small next to the compute on the block.
MMAP_THRESHOLD_BYTES = 256 * 1024
# Free memory at the heap's top beyond this is handed back on a free (glibc's default is 128 KiB
# until the dynamic mmap threshold moves it); kept at twice the mmap threshold, as glibc does.
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES
FreedMemory = Literal["keep", "between_steps", "promptly"]
FREED_MEMORY_MODES = get_args(FreedMemory)
# DPOModule's default: the trim once per step costs no measurable speed (docs/benchmark.md)
DEFAULT_FREED_MEMORY: FreedMemory = "between_steps"
STATUS_FIELDS = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anonymous", "RssFile": "file"}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (it has ``mallinfo2``, glibc 2.33+, and ``malloc_trim``)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("mallinfo2", "malloc_trim", "mallopt")):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def resident() -> dict[str, int]:
    """Bytes of this process from ``/proc/self/status``: ``rss`` (resident now), ``peak`` (the
    most resident so far, as ``ru_maxrss``), ``anonymous`` (heap and mappings of its own) and
    ``file`` (pages of mapped files, such as a memory-mapped model file). Empty without /proc."""
    path = Path("/proc/self/status")
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            values[STATUS_FIELDS[key]] = int(value.split()[0]) * 1024  # kB
    return values


def malloc_stats() -> dict[str, int] | None:
    """glibc's own account, summed over its arenas: ``in_use`` (live heap blocks), ``free_held``
    (freed heap memory it keeps; resident where it was touched) and ``mapped`` (blocks mapped on
    their own, live). None where glibc is not the allocator."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    return {"in_use": info.uordblks, "free_held": info.fordblks, "mapped": info.hblkhd}


def freed_memory_mode(value: bool | str) -> str:
    """``FreedMemory`` of a setting that may still be a bool (older configs): false is ``keep``,
    true ``promptly`` (what true meant before ``between_steps`` existed)."""
    if isinstance(value, bool):
        return "promptly" if value else "keep"
    if value not in FREED_MEMORY_MODES:
        raise ValueError(
            f"return_freed_memory must be one of {', '.join(FREED_MEMORY_MODES)} (or a bool), "
            f"got {value!r}"
        )
    return value


def release_freed_memory_promptly(
    mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES
) -> bool:
    """Make glibc give freed tensor memory back to the system when it is freed.

    Fixing the mmap threshold also stops glibc from raising it, which is what lets a step's
    freed activations pile up in the heap. Affects allocations made from now on; returns False
    (and changes nothing) where glibc is not the allocator.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )


def trim_freed_memory() -> bool:
    """Hand back the free memory glibc's heaps hold (``malloc_trim(0)``: the top of each heap,
    and whole free pages inside it). False where glibc is not the allocator or nothing was freed."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


class ResidentSampler:
    """The largest resident set seen between two ``take`` calls, sampled in a thread.

    ``/proc/self/status`` says only the peak since the process started; this says each phase's
    own. Sampling every ``interval`` seconds misses peaks shorter than that, so it is a lower
    bound of a phase's peak (``resident()["peak"]`` bounds it from above).
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._largest = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resident-sampler", daemon=True)
        self._thread.start()

    def take(self) -> int:
        """Largest resident bytes since the last call (or the start); starts a new phase."""
        now = resident().get("rss", 0)
        with self._lock:
            largest, self._largest = max(self._largest, now), now
        return largest

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        statm = Path("/proc/self/statm")
        if not statm.exists():
            return
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(self.interval):
            rss = int(statm.read_text().split()[1]) * page
            with self._lock:
                self._largest = max(self._largest, rss)
