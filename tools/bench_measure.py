"""Timing and memory of one bench run, measured inside its own process (tools/bench.py).

``StepClock`` times the steps after the warm-up and keeps the first loss and the peak memory;
``MemoryPhases`` (``--breakdown``) records the resident memory at each phase boundary.
"""

from __future__ import annotations

import resource
import time

# tools/bench.py imports this module before the heavy imports: the wall time includes them
STARTED = time.perf_counter()


class StepClock:
    """Step boundaries and first loss, fed by each side's callback."""

    def __init__(self, warmup: int, gpu: bool, phases: MemoryPhases | None = None) -> None:
        self.warmup, self.gpu, self.phases = warmup, gpu, phases
        self.steps = 0
        self.first_step_start = self.timed_start = self.timed_end = None
        self.cpu_start = self.cpu_end = None
        self.first_loss = None

    def step_start(self) -> None:
        if self.first_step_start is None:
            self.first_step_start = time.perf_counter()
        if self.steps == self.warmup:
            self._sync()
            self.timed_start, self.cpu_start = time.perf_counter(), _cpu_seconds()

    def step_end(self) -> None:
        self.steps += 1
        self._sync()
        self.timed_end, self.cpu_end = time.perf_counter(), _cpu_seconds()
        if self.phases is not None:
            self.phases.after_step(self.steps, self.warmup)

    def loss(self, value: float) -> None:
        if self.first_loss is None:
            self.first_loss = value

    def result(self, extra: dict) -> dict:
        import torch

        if self.gpu:
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return {
            "steps": self.steps,
            "timed_s": self.timed_end - self.timed_start,
            "timed_cpu_s": self.cpu_end - self.cpu_start,
            "setup_s": self.first_step_start - STARTED,
            "wall_s": time.perf_counter() - STARTED,
            "peak_bytes": peak,
            "first_loss": self.first_loss,
            "device": torch.cuda.get_device_name() if self.gpu else "cpu",
            "threads": torch.get_num_threads(),
            "memory_phases": self.phases.close() if self.phases is not None else None,
            **extra,
        }

    def _sync(self) -> None:
        if self.gpu:
            import torch

            torch.cuda.synchronize()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- --breakdown: where each side's peak resident memory goes ------------------------------------


class MemoryPhases:
    """Resident memory of one side's process at its phase boundaries, and each phase's own peak.

    Phases: imports, data, model loading (with quantization), the first step, the rest of the
    warm-up, the timed steps, the end of the fit. At each boundary: the resident set, how much of
    it is pages of mapped files (the memory-mapped model file) and, from glibc, the freed memory
    its heaps keep (allocator retention) and what is live in them.
    """

    def __init__(self, steps: int) -> None:
        from lit_dpo.host_memory import ResidentSampler

        self.steps = steps
        self.sampler = ResidentSampler()
        self.rows: list[dict] = []
        self.mark("imports: Python, torch, Lightning or TRL")

    @classmethod
    def start(cls, spec: dict) -> MemoryPhases | None:
        """A recorder when ``--breakdown`` asked for one, on a CPU run."""
        return cls(len(spec["batches"])) if spec.get("breakdown") and not spec["gpu"] else None

    def mark(self, phase: str) -> None:
        from lit_dpo.host_memory import malloc_stats, resident

        peak = self.sampler.take()
        now, heap = resident(), malloc_stats() or {}
        self.rows.append(
            {
                "phase": phase,
                "peak": peak,
                "rss": now.get("rss", 0),
                "file": now.get("file", 0),
                "free_held": heap.get("free_held"),
                "in_use": heap.get("in_use"),
                "mapped": heap.get("mapped"),
            }
        )

    def after_step(self, step: int, warmup: int) -> None:
        if step == 1:
            self.mark("step 1")
        elif step == warmup:
            self.mark(f"steps 2-{warmup} (warm-up)")
        elif step == self.steps:
            self.mark(f"steps {warmup + 1}-{step} (timed)")

    def close(self) -> list[dict]:
        self.sampler.close()
        return self.rows
