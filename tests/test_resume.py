"""Interrupts and resume: Ctrl-C or SIGTERM during fit leaves a checkpoint and the adapter, and
``--ckpt_path last`` continues to the losses an uninterrupted fit logs, step for step."""

from __future__ import annotations

import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args
from lightning import Callback

from lit_dpo.callbacks.interrupt import resume_command
from lit_dpo.cli import main
from lit_dpo.data.sampler import PairSampler

# 6 train pairs in batches of 2: 3 steps an epoch, 6 in all.
EPOCHS, STEPS_PER_EPOCH = 2, 3


class SignalAt(Callback):
    """Sends this process ``signum`` after its ``batches``-th batch, as a user or scheduler would.

    Args:
        batches: batches trained in this process before the signal.
        signum: the signal (2: SIGINT, Ctrl-C).
        times: how many times to send it.
    """

    def __init__(self, batches: int, signum: int = 2, times: int = 1) -> None:
        self.batches, self.signum, self.times = batches, signum, times
        self.seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen == self.batches:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class CrashAt(Callback):
    """Fails in its ``batches``-th batch, as an out-of-memory error or a lost node would.

    Args:
        batches: batches trained in this process before the failing one.
    """

    def __init__(self, batches: int) -> None:
        self.batches, self.seen = batches, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen > self.batches:
            raise RuntimeError("simulated crash")


class Pace(Callback):
    """Prints each finished step and waits, so a test can signal a subprocess mid-fit.

    Args:
        seconds: wait after each step.
    """

    def __init__(self, seconds: float = 0.5) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        print(f"finished step {trainer.global_step}", flush=True)
        time.sleep(self.seconds)


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(tiny_model_dir, tiny_data_dir, root, *extra):
    return tiny_fit_args(
        tiny_model_dir,
        tiny_data_dir,
        root,
        "--trainer.limit_train_batches=1.0",
        f"--trainer.max_epochs={EPOCHS}",
        # dropout draws from the random state, so a resume that did not restore it would differ
        "--model.lora.dropout=0.2",
        "--trainer.num_sanity_val_steps=0",
        *extra,
    )


def _logged(root: Path, version: str = "*") -> dict[str, dict[int, float]]:
    """{metric: {step: value}} over the metrics.csv of the runs (versions) under ``root``."""
    logged: dict[str, dict[int, float]] = {"train/loss": {}, "val/loss": {}}
    for path in sorted(root.glob(f"lightning_logs/version_{version}/metrics.csv")):
        for row in csv.DictReader(path.open()):
            for key, values in logged.items():
                if row.get(key):
                    assert int(row["step"]) not in values, f"step {row['step']} logged twice"
                    values[int(row["step"])] = float(row[key])
    return logged


@pytest.mark.parametrize(
    ("accumulate", "batches", "stopped_at"),
    [
        (1, 4, 4),  # Ctrl-C after step 4, in the middle of the second epoch
        # Ctrl-C after batch 4, whose gradients wait for batch 5: the fit stops after that step
        (2, 4, 3),
        (1, 3, 3),  # Ctrl-C after the last step of the first epoch: stops after its validation
    ],
)
def test_an_interrupted_fit_resumes_to_the_losses_of_an_uninterrupted_one(
    accumulate, batches, stopped_at, tiny_model_dir, tiny_data_dir, tmp_path, capfd, caplog, recwarn
):
    extra = (f"--trainer.accumulate_grad_batches={accumulate}",)
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "straight", *extra))
    straight = _logged(tmp_path / "straight")
    steps = EPOCHS * (STEPS_PER_EPOCH if accumulate == 1 else 2)  # the odd last batch steps too
    assert sorted(straight["train/loss"]) == list(range(steps))

    run = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        main(
            _args(
                tiny_model_dir,
                tiny_data_dir,
                run,
                *extra,
                "--trainer.callbacks+=test_resume.SignalAt",
                f"--trainer.callbacks.batches={batches}",
            )
        )
    assert stopped.value.code == 128 + signal.SIGINT
    err = capfd.readouterr().err
    checkpoint = run / "checkpoints" / "interrupted.ckpt"
    assert f"stopped by SIGINT after step {stopped_at}\n  checkpoint: {checkpoint}" in err
    assert "--ckpt_path last" in err
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert sorted(_logged(run)["train/loss"]) == list(range(stopped_at))

    main(_args(tiny_model_dir, tiny_data_dir, run, *extra, "--ckpt_path=last"))
    resumed = _logged(run)
    assert f"Restoring states from the checkpoint path at {checkpoint}" in caplog.text
    assert sorted(resumed["train/loss"]) == sorted(straight["train/loss"])
    differences = [abs(resumed["train/loss"][s] - v) for s, v in straight["train/loss"].items()]
    print("per-step |resumed - straight| train/loss:", differences)
    assert max(differences) < 1e-6, differences
    assert resumed["val/loss"] == pytest.approx(straight["val/loss"], abs=1e-6)
    assert not checkpoint.exists(), "a completed resume leaves its interrupted checkpoint behind"
    # Lightning warns that a mid-epoch resume repeats data; the sampler skips it, so it must not
    assert not [w for w in recwarn if "dataloader is not resumable" in str(w.message)]


