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
import logging
import warnings
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


def check_cli_checkpoint_hook(cli: type) -> None:
    """Raise when ``LightningCLI._parse_ckpt_path`` is gone or takes arguments: the step that
    merges a ``--ckpt_path`` checkpoint's hyperparameters into the config (with
    ``parser.parse_object``), which ``DPOCLI`` wraps to read 0.2 checkpoints' flat settings."""
    method = getattr(cli, "_parse_ckpt_path", None)
    if method is None or list(inspect.signature(method).parameters) != ["self"]:
        raise _changed("LightningCLI._parse_ckpt_path()", "lightning")


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


def enable_activation_checkpointing(model: Any, kwargs: dict[str, Any]) -> None:
    """Turn on gradient (activation) checkpointing of a transformers model with
    ``torch.utils.checkpoint`` ``kwargs``: ``activation_checkpointing_enable`` where transformers
    has it (5.2x), else its older name ``gradient_checkpointing_enable``, which 5.2x deprecates
    with a FutureWarning and 6 removes. Checked on transformers 5.25."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
        return
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise _changed("PreTrainedModel.activation_checkpointing_enable", "transformers")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_for_kbit_training(model: Any, checkpointing: bool, kwargs: dict[str, Any]) -> Any:
    """peft's ``prepare_model_for_kbit_training`` with gradient checkpointing's ``kwargs`` under
    the name the installed peft takes: ``activation_checkpointing_kwargs`` from peft 0.22, which
    deprecates the older ``gradient_checkpointing_kwargs`` with a FutureWarning (removed in 1.2).
    Checked on peft 0.21.2 and 0.22.0."""
    from peft import prepare_model_for_kbit_training

    parameters = inspect.signature(prepare_model_for_kbit_training).parameters
    name = (
        "activation_checkpointing_kwargs"
        if "activation_checkpointing_kwargs" in parameters
        else "gradient_checkpointing_kwargs"
    )
    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=checkpointing, **{name: kwargs}
    )


# Lines the libraries print that a lit-dpo user cannot act on, each matched exactly: the logger
# or warning's module, and the start of its message. Checked on the versions of NOTICES_CHECKED_ON.
NOTICES_CHECKED_ON = {
    "bitsandbytes": "0.50.2",
    "datasets": "5.2.0",
    "kernels": "0.19.1",
    "lightning": "2.6.6",
    "peft": "0.22.0",
    "torch": "2.13.0",
    "transformers": "5.25.0",
}
# (logger, message start): log records dropped by a filter on that logger.
QUIET_LOG_RECORDS = (
    # bitsandbytes imports on a CPU with AVX512-BF16 try a faster 4-bit kernel from the model hub
    # (``kernels.get_kernel``); offline, or without the ``kernels`` package, the import logs this
    # and falls back to bitsandbytes' own CPU kernel, the one every other CPU runs. Offline,
    # ``kernels`` first says it skips a check for that kernel.
    (
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community",
    ),
    (
        "kernels._internals.hf_hub",
        "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
    ),
    # datasets' JSON reader on a line that is not JSON, before lit-dpo's own error names the
    # file, the line and the fix
    ("datasets.packaged_modules.json.json", "Failed to load JSON from file"),
    # Lightning's advertisements for its cloud logger and model registry, at every Trainer.
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud"),
    # said when DPOModule asks for the run's optimizer steps to size its warmup schedule
    (
        "lightning.pytorch.utilities.rank_zero",
        "Loading `train_dataloader` to estimate number of stepping batches",
    ),
)
# (category, message regex, module regex): warnings ignored where that module raises them.
QUIET_WARNINGS = (
    # peft's PeftModel.__init__ reads the deprecated ``is_gradient_checkpointing`` of the base;
    # lit-dpo itself reads ``is_activation_checkpointing``...
    (
        FutureWarning,
        r"`is_gradient_checkpointing` is deprecated",
        r"transformers\.modeling_utils",
    ),
    # ... and prepare_model_for_kbit_training (4-bit) of peft before 0.22 calls the deprecated
    # ``gradient_checkpointing_enable``; lit-dpo itself calls enable_activation_checkpointing.
    (
        FutureWarning,
        r"`gradient_checkpointing_enable` is deprecated",
        r"transformers\.modeling_utils",
    ),
    # Lightning's CombinedLoader builds torch's deprecated ``LeafSpec`` for every DataLoader.
    (
        FutureWarning,
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"lightning\.pytorch\.utilities\._pytree",
    ),
)


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_library_notices() -> None:
    """Silence the library lines of :data:`QUIET_LOG_RECORDS` and :data:`QUIET_WARNINGS`, and
    nothing else: every other warning and log line of the libraries still shows.

    Run when ``lit_dpo`` is imported, before bitsandbytes is (it logs at import). Idempotent."""
    starts: dict[str, list[str]] = {}
    for name, start in QUIET_LOG_RECORDS:
        starts.setdefault(name, []).append(start)
    for name, wanted in starts.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropMessages)]:
            logger.removeFilter(old)
        logger.addFilter(_DropMessages(tuple(wanted)))
    for category, message, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
