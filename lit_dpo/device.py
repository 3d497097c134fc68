"""What a device can run: its memory and compute capability, precisions, and 4-bit support.

Shared by the checks every run makes before it loads anything (``lit_dpo.train.run_checks``, on
the device the trainer got) and by ``lit-dpo preflight`` (on a device named on paper, such as a
T4). The checks are pure functions of what they are given, so a test can hand them a T4's compute
capability on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

GIB = 2**30
BF16_MIN_CAPABILITY = (8, 0)
# How a packed pair's attention runs (model.efficiency.packed_attention).
PackedAttention = Literal["auto", "mask", "flex"]
# How the base's weights are held: 4-bit NF4 or not quantized; the dtype of its matmuls.
Quantization = Literal["nf4", "none"]
DType = Literal["float32", "bfloat16", "float16"]
# FlexAttention's Triton kernels are sized for the shared memory of Ampere and newer GPUs; on
# smaller budgets its backward has failed to compile (pytorch/pytorch#133254), and a T4 (7.5) has
# 64 KiB. Older GPUs keep the dense mask unless told otherwise.
FLEX_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Device:
    """Where a run trains: memory in bytes, CUDA compute capability (None: CPU/unknown)."""

    name: str
    memory: float
    capability: tuple[int, int] | None
    kind: str


DEVICE_PRESETS = {
    # nvidia-smi's total memory of each card
    "t4": Device("NVIDIA T4 (16 GB)", 15.0 * GIB, (7, 5), "cuda"),
    "l4": Device("NVIDIA L4 (24 GB)", 22.5 * GIB, (8, 9), "cuda"),
    "a100": Device("NVIDIA A100 (40 GB)", 40.0 * GIB, (8, 0), "cuda"),
}


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


def precision_problems(precision: str, compute_dtype: str, device: Device) -> list[str]:
    """What is wrong with a precision setting on a device, each with the setting to use instead."""
    problems = []
    bf16 = "bf16" in precision or compute_dtype == "bfloat16"
    if bf16 and device.kind == "cuda":
        if device.capability is None:
            problems.append(
                "bf16 needs compute capability 8.0 (Ampere) or newer and this device's is "
                "unknown; on a T4 or V100 use trainer.precision: 16-mixed and "
                "model.load.compute_dtype: float16"
            )
        elif device.capability < BF16_MIN_CAPABILITY:
            major, minor = device.capability
            problems.append(
                f"bf16 (trainer.precision {precision}, model.load.compute_dtype "
                f"{compute_dtype}) needs compute capability 8.0 or newer; {device.name} has "
                f"{major}.{minor}. Use trainer.precision: 16-mixed and "
                "model.load.compute_dtype: float16 (the LoRA weights stay fp32, which the fp16 "
                "gradient scaler needs)"
            )
    if precision.startswith("16") and compute_dtype == "bfloat16":
        problems.append(
            "trainer.precision 16-mixed autocasts to fp16 but model.load.compute_dtype is "
            "bfloat16: set model.load.compute_dtype: float16"
        )
    if precision.startswith("bf16") and compute_dtype == "float16":
        problems.append(
            "trainer.precision bf16-mixed with model.load.compute_dtype float16 mixes two 16-bit "
            "formats: set model.load.compute_dtype: bfloat16"
        )
    return problems


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
    fix = "set model.load.quantization none (full-precision base, more memory) or"
    if bnb.error is not None:
        return [
            f"model.load.quantization nf4 needs bitsandbytes, which cannot be imported here "
            f"({bnb.error}); {fix} pip install bitsandbytes"
        ]
    if device_kind not in bnb.devices:
        return [
            f"model.load.quantization nf4: the installed bitsandbytes has no backend for "
            f"{device_kind} (it has {', '.join(sorted(bnb.devices)) or 'none'}); {fix} "
            "install a bitsandbytes built for this device"
        ]
    if device_kind == "cuda" and not bnb.gpu_library:
        return [
            "model.load.quantization nf4: bitsandbytes found no native library matching this "
            f"torch's CUDA ({torch.version.cuda or torch.version.hip}); {fix} install a "
            "bitsandbytes build for it (python -m bitsandbytes says what is missing)"
        ]
    return []


def lora_dtype_problems(named_parameters) -> list[str]:
    """Trainable weights that are not fp32: fp16's GradScaler refuses to unscale fp16 gradients."""
    return [
        f"{name} is {param.dtype}"
        for name, param in named_parameters
        if param.requires_grad and param.dtype != torch.float32
    ]


def packed_attention_for(setting: PackedAttention, device: Device) -> Literal["mask", "flex"]:
    """The attention packed pairs get on ``device``: ``flex`` (FlexAttention with a block mask, a
    fused kernel) on CUDA GPUs of compute capability 8.0 and newer, else ``mask`` (the model's
    sdpa or eager attention with a dense 4D mask); a setting other than ``auto`` is kept."""
    if setting != "auto":
        return setting
    capability = device.capability
    cuda = device.kind == "cuda" and capability is not None
    return "flex" if cuda and capability >= FLEX_MIN_CAPABILITY else "mask"


def packed_attention_problems(setting: PackedAttention, device: Device) -> list[str]:
    """Why ``flex`` cannot run on ``device``: FlexAttention has no backward on a CPU."""
    if packed_attention_for(setting, device) != "flex" or device.kind == "cuda":
        return []
    return [
        f"model.efficiency.packed_attention flex needs a CUDA GPU: torch "
        f"{torch.__version__.split('+')[0]} has no FlexAttention backward on {device.kind}; "
        "set model.efficiency.packed_attention auto or mask"
    ]