def test_a_checkpoint_saved_before_a_validation_resumes_exactly(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    """A fit that crashed after a ModelCheckpoint's save at step 3, made before the validation
    that ends the epoch: ``--ckpt_path last`` finds it, and the validation the resumed fit skips
    must not shift its dropout."""
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "straight"))
    straight = _logged(tmp_path / "straight")["train/loss"]

    run = tmp_path / "run"
    every_3_steps = (
        "--trainer.callbacks+=ModelCheckpoint",
        f"--trainer.callbacks.dirpath={run / 'saved'}",
        "--trainer.callbacks.every_n_train_steps=3",
        "--trainer.callbacks.save_last=true",
    )
    crash = ("--trainer.callbacks+=test_resume.CrashAt", "--trainer.callbacks.batches=4")
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_args(tiny_model_dir, tiny_data_dir, run, *every_3_steps, *crash))
    assert not (run / "checkpoints").exists(), "a crash is not an interrupt"
    main(_args(tiny_model_dir, tiny_data_dir, run, *every_3_steps, "--ckpt_path=last"))
    resumed = _logged(run, version="1")["train/loss"]
    assert sorted(resumed) == [3, 4, 5]
    assert [resumed[step] for step in (3, 4, 5)] == [straight[step] for step in (3, 4, 5)]


def test_sampled_generations_leave_training_randomness_alone(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    """GenerateSamples sampling after each validation draws from its own copy of the random
    state, so the dropout masks after it, and a resume from a checkpoint saved before it, match."""
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "plain"))
    sampling = (
        "--trainer.callbacks+=lit_dpo.callbacks.GenerateSamples",
        "--trainer.callbacks.do_sample=true",
        "--trainer.callbacks.max_new_tokens=4",
    )
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "sampling", *sampling))
    assert _logged(tmp_path / "sampling") == _logged(tmp_path / "plain")


def test_a_resume_with_other_data_or_batch_settings_stops_with_what_changed(
    tiny_model_dir, tiny_data_dir, tmp_path, capfd
):
    interrupt = ("--trainer.callbacks+=test_resume.SignalAt", "--trainer.callbacks.batches=1")
    with pytest.raises(SystemExit):
        main(_args(tiny_model_dir, tiny_data_dir, tmp_path, *interrupt))
    for changed, expected in (
        ("--data.train_size=4", "6 train pairs, these data settings give 4"),
        ("--data.batch_size=1", "2 pairs per batch over all devices, this fit 1"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(_args(tiny_model_dir, tiny_data_dir, tmp_path, changed, "--ckpt_path=last"))
        assert stopped.value.code == 2
        assert f"lit-dpo: error: the checkpoint was trained on {expected}" in capfd.readouterr().err


def test_ckpt_path_last_without_a_checkpoint_starts_anew_and_a_new_fit_keeps_an_old_interrupt(
    tiny_model_dir, tiny_data_dir, tmp_path, caplog
):
    one_step = "--trainer.max_steps=1"
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "empty", one_step, "--ckpt_path=last"))
    assert "--ckpt_path last: no checkpoint to resume from" in caplog.text
    assert sorted(_logged(tmp_path / "empty")["train/loss"]) == [0]

    interrupted = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    interrupted.parent.mkdir(parents=True)
    interrupted.write_bytes(b"another fit's")
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path / "run", one_step))
    assert f"{interrupted} holds an interrupted fit; this fit starts anew" in caplog.text
    assert interrupted.read_bytes() == b"another fit's"


