"""Reading this process's memory, and handing freed memory back to the system (glibc).

The allocator tests run in a fresh interpreter each: glibc's thresholds are process-wide and move
with what the process allocated before, so only a new process starts from a known state.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lit_dpo import host_memory

glibc = pytest.mark.skipif(host_memory.malloc_stats() is None, reason="glibc malloc only")

# Frees 64 of 128 live 1 MiB tensors in a heap that glibc, like a step's activations, serves from
# its heap (a 16 MiB block freed first raises the mmap threshold to 16 MiB); the survivors pin the
# holes so that the heap's top cannot be trimmed. Prints the resident MiB given back by the frees,
# then by an explicit trim.
FRAGMENTED_FREE = """
import torch
from lit_dpo import host_memory
if {release}:
    host_memory.release_freed_memory_promptly()
del_me = torch.ones(4 * 2**20)  # 16 MiB
del del_me
blocks = [torch.ones(2**18) for _ in range(128)]  # 1 MiB each, pages touched
before = host_memory.resident()["rss"]
del blocks[::2]
after_free = host_memory.resident()["rss"]
host_memory.trim_freed_memory()
after_trim = host_memory.resident()["rss"]
print((before - after_free) // 2**20, (after_free - after_trim) // 2**20)
"""


def _given_back(release: bool) -> tuple[int, int]:
    code = FRAGMENTED_FREE.format(release=release)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    by_free, by_trim = out.split()
    return int(by_free), int(by_trim)


def test_resident_reads_proc_status():
    import mmap

    before = host_memory.resident()
    # 16 MiB of fresh anonymous pages, touched: malloc's free memory (a long test session has
    # plenty) cannot serve it, so the resident set must grow by it
    block = mmap.mmap(-1, 16 * 2**20)
    block.write(b"x" * len(block))
    after = host_memory.resident()
    assert set(before) == {"rss", "peak", "anonymous", "file"}
    assert after["rss"] - before["rss"] > 15 * 2**20
    assert after["peak"] >= after["rss"] >= after["anonymous"]
    block.close()


@glibc
def test_freed_activations_stay_resident_unless_released_promptly():
    by_free, by_trim = _given_back(release=False)
    assert by_free < 8, "glibc gave the holes back by itself: the test shows nothing"
    assert by_trim > 56  # malloc_trim(0) hands back the free pages inside the heap
    by_free, _ = _given_back(release=True)
    assert by_free > 56  # the 64 MiB go back as they are freed


@glibc
def test_malloc_stats_account_for_the_heap():
    stats = host_memory.malloc_stats()
    assert set(stats) == {"in_use", "free_held", "mapped"}
    assert stats["in_use"] > 0


def test_sampler_sees_a_peak_between_marks():
    import mmap

    sampler = host_memory.ResidentSampler(interval=0.001)
    try:
        sampler.take()
        # 64 MiB of fresh pages, touched, then unmapped: resident for a moment whatever malloc
        # holds free in a long test session
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"x" * len(block))
        time.sleep(0.05)
        block.close()
        peak = sampler.take()
        assert peak - host_memory.resident()["rss"] > 48 * 2**20
    finally:
        sampler.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, ["load", "trim", "trim"]),  # the default: between_steps
        ("keep", ["load"]),
        ("false", ["load"]),
        ("between_steps", ["load", "trim", "trim"]),
        ("promptly", ["release", "load", "trim", "trim"]),
        ("true", ["release", "load", "trim", "trim"]),  # what true meant before between_steps
    ],
)
def test_fit_on_a_cpu_trims_after_each_batch_and_releases_before_loading_when_asked(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, mode, expected
):
    """``model.efficiency.return_freed_memory``: ``between_steps`` (the default) trims the heap
    after every training batch; ``keep`` touches glibc not at all; ``promptly`` also fixes glibc's
    thresholds before the model loads."""
    from conftest import tiny_fit_args

    from lit_dpo.cli import main
    from lit_dpo.train import module, policy_setup

    calls = []
    monkeypatch.setattr(
        policy_setup, "release_freed_memory_promptly", lambda: calls.append("release") or True
    )
    monkeypatch.setattr(module, "trim_freed_memory", lambda: calls.append("trim") or True)
    monkeypatch.setattr(
        policy_setup,
        "load_policy",
        _recording(policy_setup.load_policy, lambda: calls.append("load")),
    )
    args = tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "run")
    main([*args] + ([f"--model.efficiency.return_freed_memory={mode}"] if mode else []))
    assert calls == expected


def test_freed_memory_modes_and_the_old_bools():
    assert host_memory.freed_memory_mode(False) == "keep"
    assert host_memory.freed_memory_mode(True) == "promptly"
    assert host_memory.freed_memory_mode("between_steps") == "between_steps"
    with pytest.raises(ValueError, match="one of keep, between_steps, promptly"):
        host_memory.freed_memory_mode("sometimes")


def _recording(function, record):
    def wrapped(*args, **kwargs):
        record()
        return function(*args, **kwargs)

    return wrapped
