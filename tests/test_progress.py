"""Progress a log file can hold: ProgressLog's lines during fit and validate, and the Progress lines
of long preparations, with stdout sent to a pipe as a batch job sends it to a file."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tiny_fit_args

from lit_dpo.callbacks.progress_log import ProgressLog
from lit_dpo.progress import Progress, duration

REPO = Path(__file__).parents[1]
DURATION = r"\d+ (?:h \d+ min|min \d+ s|s)"
STEP_LINE = re.compile(
    r"^step (\d+)/(\d+) \(\d+%\) \| epoch \d+/\d+ \| loss \d+\.\d{4} \| "
    rf"reward accuracy \d\.\d{{3}} \| \d+\.\d\d pairs/s \| elapsed {DURATION}"
    rf"( \| ETA {DURATION})? \| peak memory \d+\.\d\d GiB \(peak RSS\)$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_at_start_every_interval_and_at_the_end(caplog):
    """100 pairs, 30 s between lines: 10 pairs every 10 s gives lines at 30 s (30 done: 70 left at
    1 s a pair, ETA 70 s) and 60 s; then the closing line with the whole time."""
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="lit_dpo"):
        progress = Progress("tokenizing train", 100, "pairs", every_seconds=30, clock=clock)
        for _ in range(10):
            clock.now += 10
            progress.advance(10)
        progress.finish()
    assert caplog.messages == [
        "tokenizing train: 100 pairs",
        "tokenizing train: 30/100 pairs (30%), 30 s, ETA 1 min 10 s",
        "tokenizing train: 60/100 pairs (60%), 1 min 0 s, ETA 40 s",
        "tokenizing train: 90/100 pairs (90%), 1 min 30 s, ETA 10 s",
        "tokenizing train: 100 pairs in 1 min 40 s",
    ]


def test_progress_says_nothing_more_when_the_work_was_skipped(caplog):
    with caplog.at_level(logging.INFO, logger="lit_dpo"):
        Progress("tokenizing train", 100, "pairs", clock=FakeClock()).finish()
    assert caplog.messages == ["tokenizing train: 100 pairs"]


def test_duration():
    assert [duration(s) for s in (7, 125, 3840)] == ["7 s", "2 min 5 s", "1 h 4 min"]


class Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


class Bar:
    def __init__(self) -> None:
        self.disabled = False

    def disable(self) -> None:
        self.disabled = True


@pytest.mark.parametrize(
    ("mode", "terminal", "lines"),
    [("auto", True, False), ("auto", False, True), ("lines", True, True), ("bar", False, False)],
)
def test_lines_replace_the_bar_where_stdout_is_not_a_terminal(monkeypatch, mode, terminal, lines):
    monkeypatch.setattr(sys, "stdout", Stream(terminal))
    monkeypatch.setattr(sys, "stderr", Stream(True))  # library bars stay as they are
    callback, bar = ProgressLog(mode=mode), Bar()
    callback.apply(SimpleNamespace(progress_bar_callback=bar))
    assert callback.lines is lines
    assert bar.disabled is lines


def test_a_line_waits_for_both_the_steps_and_the_seconds():
    """every_n_steps 5 and every_seconds 30: the rarer of the two decides."""
    callback = ProgressLog(every_n_steps=5, every_seconds=30)
    clock = callback._clock = FakeClock()
    callback._reset_window()
    clock.now = 100  # plenty of time, too few steps
    assert not callback._due(4)
    assert callback._due(5)
    callback._reset_window()
    clock.now += 29  # plenty of steps, too little time
    assert not callback._due(50)
    clock.now += 1
    assert callback._due(50)


def test_piped_fit_prints_progress_lines_while_it_trains(tiny_model_dir, tiny_data_dir, tmp_path):
    """``lit-dpo fit`` with stdout and stderr to pipes, as under nohup or SLURM: step lines with
    every field arrive while training still runs (the adapter, written when training ends, is not
    there yet when the first one is read), and no bar's carriage returns reach the log."""
    args = [
        arg
        for arg in tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path)
        if arg != "--trainer.enable_progress_bar=false"  # the bar must turn itself off
    ]
    args[args.index("--trainer.max_epochs=1")] = "--trainer.max_epochs=3"
    args.remove("--trainer.limit_train_batches=2")
    args += ["--progress.every_n_steps=2", "--progress.every_seconds=0"]
    # Python buffers a pipe's output unless told otherwise: lines must be flushed as written
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_dpo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    adapter_when_first_step_read = None
    lines = []
    for raw in process.stdout:
        line = raw.decode()
        lines.append(line)
        if adapter_when_first_step_read is None and line.startswith("step "):
            adapter_when_first_step_read = (tmp_path / "adapter").exists()
    err = process.stderr.read().decode()
    assert process.wait() == 0, err[-3000:]
    out = "".join(lines)

    assert adapter_when_first_step_read is False, "the first step line came only at the end"
    steps = [STEP_LINE.match(line.rstrip("\n")) for line in lines if line.startswith("step ")]
    assert all(steps), [line for line in lines if line.startswith("step ")]
    # 6 pairs in batches of 2 for 3 epochs: the first step, every 2nd after it, and the last
    assert [(int(m[1]), int(m[2])) for m in steps] == [(1, 9), (3, 9), (5, 9), (7, 9), (9, 9)]
    assert "ETA" in steps[0].group(0) and "ETA" not in steps[-1].group(0)
    assert "training: 9 optimizer steps, 3 epoch(s), from step 0; a line at most every 0 s" in out
    assert "validation at step 3: 1 batch\n" in out
    assert re.search(rf"validation at step 3 done in {DURATION} \| loss \d\.\d{{4}}", out)
    assert "run summary" in out
    assert "\r" not in out and "\r" not in err
    # preparing data says what it does where datasets' bar is off
    assert "tokenizing train_prefs: 6 pairs" in err
