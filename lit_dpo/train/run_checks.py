"""Settings checked against the machine a run starts on, before data or model load.

``lit-dpo preflight`` checks a config against a target device on paper; these checks run at the
start of every fit/validate/test/predict (``DPOCLI.before_*`` and ``DPOModule.configure_model``)
against the device the trainer actually got: a model or adapter path that is not there, 4-bit NF4
where bitsandbytes cannot run, a precision the GPU lacks (bf16 on a T4). Every problem goes in one
message that says what to change. The checks are pure functions of what they are given, so a test
can hand them a T4's compute capability on a machine without a GPU.
"""

from __future__ import annotations

from pathlib import Path

from lit_dpo.device import (
    BitsAndBytes,
    Device,
    bitsandbytes_status,
    packed_attention_problems,
    precision_problems,
    quantization_problems,
    trainer_device,
)
from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import check_adapter
from lit_dpo.sources import model_name_problem, pickle_problem, remote_code_problem


def source_problems(
    model: str, adapter: str | None, allow_pickle: bool, trust_remote_code: bool = False
) -> list[str]:
    """A model or adapter that is not where the settings say, or that lit-dpo would not load as
    set (only pickled weights, code of its own). Nothing is loaded."""
    problems = []
    problem = model_name_problem(model)
    local = Path(model).expanduser()
    if problem is None and local.is_dir():
        problem = pickle_problem(local, allow_pickle) or remote_code_problem(
            local, trust_remote_code
        )
    if problem:
        problems.append(f"model.model: {problem}")
    if adapter is not None:
        problems += [
            f"model.adapter: {p.removeprefix('--adapter ')}"
            for p in check_adapter(adapter, allow_pickle)
        ]
    return problems


def run_problems(
    hparams,
    precision: str,
    device: Device,
    bnb: BitsAndBytes | None,
) -> list[str]:
    """Every problem of DPOModule settings on ``device`` under trainer ``precision``.

    Args:
        hparams: DPOModule's hparams (``model``, ``adapter``, ``quantization``,
            ``compute_dtype``, ``allow_pickle``, ``trust_remote_code``).
        precision: the trainer's precision, e.g. ``16-mixed``, ``bf16-mixed``, ``32-true``.
        device: the device trained on; ``capability`` is the CUDA compute capability.
        bnb: the bitsandbytes probe; None skips the quantization check.
    """
    problems = source_problems(
        hparams["model"],
        hparams.get("adapter"),
        hparams.get("allow_pickle", False),
        hparams.get("trust_remote_code", False),
    )
    if bnb is not None:
        problems += quantization_problems(hparams["quantization"], device.kind, bnb)
    problems += precision_problems(precision, hparams["compute_dtype"], device)
    if hparams.get("share_prompt", False):
        problems += packed_attention_problems(hparams.get("packed_attention", "auto"), device)
    return problems


def check_run(hparams, trainer) -> None:
    """Raise one ConfigError listing every problem of these settings on this trainer's device."""
    device = trainer_device(trainer.strategy.root_device)
    bnb = bitsandbytes_status() if hparams["quantization"] == "nf4" else None
    problems = run_problems(hparams, str(trainer.precision), device, bnb)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("these settings cannot run here:\n  " + "\n  ".join(problems))
