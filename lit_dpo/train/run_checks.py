"""Every check of DPOModule's settings: on their own, and against the machine a run starts on.

``setting_problems`` checks the settings alone (the objective's, through ``Objective.problems``,
and those that interact), when DPOModule is built, so a bad value fails before anything loads.

``lit-dpo preflight`` checks a config against a target device on paper; ``check_run`` checks it
once per run, at the start of every fit/validate/test/predict (``DPOCLI.before_*``, or
``DPOModule.configure_model`` for a trainer the CLI did not check), against the device and
strategy the trainer actually got: a model or adapter path that is not there, a policy adapter
that is not a trained copy of the reference adapter, 4-bit NF4 where bitsandbytes cannot run, a
precision the GPU lacks (bf16 on a T4), what FSDP cannot shard. Every problem goes in one
message that says what to change. The checks are pure functions of what they are given, so a test
can hand them a T4's compute capability on a machine without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lightning.pytorch.strategies import FSDPStrategy

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
from lit_dpo.host_memory import freed_memory_mode
from lit_dpo.models.adapters import check_adapter, pair_problems
from lit_dpo.sources import model_name_problem, pickle_problem, remote_code_problem
from lit_dpo.train.losses import Objective


def setting_problems(settings: Mapping) -> list[str]:
    """Every problem of DPOModule's settings on their own (no file or device is looked at).

    Args:
        settings: DPOModule's arguments by name.
    """
    s = settings
    problems = Objective.from_settings(s).problems()
    if s["lora_r"] < 1:
        problems.append(f"lora_r must be at least 1, got {s['lora_r']}")
    if not 0 <= s["warmup_ratio"] < 1:
        problems.append(f"warmup_ratio must be in [0, 1), got {s['warmup_ratio']}")
    chunk_size = s["logps_chunk_size"]
    if chunk_size is not None and chunk_size < 1:
        problems.append(f"logps_chunk_size must be positive or null, got {chunk_size}")
    if s["share_prompt"] and chunk_size is None:
        problems.append("share_prompt needs logps_chunk_size (scores hidden states)")
    try:
        freed_memory_mode(s["return_freed_memory"])
    except ValueError as error:
        problems.append(str(error))
    if s["packed_attention"] != "auto" and not s["share_prompt"]:
        problems.append(f"packed_attention {s['packed_attention']} applies to share_prompt only")
    if s["quant_storage"] is not None and s["quantization"] != "nf4":
        problems.append("quant_storage applies to quantization nf4 only")
    if s["reference"] == "adapter" and s["reference_adapter"] is None:
        problems.append(
            "reference adapter needs model.reference_adapter, the folder of the SFT adapter"
        )
    if s["reference"] == "base" and s["reference_adapter"] is not None:
        problems.append(
            "reference_adapter is set but reference is base (adapters off); set "
            "model.reference adapter to measure against it, or leave reference_adapter out"
        )
    return problems


def unpaired_data_problem(objective: Objective, unpaired_train: bool) -> str | None:
    """An objective that cannot learn from the train split's kind of rows, with the fix: KTO
    needs unpaired (prompt, completion, label) rows, every other objective pairs."""
    names = list(objective.loss_types)
    if objective.unpaired and not unpaired_train:
        return (
            f"model.loss_type {names[0]} learns from unpaired (prompt, completion, label) rows and "
            "the train data is pairs: set data.unpair true to train on each pair as a desirable "
            "and an undesirable row"
        )
    if unpaired_train and not objective.unpaired:
        return (
            f"the train data is unpaired (prompt, completion, label) rows and model.loss_type "
            f"{names if len(names) > 1 else names[0]} needs pairs: use model.loss_type kto (or "
            "apo_zero_unpaired)"
        )
    return None


def kl_batch_problem(objective: Objective, batch_size: int) -> str | None:
    """KTO estimates its KL baseline from the other rows of a batch: one row is too few (TRL
    refuses a per-device batch of 1 for the same reason)."""
    if objective.needs_kl and batch_size < 2:
        return (
            f"model.loss_type kto estimates its KL baseline from the rows of a batch; "
            f"data.batch_size {batch_size} is too small: set data.batch_size 2 or more (8 or more "
            "gives a steadier baseline; lower max_length or use gradient accumulation to fit it)"
        )
    return None


def strategy_problems(hparams, fsdp: bool) -> list[str]:
    """Settings the trainer's strategy cannot run (FSDP shards what they need whole)."""
    if not fsdp:
        return []
    problems = []
    if hparams.get("precompute_reference"):
        # its pass runs in a hook, outside FSDP's forward, where each rank holds a shard only
        problems.append(
            "model.precompute_reference does not work with the fsdp strategy; set it false "
            "or train with trainer.strategy ddp"
        )
    if hparams.get("reference") == "adapter":
        # switching adapters flips requires_grad of weights FSDP has flattened; untested there
        problems.append(
            "model.reference adapter does not work with the fsdp strategy yet; train with "
            "trainer.strategy ddp, or measure against the base (model.reference base)"
        )
    return problems


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
    problems = strategy_problems(hparams, isinstance(trainer.strategy, FSDPStrategy))
    problems += run_problems(hparams, str(trainer.precision), device, bnb)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("these settings cannot run here:\n  " + "\n  ".join(problems))