def test_ctrl_c_during_the_last_step_lets_the_fit_end_as_usual(
    tiny_model_dir, tiny_data_dir, tmp_path, capfd
):
    signal_last_step = (
        "--trainer.callbacks+=test_resume.SignalAt",
        f"--trainer.callbacks.batches={EPOCHS * STEPS_PER_EPOCH}",
    )
    main(_args(tiny_model_dir, tiny_data_dir, tmp_path, *signal_last_step))
    assert "that was the last step; the fit ends as usual" in capfd.readouterr().err
    assert (tmp_path / "fit_metrics.json").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(
    tiny_model_dir, tiny_data_dir, tmp_path, capfd
):
    extra = (
        "--trainer.callbacks+=test_resume.SignalAt",
        "--trainer.callbacks.batches=1",
        "--trainer.callbacks.times=2",
    )
    with pytest.raises(SystemExit) as stopped:
        main(_args(tiny_model_dir, tiny_data_dir, tmp_path, *extra))
    assert stopped.value.code == 1  # Lightning's exit for a KeyboardInterrupt
    assert "stopped at once, without a checkpoint" in capfd.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def test_sigterm_leaves_an_adapter_and_a_checkpoint_that_resumes(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    args = _args(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--trainer.callbacks+=test_resume.Pace",
        "--trainer.max_epochs=20",
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]),
        "OMP_NUM_THREADS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_dpo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    output = []
    try:
        while "finished step 2\n" not in output:
            output.append(lines.get(timeout=60))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    time.sleep(0.1)
    while not lines.empty():
        output.append(lines.get())
    text = "".join(output)
    assert "SIGTERM received: stopping after this training step" in text
    assert "lit-dpo: stopped by SIGTERM after step " in text
    assert "lit-dpo fit " in text and "--ckpt_path last" in text
    stopped_at = int(text.split("lit-dpo: stopped by SIGTERM after step ")[1].split()[0])
    assert 2 <= stopped_at < 20 * STEPS_PER_EPOCH

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert any(p.abs().sum() > 0 for n, p in adapter.named_parameters() if "lora_B" in n)

    checkpoint = torch.load(tmp_path / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert checkpoint["global_step"] == stopped_at
    main(
        _args(
            tiny_model_dir,
            tiny_data_dir,
            tmp_path,
            "--ckpt_path=last",
            f"--trainer.max_steps={stopped_at + 2}",
            "--trainer.max_epochs=20",
        )
    )
    steps = sorted(_logged(tmp_path)["train/loss"])
    assert steps == list(range(stopped_at + 2))


def test_resume_command_replaces_any_ckpt_path():
    argv = ["fit", "--config", "my run.yaml", "--ckpt_path", "a.ckpt", "--ckpt_path=b.ckpt"]
    assert resume_command(argv) == "lit-dpo fit --config 'my run.yaml' --ckpt_path last"


def test_a_checkpoint_at_the_end_of_an_epoch_resumes_at_the_start_of_the_next():
    fresh = PairSampler(list(range(10)), batch_size=2, seed=1)
    fresh.set_epoch(1)
    resumed = PairSampler(list(range(10)), batch_size=2, seed=1)
    resumed.resume(epoch=0, consumed=10)
    # no set_epoch: DataLoader workers draw indices before Lightning sets the epoch
    assert list(resumed) == list(fresh)
