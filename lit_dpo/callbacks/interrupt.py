"""Stop a fit cleanly on Ctrl-C or SIGTERM, and resume it exactly with ``--ckpt_path last``.

A resumed fit computes what the uninterrupted one would have when the checkpoint holds everything a
step depends on: the LoRA weights, optimizer and schedule (``DPOModule``), the loops' progress
(Lightning), the position in the epoch's pair order (``PreferenceDataModule.state_dict``), and the
random state LoRA dropout draws from, kept per rank by ``InterruptCheckpoint`` in every checkpoint.

A signal does not stop the process where it lands (it could land inside ``optimizer.step``, or
between micro-batches whose summed gradients no checkpoint holds). The first Ctrl-C or SIGTERM asks
for a stop; after the next optimizer step, the ranks agree, and the fit leaves through Lightning's
own SIGTERM exit (``SIGTERMException``), which lets a validation due after that step run first and
which Lightning resumes from without repeating it. On that exit the callback writes the checkpoint
and the adapter, then prints how to resume. A second Ctrl-C stops at once, without a checkpoint.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_dpo.callbacks.adapters import final_adapter_path, save_adapter
from lit_dpo.compat import last_checkpoints, request_sigterm_exit

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def rng_states() -> dict[str, Any]:
    """This process's global random states: torch (CPU and the current CUDA device), numpy, Python.

    Only the current CUDA device: asking for every device would create a context on each GPU from
    every DDP rank. Values are tensors, numbers and tuples, so ``torch.load(weights_only=True)``
    reads them.
    """
    name, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (name, keys.tolist(), position, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned."""
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def resume_command(argv: list[str]) -> str:
    """The command ``argv`` (after ``lit-dpo``) with ``--ckpt_path last`` instead of any other."""
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--ckpt_path":
            skip_value = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["lit-dpo", *kept, "--ckpt_path", "last"])


# what gloo and NCCL say when a process at the other end died or stopped answering
_LOST_PEER = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Connection refused",
    "Broken pipe",
    "Timed out waiting",
    "timed out",
    "NCCL communicator was aborted",
    "Watchdog caught collective operation timeout",
)


