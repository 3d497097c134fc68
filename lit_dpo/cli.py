"""``lit-dpo``: one command line for every command, all built by jsonargparse.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI over ``DPOModule`` and
``PreferenceDataModule`` (``lit-dpo fit --config configs/cpu.yaml --model.objective.beta 0.2``). The
other commands are functions whose typed signatures and docstrings become their arguments and
``--help`` (as LitGPT's ``__main__``); every command takes ``--config FILE.yaml`` and
``--print_config``. ``data`` and ``preflight`` also read a fit config, through ``parse_config``.
"""

from __future__ import annotations

import difflib
import gc
import importlib
import inspect
import json
import logging
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import (
    ActionConfigFile,
    ArgumentParser,
    DefaultHelpFormatter,
    Namespace,
    get_loader,
    set_loader,
)
from lightning import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lit_dpo.callbacks import (
    HealthAlarms,
    InterruptCheckpoint,
    MetricHistory,
    ProgressLog,
    RunSummary,
    SaveAdapter,
)
from lit_dpo.callbacks.atomic_checkpoint import (
    clear_leftover_outputs,
    unwritable_outputs,
    use_atomic_checkpoints,
)
from lit_dpo.callbacks.interrupt import last_checkpoint, lost_peer_message, resume_command
from lit_dpo.compat import check_cli_checkpoint_hook
from lit_dpo.data import PreferenceDataModule
from lit_dpo.errors import ConfigError, LitDPOError
from lit_dpo.files import is_out_of_space, write_text_atomically
from lit_dpo.models.reference import describe_reference
from lit_dpo.progress import is_terminal, quiet_library_bars
from lit_dpo.reporting.model_card import LOGPS_ROWS
from lit_dpo.train import DPOModule
from lit_dpo.train.settings import MOVED_KEYS, move_keys, moved_key_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """A command beside LightningCLI's: the function that is it, found by name when it runs.

    Attributes:
        module: the module holding the function.
        function: its name; its typed parameters and their docstring lines are the arguments.
        reads_fit_config: the first parameter takes the parsed fit config (``FitConfig``), and
            the command accepts every fit setting (``--config``, ``--model.*``, ``--data.*``...).
    """

    module: str
    function: str
    reads_fit_config: bool = False
    summary: str = ""


COMMANDS = {
    "data": Command(
        "lit_dpo.data_report", "data_report", True, "what is in the preference data"
    ),
    "preflight": Command(
        "lit_dpo.preflight.command", "preflight", True, "will a config fit its device, how long"
    ),
    "compare": Command("lit_dpo.compare.command", "compare", summary="reference vs policy answers"),
    "judge": Command(
        "lit_dpo.compare.judge_page.command", "judge", summary="blind A/B page for human judges"
    ),
    "serve": Command("lit_dpo.serve.command", "serve", summary="an OpenAI-compatible HTTP API"),
    "sweep": Command(
        "lit_dpo.sweep", "sweep", True, "fits over a grid of settings, one reference table"
    ),
    "export": Command(
        "lit_dpo.export.command", "export", summary="merge the adapter into its base, or GGUF"
    ),
    "plot": Command("lit_dpo.plot", "plot", summary="a run's training curves as a PNG"),
}

# LightningCLI's subcommands
FIT_COMMANDS = ("fit", "validate", "test", "predict")


class _KeepEpilogLines(DefaultHelpFormatter):
    """jsonargparse's help, with the epilog (the list of commands) printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class SaveConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` of the run, in the logger's folder, or in
    ``trainer.default_root_dir`` for a logger that has none: Lightning's own callback fails there
    (an MLflow database or server store)."""

    def __init__(self, parser: LightningArgumentParser, config: Namespace, **kwargs: Any) -> None:
        super().__init__(parser, config, **{**kwargs, "save_to_log_dir": False})
        self.folder = ""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # log_dir is a broadcast under DDP: every rank must read it
        self.folder = trainer.log_dir or trainer.default_root_dir
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        path = Path(self.folder) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config,
            str(path),
            skip_none=False,
            overwrite=self.overwrite,
            multifile=self.multifile,
        )


# a fit setting given on the command line: --model.NAME or --model.NAME=VALUE
_MODEL_FLAG = re.compile(r"--model\.(\w+)(=.*)?$", re.DOTALL)
# how the fit commands read YAML (config files and values): jsonargparse's own loader, then
# lit-dpo 0.2's flat model settings moved into their groups (moved_config)
CONFIG_MODE = "lit_dpo_yaml"


