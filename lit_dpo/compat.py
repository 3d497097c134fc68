"""Private APIs of Lightning, transformers and datasets that lit-dpo relies on, in one place.

Each is used because no public API does the job. Each says which versions it was checked on, and
``tests/test_compat.py`` exercises every one against the installed versions, so a release that
changes one fails there, by name, instead of somewhere inside a fit.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

# The versions every accessor below was checked on.
CHECKED_ON = {"lightning": "2.6.6", "transformers": "5.24.0", "datasets": "5.2.0"}


class ChangedAPIError(RuntimeError):
    """An installed library no longer has a private API lit-dpo uses."""


def _changed(what: str, library: str) -> ChangedAPIError:
    return ChangedAPIError(
        f"{what} is gone from the installed {library} (lit-dpo was checked on {library} "
        f"{CHECKED_ON[library]}); install that version or update lit_dpo/compat.py"
    )


def attached_trainer(module: Any) -> Any | None:
    """The trainer a LightningModule is attached to, or None (``LightningModule._trainer``).

    ``module.trainer`` raises when there is none; a module built outside a fit (tests, scripts)
    loads its policy on the CPU instead. Checked on Lightning 2.5-2.6.
    """
    if not hasattr(module, "_trainer"):
        raise _changed("LightningModule._trainer", "lightning")
    return module._trainer


def request_sigterm_exit(trainer: Any) -> None:
    """Make a fit leave through Lightning's own SIGTERM exit once the current batch is done.

    Sets ``trainer._signal_connector.received_sigterm``, which the training loop checks after
    each batch (and after a validation due then) to raise ``SIGTERMException``; Lightning resumes
    from such an exit without repeating that validation. Checked on Lightning 2.5-2.6.
    """
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "received_sigterm"):
        raise _changed("Trainer._signal_connector.received_sigterm", "lightning")
    connector.received_sigterm = True


def last_checkpoints(callback: Any, trainer: Any) -> set[str]:
    """The files a ModelCheckpoint offers for ``--ckpt_path last``
    (``ModelCheckpoint._find_last_checkpoints``, what Lightning's checkpoint connector calls).
    Checked on Lightning 2.5-2.6."""
    find = getattr(callback, "_find_last_checkpoints", None)
    if find is None:
        raise _changed("ModelCheckpoint._find_last_checkpoints", "lightning")
    return {str(path) for path in find(trainer)}


# ModelCheckpoint methods AdapterCheckpoint overrides to write an adapter beside every checkpoint
# it saves and to remove it with the checkpoint: (trainer, filepath). Checked on Lightning 2.5-2.6.
MODEL_CHECKPOINT_FILE_HOOKS = ("_save_checkpoint", "_remove_checkpoint")


def check_model_checkpoint_hooks(model_checkpoint: type) -> None:
    """Raise when ModelCheckpoint's file hooks are gone or take other arguments."""
    for name in MODEL_CHECKPOINT_FILE_HOOKS:
        method = getattr(model_checkpoint, name, None)
        if method is None or list(inspect.signature(method).parameters) != [
            "self",
            "trainer",
            "filepath",
        ]:
            raise _changed(f"ModelCheckpoint.{name}(trainer, filepath)", "lightning")


def epoch_batches_processed(trainer: Any) -> int:
    """Batches the fit loop has processed in the current epoch (each one's optimizer step done, or
    its micro-batch's gradients added): ``fit_loop.epoch_loop.batch_progress.current.processed``.
    Checked on Lightning 2.5-2.6."""
    try:
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed
    except AttributeError as error:
        raise _changed("fit_loop.epoch_loop.batch_progress.current.processed", "lightning") from (
            error
        )


def attn_implementation(model: Any) -> str:
    """The attention a transformers model runs (``config._attn_implementation``: ``sdpa``,
    ``eager``, ``flash_attention_2``...). Checked on transformers 4.40-5.24."""
    config = model.config
    if not hasattr(config, "_attn_implementation"):
        raise _changed("PretrainedConfig._attn_implementation", "transformers")
    return config._attn_implementation


def dataset_fingerprint(dataset: Any) -> str:
    """The fingerprint ``datasets`` keys a Dataset's cache by (``Dataset._fingerprint``).
    Checked on datasets 3.0-5.2."""
    if not hasattr(dataset, "_fingerprint"):
        raise _changed("Dataset._fingerprint", "datasets")
    return dataset._fingerprint


def logged_step(trainer: Any) -> int:
    """The step Lightning gives the metrics it sends to loggers now: optimizer steps completed
    before the current batch's (``fit_loop.epoch_loop._batches_that_stepped``, which
    ``_LoggerConnector.log_metrics`` passes as ``step``). Checked on Lightning 2.5-2.6."""
    try:
        return trainer.fit_loop.epoch_loop._batches_that_stepped
    except AttributeError as error:
        raise _changed("fit_loop.epoch_loop._batches_that_stepped", "lightning") from error


@contextlib.contextmanager
def gguf_progress_bar(enabled: bool) -> Iterator[None]:
    """transformers' GGUF loader draws its own tqdm bar (``modeling_gguf_pytorch_utils.tqdm``),
    which ``transformers.utils.logging.disable_progress_bar()`` does not reach; with ``enabled``
    false it is swapped for a silent one while the block runs. Checked on transformers 5.24."""
    if enabled:
        yield
        return
    module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    original = getattr(module, "tqdm", None)
    if original is None:
        raise _changed("transformers.modeling_gguf_pytorch_utils.tqdm", "transformers")
    module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original
