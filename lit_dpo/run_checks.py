"""Settings checked against the machine a run starts on, before data or model load.

``lit-dpo preflight`` checks a config against a target device on paper; these checks run at the
start of every fit/validate/test/predict (``DPOCLI.before_*`` and ``DPOModule.configure_model``)
against the device the trainer actually got: a model or adapter path that is not there, 4-bit NF4
where bitsandbytes cannot run, a precision the GPU lacks (bf16 on a T4). Every problem goes in one
message that says what to change. The checks are pure functions of what they are given, so a test
can hand them a T4's compute capability on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lit_dpo.adapters import check_adapter
from lit_dpo.errors import ConfigError
from lit_dpo.preflight import Device, precision_problems
from lit_dpo.sources import model_name_problem, pickle_problem, remote_code_problem


@dataclass(frozen=True)
class BitsAndBytes:
    """What the installed bitsandbytes can do: import error (None: imports), devices it has
    backends for, and whether its native GPU library (CUDA or ROCm) loaded."""

    error: str | None
    devices: frozenset[str] = frozenset()
    gpu_library: bool = False


def bitsandbytes_status() -> BitsAndBytes:
    """Probe the installed bitsandbytes (imports it: about a second)."""
    try:
        import bitsandbytes
        from bitsandbytes.cextension import lib
    except Exception as error:  # a broken install raises more than ImportError
        return BitsAndBytes(error=f"{type(error).__name__}: {error}")
    return BitsAndBytes(
        error=None,
        devices=frozenset(getattr(bitsandbytes, "supported_torch_devices", ())),
        gpu_library=bool(getattr(lib, "compiled_with_cuda", False)),
    )


def quantization_problems(quantization: str, device_kind: str, bnb: BitsAndBytes) -> list[str]:
    """Why 4-bit NF4 cannot run on ``device_kind`` (``cpu``, ``cuda``...) with this bitsandbytes."""
    if quantization != "nf4":
        return []
    fix = "set model.quantization none (full-precision base, more memory) or"
    if bnb.error is not None:
        return [
            f"model.quantization nf4 needs bitsandbytes, which cannot be imported here "
            f"({bnb.error}); {fix} pip install bitsandbytes"
        ]
    if device_kind not in bnb.devices:
        return [
            f"model.quantization nf4: the installed bitsandbytes has no backend for "
            f"{device_kind} (it has {', '.join(sorted(bnb.devices)) or 'none'}); {fix} "
            "install a bitsandbytes built for this device"
        ]
    if device_kind == "cuda" and not bnb.gpu_library:
        return [
            "model.quantization nf4: bitsandbytes found no native library matching this "
            f"torch's CUDA ({torch.version.cuda or torch.version.hip}); {fix} install a "
            "bitsandbytes build for it (python -m bitsandbytes says what is missing)"
        ]
    return []


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
    return problems


def trainer_device(root_device: torch.device) -> Device:
    """The Device a trainer runs on, with its CUDA compute capability."""
    if root_device.type != "cuda":
        return Device(str(root_device), 0.0, None, root_device.type)
    return Device(
        torch.cuda.get_device_name(root_device),
        0.0,
        torch.cuda.get_device_capability(root_device),
        "cuda",
    )


def check_run(hparams, trainer) -> None:
    """Raise one ConfigError listing every problem of these settings on this trainer's device."""
    device = trainer_device(trainer.strategy.root_device)
    bnb = bitsandbytes_status() if hparams["quantization"] == "nf4" else None
    problems = run_problems(hparams, str(trainer.precision), device, bnb)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("these settings cannot run here:\n  " + "\n  ".join(problems))