def lost_peer_message(error: BaseException) -> str | None:
    """One line for a fit that stopped because another process of its distributed run died or
    stopped answering (a machine down, a process killed), with how to resume; None for any other
    error.

    A process that dies is noticed at once (its connections close); one that hangs, after the
    process group's timeout (``DDPStrategy``'s ``timeout``: ``--trainer.strategy.timeout``).
    """
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen)
        distributed = isinstance(seen, getattr(torch.distributed, "DistError", ())) or any(
            word in text for word in ("gloo", "Gloo", "NCCL", "c10d")
        )
        if isinstance(seen, RuntimeError) and distributed and any(m in text for m in _LOST_PEER):
            # "[.../pair.cc:537] Read error [127.0.0.1]:20885: Connection reset by peer. This..."
            what = text.split("] ", 1)[-1] if text.startswith("[") else text
            what = what.split(". ", 1)[0].strip().splitlines()[0]
            return (
                f"another process of this distributed run stopped or stopped answering ({what}); "
                "this one stopped too. Start the run again on every machine with --ckpt_path "
                "last added: it resumes from the last checkpoint"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def last_checkpoint(trainer: Trainer) -> str | None:
    """What ``--ckpt_path last`` resumes: the newest of an interrupted fit's checkpoint and those
    Lightning's own ``last`` looks at (each ModelCheckpoint's ``last*.ckpt``, the file of an
    OnExceptionCheckpoint); None when there is none.

    Lightning alone would not find the interrupted fit's checkpoint, and looks for a ModelCheckpoint
    without a ``dirpath`` in the logger's next version folder, where the previous run wrote nothing.
    """
    candidates: set[Path] = set()
    for callback in trainer.callbacks:
        if isinstance(callback, InterruptCheckpoint):
            candidates.add(callback.path(trainer))
        elif isinstance(callback, OnExceptionCheckpoint):
            candidates.add(Path(callback.ckpt_path))
        elif isinstance(callback, ModelCheckpoint):
            # the method Lightning's checkpoint connector calls for its "last"
            candidates |= {Path(p) for p in last_checkpoints(callback, trainer)}
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        log.warning(
            "--ckpt_path last: no checkpoint to resume from (looked for %s); starting a new fit",
            ", ".join(sorted(str(p) for p in candidates)) or "none configured",
        )
        return None
    return str(max(existing, key=lambda path: path.stat().st_mtime))


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM, stop after the current optimizer step with a checkpoint and adapter.

    The checkpoint goes to ``<dirpath>/<filename>.ckpt``, the adapter where ``SaveAdapter`` puts
    the final one; ``lit-dpo fit ... --ckpt_path last`` resumes from it, and a resumed fit that
    completes removes it. Every checkpoint (this one or a ModelCheckpoint's) also carries each
    rank's random state, restored before the first step of a resumed fit.

    Args:
        dirpath: folder of the checkpoint; ``<trainer.default_root_dir>/checkpoints`` when None.
        filename: checkpoint name, without ``.ckpt``.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "interrupted") -> None:
        self.dirpath = dirpath
        self.filename = filename
        # shown in the message on exit; the CLI sets the exact command
        self.resume_hint = "lit-dpo fit --config ... --ckpt_path last"
        self._requested: signal.Signals | None = None
        self._stopping = False
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._pending_rng: list[dict[str, Any]] | None = None
        self._step_at_batch_start = 0

    def path(self, trainer: Trainer) -> Path:
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        return folder / f"{self.filename}.ckpt"

    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while a checkpoint is assembled (saving is collective).
        states = rng_states()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            return {"rng": gathered}
        return {"rng": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = state_dict.get("rng")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.path(trainer)
        if trainer.is_global_zero and trainer.ckpt_path is None and path.exists():
            log.warning(
                "%s holds an interrupted fit; this fit starts anew and will replace it if it is "
                "interrupted too (add --ckpt_path last to continue the interrupted one instead)",
                path,
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._requested, self._stopping = None, False
        self._install_handlers()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_at_batch_start = trainer.global_step
        if self._pending_rng is not None:
            # Here rather than at load time: nothing between the save and the next step may draw.
            states, self._pending_rng = self._pending_rng, None
            if trainer.global_rank < len(states):
                set_rng_states(states[trainer.global_rank])
            else:
                log.warning(
                    "the checkpoint holds random states of %d ranks, not of rank %d; its dropout "
                    "masks will differ from an uninterrupted fit's",
                    len(states),
                    trainer.global_rank,
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step_at_batch_start:
            return  # accumulating gradients: no checkpoint holds them, so stop after the step
        # every rank takes part, so that all stop after the same step
        requested = trainer.strategy.reduce_boolean_decision(self._requested is not None, all=False)
        if not requested or trainer.global_step >= trainer.estimated_stepping_batches:
            return  # after the last step the fit ends and saves its adapter anyway
        self._stopping = True
        # Lightning's SIGTERM exit: raised once this batch (and a validation due after it) is done
        request_sigterm_exit(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handlers()
        if self._requested is not None and trainer.is_global_zero:
            print("lit-dpo: that was the last step; the fit ends as usual", file=sys.stderr)
        path = self.path(trainer)
        resumed_from_it = trainer.ckpt_path and Path(trainer.ckpt_path).resolve() == path.resolve()
        if trainer.is_global_zero and resumed_from_it and path.exists():
            path.unlink()  # done: --ckpt_path last must not go back to it

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception) -> None:
        self._restore_handlers()
        if isinstance(exception, SIGTERMException) and self._stopping:
            self._save(trainer, pl_module)
            # a shell or scheduler sees the code of a process ended by that signal
            exception.code = 128 + (self._requested or signal.SIGTERM)
        elif isinstance(exception, KeyboardInterrupt) and self._requested is not None:
            print("lit-dpo: stopped at once, without a checkpoint", file=sys.stderr, flush=True)

    def _save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.path(trainer)
        staging = path.with_name(f".{path.name}.partial")
        trainer.save_checkpoint(staging, weights_only=False)  # every rank assembles; rank 0 writes
        adapter = final_adapter_path(trainer)
        if not trainer.is_global_zero:
            return
        os.replace(staging, path)  # a kill while writing leaves the previous checkpoint whole
        save_adapter(pl_module, trainer, adapter)
        # under DDP the signal may have reached another rank only
        cause = self._requested.name if self._requested else "a signal to another rank"
        print(
            f"lit-dpo: stopped by {cause} after step {trainer.global_step}\n"
            f"  checkpoint: {path}\n  adapter:    {adapter}\n"
            f"resume with:\n  {self.resume_hint}",
            file=sys.stderr,
            flush=True,
        )

    def _install_handlers(self) -> None:
        try:
            for signum in SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals reach only the main one
            self._previous_handlers.clear()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _handle(self, signum: int, frame) -> None:
        if self._requested is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self._requested = signal.Signals(signum)
        again = " (Ctrl-C again to stop at once, without one)" if signum == signal.SIGINT else ""
        # os.write, not print: a buffered write interrupted by this handler must not be re-entered
        os.write(
            2,
            f"\nlit-dpo: {self._requested.name} received: stopping after this training step with "
            f"a checkpoint{again}\n".encode(),
        )
