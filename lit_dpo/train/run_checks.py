"""Every check of DPOModule's settings: on their own, against the machine a run starts on, and
against the data it prepared; each runs once.

``check_settings`` (``setting_problems``) checks the settings alone (the objective's, through
``Objective.problems``, and those that interact), when DPOModule is built, so a bad value fails
before anything loads. ``check_data`` checks the objective against the train split once the data
module has prepared it (KTO needs unpaired rows, every other objective pairs).

``lit-dpo preflight`` checks a config against a target device on paper; ``check_run`` checks it once
per run, at the start of every fit/validate/test/predict (``DPOCLI.before_*``, or
``DPOModule.configure_model`` for a trainer the CLI did not check), against the device and strategy
the trainer actually got: a model or adapter path that is not there, a policy adapter that is not a
trained copy of the reference adapter, 4-bit NF4 where bitsandbytes cannot run, a precision the GPU
lacks (bf16 on a T4), what FSDP cannot shard, a batch too small for KTO's KL baseline. Every problem
goes in one message that says what to change. The checks are pure functions of what they are given,
so a test can hand them a T4's compute capability on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import asdict
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
from lit_dpo.train.losses.kto import weight_warning
from lit_dpo.train.settings import Settings

# how the two adapter settings are named in messages
ADAPTER_OPTIONS = ("model.load.adapter", "model.load.reference_adapter")


def setting_problems(settings: Settings) -> list[str]:
    """Every problem of DPOModule's settings on their own (no file or device is looked at): the
    objective's (``Objective.problems``) and those of settings that interact.

    Args:
        settings: DPOModule's settings.
    """
    load, efficiency = settings.load, settings.efficiency
    problems = objective_of(settings).problems()
    if settings.lora.r < 1:
        problems.append(f"model.lora.r must be at least 1, got {settings.lora.r}")
    warmup = settings.optimization.warmup_ratio
    if not 0 <= warmup < 1:
        problems.append(f"model.optimization.warmup_ratio must be in [0, 1), got {warmup}")
    chunk_size = efficiency.logps_chunk_size
    if chunk_size is not None and chunk_size < 1:
        problems.append(
            f"model.efficiency.logps_chunk_size must be positive or null, got {chunk_size}"
        )
    if efficiency.share_prompt and chunk_size is None:
        problems.append("share_prompt needs logps_chunk_size (scores hidden states)")
    try:
        freed_memory_mode(efficiency.return_freed_memory)
    except ValueError as error:
        problems.append(f"model.efficiency.{error}")
    if efficiency.packed_attention != "auto" and not efficiency.share_prompt:
        problems.append(
            f"packed_attention {efficiency.packed_attention} applies to share_prompt only"
        )
    if load.quant_storage is not None and load.quantization != "nf4":
        problems.append("quant_storage applies to quantization nf4 only")
    if load.reference == "adapter" and load.reference_adapter is None:
        problems.append(
            "reference adapter needs model.load.reference_adapter, the folder of the SFT adapter"
        )
    if load.reference == "base" and load.reference_adapter is not None:
        problems.append(
            "reference_adapter is set but reference is base (adapters off); set "
            "model.load.reference adapter to measure against it, or leave reference_adapter out"
        )
    return problems


def check_settings(settings: Settings) -> None:
    """Raise one ConfigError listing every problem of ``setting_problems``."""
    problems = setting_problems(settings)
    if problems:
        raise ConfigError("model settings: " + "; ".join(problems))


def check_data(objective: Objective, datamodule) -> str | None:
    """Check the objective against the train split a data module prepared (pairs or unpaired rows,
    and how many of each label), before the model loads.

    Returns:
        A warning to log: KTO's label weights far from balancing the rows' counts, or a mixture
        part's ``sft: false`` with no SFT term to leave it out of; else None.

    Raises:
        ConfigError: the objective cannot learn from the split's kind of rows.
    """
    parts = getattr(datamodule, "parts", None) or []
    no_sft = [i for i, part in enumerate(parts) if not getattr(part, "sft", True)]
    if no_sft and "sft_loss" not in objective.extra_keys:
        return (
            f"data.mixture[{no_sft[0]}].sft is false, which leaves a part out of the SFT term, but "
            f"{list(objective.loss_types)} with model.objective.sft_weight 0 has none: it changes "
            "nothing"
        )
    unpaired = getattr(datamodule, "unpaired", None)
    if not unpaired or "train" not in unpaired:
        return None
    problem = unpaired_data_problem(objective, unpaired["train"])
    if problem:
        raise ConfigError(problem)
    report = datamodule.report.get("train", {})
    if not objective.unpaired or "desirable" not in report:
        return None
    return weight_warning(
        report["desirable"], report["undesirable"], objective.desirable_weight,
        objective.undesirable_weight,
    )


def objective_of(settings: Settings) -> Objective:
    """The objective a run's settings describe (built once by DPOModule, never changed)."""
    return Objective.from_settings(asdict(settings.objective))


