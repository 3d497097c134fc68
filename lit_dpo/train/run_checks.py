"""Settings checked against the machine a run starts on, before data or model load.

``lit-dpo preflight`` checks a config against a target device on paper; these checks run at the
start of every fit/validate/test/predict (``DPOCLI.before_*`` and ``DPOModule.configure_model``)
against the device the trainer actually got: a model or adapter path that is not there, a policy
adapter that is not a trained copy of the reference adapter, 4-bit NF4
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
from lit_dpo.models.adapters import check_adapter, pair_problems
from lit_dpo.sources import model_name_problem, pickle_problem, remote_code_problem


def source_problems(
    model: str,
    adapter: str | None,
    allow_pickle: bool,
    trust_remote_code: bool = False,
    reference_adapter: str | None = None,
) -> list[str]:
    """A model or adapter that is not where the settings say, or that lit-dpo would not load as
    set (only pickled weights, code of its own), or a policy adapter and a reference adapter that
    differ in shape or base. Nothing is loaded."""
    problems = []
    problem = model_name_problem(model)
    local = Path(model).expanduser()
    if problem is None and local.is_dir():
        problem = pickle_problem(local, allow_pickle) or remote_code_problem(
            local, trust_remote_code
        )
    if problem:
        problems.append(f"model.model: {problem}")
    folders = {"model.adapter": adapter, "model.reference_adapter": reference_adapter}
    readable = True
    for setting, folder in folders.items():
        if folder is not None:
            found = check_adapter(folder, allow_pickle)
            readable = readable and not found
            problems += [f"{setting}: {p.removeprefix('--adapter ')}" for p in found]
    if adapter is not None and reference_adapter is not None and readable:
        problems += pair_problems(adapter, reference_adapter)
    return problems


def run_problems(
    hparams,
    precision: str,
    device: Device,
    bnb: BitsAndBytes | None,
) -> list[str]:
    """Every problem of DPOModule settings on ``device`` under trainer ``precision``.

    Args:
        hparams: DPOModule's hparams (``model``, ``adapter``, ``reference``,
            ``reference_adapter``, ``quantization``, ``compute_dtype``, ``allow_pickle``,
            ``trust_remote_code``).
        precision: the trainer's precision, e.g. ``16-mixed``, ``bf16-mixed``, ``32-true``.
        device: the device trained on; ``capability`` is the CUDA compute capability.
        bnb: the bitsandbytes probe; None skips the quantization check.
    """
    problems = source_problems(
        hparams["model"],
        hparams.get("adapter"),
        hparams.get("allow_pickle", False),
        hparams.get("trust_remote_code", False),
        hparams.get("reference_adapter") if hparams.get("reference") == "adapter" else None,
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