def moved_args(args: list[str]) -> list[str]:
    """The command line with each 0.2 flag (``--model.beta``) renamed to its group's
    (``--model.objective.beta``), and a line saying so for each."""
    renamed = []
    for arg in args:
        flag = _MODEL_FLAG.match(arg)
        if flag and flag.group(1) in MOVED_KEYS:
            log.warning(moved_key_message(flag.group(1)))
            arg = f"--model.{MOVED_KEYS[flag.group(1)]}{flag.group(2) or ''}"
        renamed.append(arg)
    return renamed


def moved_config(config: Any) -> Any:
    """A loaded fit config (its ``model:`` mapping at the top, or under a command name) with each
    0.2 flat key moved into its group, and a line saying so for each; anything else as it is."""
    if not isinstance(config, dict):
        return config
    config = dict(config)
    for command in FIT_COMMANDS:
        if isinstance(config.get(command), dict):
            config[command] = moved_config(config[command])
    if isinstance(config.get("model"), dict):
        config["model"], old_keys = move_keys(config["model"])
        for old in old_keys:
            log.warning(moved_key_message(old))
    return config


set_loader(
    CONFIG_MODE,
    lambda text: moved_config(get_loader("yaml")(text)),
    # what the YAML loader raises on a value that is not YAML, for jsonargparse to try it as text
    (yaml.YAMLError,),
)


class DPOCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        # the command as typed, for the resume command an interrupted fit prints
        self.argv = list(given) if isinstance(given, list) else sys.argv[1:]
        kwargs["parser_kwargs"] = {"parser_mode": CONFIG_MODE, **kwargs.get("parser_kwargs", {})}
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's parse, with 0.2's flat settings (``--model.beta``, ``model: {beta:}``)
        moved into their groups, a line saying so for each (config files: ``CONFIG_MODE``)."""
        if args is None or isinstance(args, list):
            self.config = parser.parse_args(moved_args(sys.argv[1:] if args is None else args))
        else:
            super().parse_arguments(parser, moved_config(args))

    def _parse_ckpt_path(self) -> None:
        # Lightning merges a --ckpt_path checkpoint's hyperparameters into the config: a 0.2
        # checkpoint's are flat, moved into their groups first (compat checks this hook)
        parse_object = self.parser.parse_object
        self.parser.parse_object = lambda cfg, *a, **k: parse_object(moved_config(cfg), *a, **k)
        try:
            super()._parse_ckpt_path()
        finally:
            del self.parser.parse_object

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The data is formatted with the chat template of the model being trained.
        parser.link_arguments("model.model", "data.tokenizer")
        parser.link_arguments("model.load.trust_remote_code", "data.trust_remote_code")
        parser.add_lightning_class_args(SaveAdapter, "save_adapter")
        parser.add_lightning_class_args(HealthAlarms, "health")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt")
        parser.add_lightning_class_args(ProgressLog, "progress")

    def fit(self, model: DPOModule, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """``trainer.fit``; ``--ckpt_path last`` also finds an interrupted fit's checkpoint."""
        if ckpt_path == "last":
            ckpt_path = last_checkpoint(self.trainer)
        for callback in self.trainer.callbacks:
            if isinstance(callback, InterruptCheckpoint):
                callback.resume_hint = resume_command(self.argv)
        self.trainer.fit(model, ckpt_path=ckpt_path, **kwargs)

    def before_fit(self) -> None:
        # and KTO's KL baseline needs other rows in the batch: refused before anything loads
        self._before_run(self.datamodule.hparams.batch_size)

    def before_validate(self) -> None:
        self._before_run()

    def before_test(self) -> None:
        self._before_run()

    def before_predict(self) -> None:
        self._before_run()

    def _before_run(self, batch_size: int | None = None) -> None:
        # Before data or model loads: missing paths, 4-bit without bitsandbytes, bf16 on a T4.
        self.model.check_run(self.trainer, batch_size)
        unwritable = unwritable_outputs(self.trainer)
        if unwritable:
            raise ConfigError("; ".join(unwritable))
        # a SIGKILL or a full disk mid-save leaves the previous checkpoint, never half of one
        use_atomic_checkpoints(self.trainer)
        clear_leftover_outputs(self.trainer)  # and the next run removes that half
        # the reports read the run's own metrics, whatever the logger
        MetricHistory.of(self.trainer)
        # lines or bars, decided before preparing data prints any
        for callback in self.trainer.callbacks:
            if isinstance(callback, ProgressLog):
                callback.apply(self.trainer)

    def after_fit(self) -> None:
        self._report("fit")

    def after_validate(self) -> None:
        self._report("validate")

    def _report(self, stage: str) -> None:
        """Print reference vs policy on the held-out pairs, and keep the numbers as JSON with what
        the reference was (``reference``: ``base`` or ``adapter``, and ``reference_adapter``)."""
        metrics = MetricHistory.of(self.trainer).last_validation()
        if not self.trainer.is_global_zero or not metrics:
            return
        reference_adapter = getattr(self.model, "reference_adapter", None)
        reference = describe_reference(reference_adapter)
        lines = [
            f"\nheld-out preference ({stage}): reference = {reference}, "
            "policy = the trained adapter",
            f"{'':34}{'reference':>10}{'policy':>8}",
        ]
        for label, reference_key, policy_key in LOGPS_ROWS:
            if reference_key not in metrics:  # unpaired held-out rows (KTO) have no pairs
                continue
            lines.append(f"{label:34}{metrics[reference_key]:10.3f}{metrics[policy_key]:8.3f}")
        if "val/rewards/auc" in metrics:  # unpaired held-out rows: desirable vs undesirable
            lines.append(
                f"{'reward AUC, desirable vs undesirable':34}{0.5:10.3f}"
                f"{metrics['val/rewards/auc']:8.3f}"
            )
        if "val/rewards/accuracies" in metrics:  # objectives that define a reward
            lines.append(
                f"{'implicit-reward accuracy / margin':34}{'':10}"
                f"{metrics['val/rewards/accuracies']:8.3f} / {metrics['val/rewards/margins']:.3f}"
            )
        print("\n".join(lines), flush=True)
        report: dict[str, Any] = {**metrics, "reference": "base"}
        if reference_adapter is not None:
            report.update(reference="adapter", reference_adapter=str(reference_adapter))
        path = Path(self.trainer.default_root_dir) / f"{stage}_metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(report, indent=2, sort_keys=True) + "\n")