def unpaired_data_problem(objective: Objective, unpaired_train: bool) -> str | None:
    """An objective that cannot learn from the train split's kind of rows, with the fix: KTO
    needs unpaired (prompt, completion, label) rows, every other objective pairs."""
    names = list(objective.loss_types)
    if objective.unpaired and not unpaired_train:
        return (
            f"model.objective.loss_type {names[0]} learns from unpaired (prompt, completion, "
            "label) rows and the train data is pairs: set data.unpair true to train on each pair "
            "as a desirable and an undesirable row"
        )
    if unpaired_train and not objective.unpaired:
        return (
            "the train data is unpaired (prompt, completion, label) rows and "
            f"model.objective.loss_type {names if len(names) > 1 else names[0]} needs pairs: use "
            "model.objective.loss_type kto (or apo_zero_unpaired)"
        )
    return None


def kl_batch_problem(objective: Objective, batch_size: int) -> str | None:
    """KTO estimates its KL baseline from the other rows of a batch: one row is too few (TRL
    refuses a per-device batch of 1 for the same reason)."""
    if objective.needs_kl and batch_size < 2:
        return (
            f"model.objective.loss_type kto estimates its KL baseline from the rows of a batch; "
            f"data.batch_size {batch_size} is too small: set data.batch_size 2 or more (8 or more "
            "gives a steadier baseline; lower max_length or use gradient accumulation to fit it)"
        )
    return None


def strategy_problems(settings: Settings, fsdp: bool) -> list[str]:
    """Settings the trainer's strategy cannot run (FSDP shards what they need whole)."""
    if not fsdp:
        return []
    problems = []
    if settings.efficiency.precompute_reference:
        # its pass runs in a hook, outside FSDP's forward, where each rank holds a shard only
        problems.append(
            "model.efficiency.precompute_reference does not work with the fsdp strategy; set it "
            "false or train with trainer.strategy ddp"
        )
    if settings.load.reference == "adapter":
        # switching adapters flips requires_grad of weights FSDP has flattened; untested there
        problems.append(
            "model.load.reference adapter does not work with the fsdp strategy yet; train with "
            "trainer.strategy ddp, or measure against the base (model.load.reference base)"
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
    folders = {"model.load.adapter": adapter, "model.load.reference_adapter": reference_adapter}
    readable = True
    for setting, folder in folders.items():
        if folder is not None:
            found = check_adapter(folder, allow_pickle)
            readable = readable and not found
            problems += [f"{setting}: {p.removeprefix('--adapter ')}" for p in found]
    if adapter is not None and reference_adapter is not None and readable:
        problems += pair_problems(adapter, reference_adapter, ADAPTER_OPTIONS)
    return problems


def run_problems(
    settings: Settings,
    precision: str,
    device: Device,
    bnb: BitsAndBytes | None,
) -> list[str]:
    """Every problem of DPOModule's settings on ``device`` under trainer ``precision``.

    Args:
        settings: DPOModule's settings.
        precision: the trainer's precision, e.g. ``16-mixed``, ``bf16-mixed``, ``32-true``.
        device: the device trained on; ``capability`` is the CUDA compute capability.
        bnb: the bitsandbytes probe; None skips the quantization check.
    """
    load = settings.load
    problems = source_problems(
        settings.model,
        load.adapter,
        load.allow_pickle,
        load.trust_remote_code,
        load.reference_folder,
    )
    if bnb is not None:
        problems += quantization_problems(load.quantization, device.kind, bnb)
    problems += precision_problems(precision, load.compute_dtype, device)
    if settings.efficiency.share_prompt:
        problems += packed_attention_problems(settings.efficiency.packed_attention, device)
    return problems


def check_run(settings: Settings, trainer, batch_size: int | None = None) -> None:
    """Raise one ConfigError listing every problem of these settings on this trainer's device and
    strategy, and with ``batch_size`` (the data's, when known) the objective's need of a batch.

    Raises:
        ConfigError: every problem, in one message.
    """
    device = trainer_device(trainer.strategy.root_device)
    bnb = bitsandbytes_status() if settings.load.quantization == "nf4" else None
    problems = strategy_problems(settings, isinstance(trainer.strategy, FSDPStrategy))
    problems += run_problems(settings, str(trainer.precision), device, bnb)
    if batch_size is not None:
        problems += filter(None, [kl_batch_problem(objective_of(settings), batch_size)])
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("these settings cannot run here:\n  " + "\n  ".join(problems))
