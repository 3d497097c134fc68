"""``lit-dpo``: LightningCLI over DPOModule and PreferenceDataModule.

``lit-dpo fit --config configs/cpu.yaml``, ``lit-dpo validate --config ... --model.adapter PATH``,
``lit-dpo test``, ``lit-dpo predict``; any setting can be overridden (``--model.beta 0.2``).
"""

from __future__ import annotations

import importlib
import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_dpo.callbacks import SaveAdapter
from lit_dpo.datamodule import PreferenceDataModule
from lit_dpo.errors import LitDPOError
from lit_dpo.files import write_text_atomically
from lit_dpo.health import HealthAlarms, RunSummary
from lit_dpo.module import DPOModule
from lit_dpo.resume import InterruptCheckpoint, last_checkpoint, resume_command
from lit_dpo.run_checks import check_run

# Commands beside LightningCLI's fit/validate/test/predict: name -> module with main(argv).
EXTRA_COMMANDS: dict[str, str] = {
    "data": "lit_dpo.data_report",
    "compare": "lit_dpo.compare",
    "export": "lit_dpo.export",
    "plot": "lit_dpo.plot",
    "serve": "lit_dpo.serve",
    "preflight": "lit_dpo.preflight",
}

SUMMARY_ROWS = (
    ("log-prob accuracy, summed", "val/logps_accuracy/reference", "val/logps_accuracy/policy"),
    (
        "log-prob accuracy, per token",
        "val/logps_accuracy_per_token/reference",
        "val/logps_accuracy_per_token/policy",
    ),
)


class DPOCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        # the command as typed, for the resume command an interrupted fit prints
        self.argv = list(given) if isinstance(given, list) else sys.argv[1:]
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The data is formatted with the chat template of the model being trained.
        parser.link_arguments("model.model", "data.tokenizer")
        parser.link_arguments("model.trust_remote_code", "data.trust_remote_code")
        parser.add_lightning_class_args(SaveAdapter, "save_adapter")
        parser.add_lightning_class_args(HealthAlarms, "health")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt")

    def fit(self, model: DPOModule, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """``trainer.fit``; ``--ckpt_path last`` also finds an interrupted fit's checkpoint."""
        if ckpt_path == "last":
            ckpt_path = last_checkpoint(self.trainer)
        for callback in self.trainer.callbacks:
            if isinstance(callback, InterruptCheckpoint):
                callback.resume_hint = resume_command(self.argv)
        self.trainer.fit(model, ckpt_path=ckpt_path, **kwargs)

    def before_fit(self) -> None:
        self._before_run()

    def before_validate(self) -> None:
        self._before_run()

    def before_test(self) -> None:
        self._before_run()

    def before_predict(self) -> None:
        self._before_run()

    def _before_run(self) -> None:
        # Before data or model loads: missing paths, 4-bit without bitsandbytes, bf16 on a T4.
        check_run(self.model.hparams, self.trainer)

    def after_fit(self) -> None:
        self._report("fit")

    def after_validate(self) -> None:
        self._report("validate")

    def _report(self, stage: str) -> None:
        """Print base vs aligned on the held-out pairs, and keep the numbers as JSON."""
        metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }
        if not self.trainer.is_global_zero or not metrics:
            return
        lines = [
            f"\nheld-out preference ({stage}): base = adapters off, aligned = adapters on",
            f"{'':34}{'base':>8}{'aligned':>9}",
        ]
        for label, base_key, aligned_key in SUMMARY_ROWS:
            lines.append(f"{label:34}{metrics[base_key]:8.3f}{metrics[aligned_key]:9.3f}")
        lines.append(
            f"{'implicit-reward accuracy / margin':34}{'':8}"
            f"{metrics['val/rewards/accuracies']:9.3f} / {metrics['val/rewards/margins']:.3f}"
        )
        print("\n".join(lines), flush=True)
        path = Path(self.trainer.default_root_dir) / f"{stage}_metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def main(args: list[str] | None = None) -> None:
    logging.basicConfig(format="%(message)s")
    logging.getLogger("lit_dpo").setLevel(logging.INFO)
    argv = sys.argv[1:] if args is None else args
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
            return
        DPOCLI(
            DPOModule,
            PreferenceDataModule,
            seed_everything_default=42,
            # The module builds its own optimizer and warmup schedule from model.optimizer.
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"epilog": _extra_commands_help()},
            args=args,
        )
    except LitDPOError as error:
        print(f"lit-dpo: error: {error}", file=sys.stderr)
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


def _extra_commands_help() -> str:
    if not EXTRA_COMMANDS:
        return ""
    return "other commands: " + ", ".join(f"lit-dpo {name} --help" for name in EXTRA_COMMANDS)


if __name__ == "__main__":
    main()