check_cli_checkpoint_hook(LightningCLI)


@dataclass(frozen=True)
class FitConfig:
    """A fit config read as ``lit-dpo fit`` reads it, for commands that work from one.

    Attributes:
        model: the DPOModule it describes (settings checked; no weights loaded).
        data: the PreferenceDataModule it describes (no data loaded).
        trainer: the trainer's settings (``accelerator``, ``precision``...); no Trainer is built,
            so a GPU config parses on a machine without a GPU.
        config: the whole parsed config (``config.model.optimizer``...).
        files: the ``--config`` files given.
        dump: the fit config as YAML (the command's own settings left out): ``lit-dpo fit
            --config`` of a file holding it runs this config.
    """

    model: DPOModule
    data: PreferenceDataModule
    trainer: Namespace
    config: Namespace
    files: list[str]
    dump: str


class _FitConfigOnly(DPOCLI):
    """DPOCLI that parses and builds model and data, but no trainer, and also takes a command's
    own arguments at the top level."""

    def __init__(self, command: Callable | None, *args: Any, **kwargs: Any) -> None:
        self.command = command
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        if self.command is not None:
            skip = {next(iter(inspect.signature(self.command).parameters))}
            parser.add_function_arguments(self.command, as_group=False, skip=skip)

    def instantiate_trainer(self, **kwargs: Any) -> None:
        return None


def parse_config(
    args: list[str], command: Callable | None = None, prog: str = "lit-dpo"
) -> tuple[FitConfig, dict[str, Any]]:
    """Read a fit config (``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``) as ``fit``
    does, and, with ``command``, that function's own arguments (all but its first parameter).

    Returns:
        ``(fit_config, command_arguments)``.
    """
    description = _description(command) if command is not None else None
    with warnings.catch_warnings():
        # LightningCLI warns when given args while sys.argv also holds some: here by design
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = _FitConfigOnly(
            command,
            DPOModule,
            PreferenceDataModule,
            run=False,
            args=args,
            auto_configure_optimizers=False,
            parser_kwargs={"prog": prog, "description": description},
        )
    own = {}
    fit_only = cli.config.clone()
    if command is not None:
        names = list(inspect.signature(command).parameters)[1:]
        own = {name: cli.config[name] for name in names}
        for name in names:
            del fit_only[name]
    files = [str(path) for path in (cli.config.get("config") or [])]
    dump = cli.parser.dump(fit_only, skip_none=False)
    fit = FitConfig(cli.model, cli.datamodule, cli.config.trainer, cli.config, files, dump)
    return fit, own


def command_parser(function: Callable, prog: str) -> ArgumentParser:
    """A parser of ``function``'s typed parameters, with ``--config`` and ``--print_config``."""
    parser = ArgumentParser(prog=prog, description=_description(function))
    parser.add_argument(
        "--config", action=ActionConfigFile, help="a YAML file holding any of these settings"
    )
    parser.add_function_arguments(function, as_group=False)
    return parser


def parse_command(function: Callable, args: list[str], prog: str) -> dict[str, Any]:
    """``function``'s keyword arguments from the command line (and any ``--config`` file)."""
    parsed = command_parser(function, prog).parse_args(args)
    return {name: parsed[name] for name in inspect.signature(function).parameters}


def run_command(name: str, args: list[str]) -> Any:
    """Parse ``args`` for the command ``name``, run it, and return what it returns."""
    command = COMMANDS[name]
    function = getattr(importlib.import_module(command.module), command.function)
    prog = f"lit-dpo {name}"
    if not is_terminal(sys.stderr):
        # compare, serve and export load models too: a log file cannot hold the frames of
        # transformers' "Loading weights" bar (fit decides this in ProgressLog.apply)
        quiet_library_bars()
    if command.reads_fit_config:
        fit, own = parse_config(args, function, prog)
        return function(fit, **own)
    return function(**parse_command(function, args, prog))


def _description(function: Callable) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.split("\n\n")[0]


def main(args: list[str] | None = None) -> None:
    try:
        _main(args)
    finally:
        if args is None:
            # The program ends here. Python's last garbage collections would walk every object
            # torch, Lightning and PEFT created (1-2 s per command on 2 cores) only to free memory
            # the exit frees anyway; frozen objects are skipped. Files and loggers are closed by
            # then (Lightning's teardown, atexit). Not when called from Python (tests): there
            # the objects must stay collectable.
            gc.freeze()


def _main(args: list[str] | None) -> None:
    logging.basicConfig(format="%(message)s")
    logging.getLogger("lit_dpo").setLevel(logging.INFO)
    argv = sys.argv[1:] if args is None else args
    try:
        if argv and not argv[0].startswith("-") and argv[0] not in (*COMMANDS, *FIT_COMMANDS):
            close = difflib.get_close_matches(argv[0], [*FIT_COMMANDS, *COMMANDS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise LitDPOError(
                f"unknown command {argv[0]!r}{hint} Commands: "
                + ", ".join([*FIT_COMMANDS, *COMMANDS])
                + " (lit-dpo <command> --help)"
            )
        if argv and argv[0] in COMMANDS:
            result = run_command(argv[0], argv[1:])
            # a command says "not ok" (preflight: the step does not fit) with an exit status
            status = getattr(result, "exit_status", 0)
            if status:
                sys.exit(status)
            return
        run_lightning_cli(args)
    except LitDPOError as error:
        print(f"lit-dpo: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        # a write that files.py did not stage (a logger's metrics file): still one line
        if not is_out_of_space(error):
            raise
        written = error.filename or _file_being_written(error)
        where = f"{Path(written).parent} for {Path(written).name}" if written else "an output"
        print(f"lit-dpo: error: no space left in {where}; free space there or point the output "
              "elsewhere", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as error:
        # a process of a distributed run died or hung: one line instead of every rank's traceback
        line = lost_peer_message(error)
        if line is None:
            raise
        print(f"lit-dpo: error: {line}", file=sys.stderr, flush=True)
        sys.exit(2)
    except pickle.UnpicklingError as error:
        # LightningCLI reads a --ckpt_path checkpoint with torch.load(weights_only=True) to take
        # its hyperparameters, before anything else: a file holding objects refuses to load.
        first_line = str(error).strip().splitlines()[0]
        print(
            "lit-dpo: error: refused to unpickle a file that holds more than tensors and plain "
            f"values ({first_line}); checkpoints load only with torch.load(weights_only=True), "
            "as lit-dpo writes them",
            file=sys.stderr,
        )
        sys.exit(2)


def _file_being_written(error: BaseException) -> str | None:
    """The path a failed write was writing, read from the frames it failed in (a library's file
    object, fsspec's, keeps it as ``self.path``; others as a ``path`` or ``filepath`` argument),
    innermost first; None if none says."""
    frames = []
    traceback = error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame.f_locals)
        traceback = traceback.tb_next
    for names in reversed(frames):
        for value in (getattr(names.get("self"), "path", None), names.get("path"),
                      names.get("filepath")):
            if isinstance(value, str | Path) and str(value):
                return str(value)
    return None


def run_lightning_cli(args: list[str] | None = None) -> DPOCLI:
    """Run ``fit``, ``validate``, ``test`` or ``predict`` as ``lit-dpo`` does, and return the CLI
    (its ``trainer``, ``model`` and ``datamodule``); ``args`` None reads ``sys.argv``."""
    return DPOCLI(
        DPOModule,
        PreferenceDataModule,
        seed_everything_default=42,
        # The module builds its own optimizer and warmup schedule from model.optimizer.
        auto_configure_optimizers=False,
        save_config_callback=SaveConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "lit-dpo",
            "epilog": _commands_help(),
            "formatter_class": _KeepEpilogLines,
        },
        args=args,
    )


def _commands_help() -> str:
    lines = [f"  lit-dpo {name:10} {command.summary}" for name, command in COMMANDS.items()]
    return "other commands (each with --help):\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
