"""DPOModule's settings: the model, then five typed groups, and the 0.2 flat names that still work.

A fit config names each setting by its group, as LitGPT's ``TrainArgs``/``EvalArgs`` do::

    model:
      model: embedded:SmolLM2-135M-Instruct   # the one setting everybody sets stays flat
      load: {quantization: nf4, compute_dtype: float32}    # what is loaded, and how
      lora: {r: 16, alpha: 32, dropout: 0.05}               # the adapter trained
      objective: {loss_type: sigmoid, beta: 0.1}           # what a step optimises
      optimization: {lr_schedule: cosine, warmup_ratio: 0.1}
      efficiency: {share_prompt: true}                       # how a step runs, never what
      optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 5.0e-4}}

and the command line the same way (``--model.objective.beta 0.2``). ``optimizer`` stays beside the
groups: LightningCLI gives a callable its own ``class_path`` form. Each group is a frozen
dataclass whose ``Attributes:`` are what ``--help`` prints; a bad value fails as the config is
parsed, and the settings that interact are checked together in ``run_checks.setting_problems``.
``ObjectiveSettings`` is declared in ``losses/settings.py``, beside the ``Objective`` built from
it, and imported here.

lit-dpo 0.2 took all of them flat (``model.beta``). ``MOVED_KEYS`` is the one table of those
names: ``move_keys`` puts an old key at its new place with one line saying so, for a config file
or flag (``lit_dpo.cli``), a keyword argument of ``DPOModule`` and the hyperparameters of a 0.2
checkpoint. The table goes in lit-dpo 0.4.

Only plain data here: no Lightning, transformers or peft is imported.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from lit_dpo.device import DType, PackedAttention, Quantization
from lit_dpo.host_memory import DEFAULT_FREED_MEMORY, FreedMemory
from lit_dpo.sources import DEFAULT_MODEL
from lit_dpo.train.losses.settings import ObjectiveSettings
from lit_dpo.train.nonfinite import OnNonFinite

# scored positions per output-head chunk, unless a run sets model.efficiency.logps_chunk_size
DEFAULT_CHUNK_SIZE = 512
# the release whose configs, flags and keyword arguments may no longer use MOVED_KEYS
OLD_KEYS_REMOVED_IN = "0.4"


@dataclass(frozen=True)
class LoadSettings:
    """What is loaded beside the model, and how: the adapter to start from, the reference, the
    base's precision, and what lit-dpo may run or unpickle.

    Attributes:
        adapter: a saved PEFT adapter folder to start from (e.g. to validate a trained one); it
            must fit the model (same layer shapes).
        reference: what the policy is measured against: ``base``, the model with its adapters
            off, or ``adapter``, the frozen ``reference_adapter`` (an SFT LoRA adapter).
        reference_adapter: the reference adapter folder, with ``reference: adapter``. The policy
            starts as a trainable copy of it, unless ``adapter`` is set (a run trained from it),
            which must then be the same LoRA on the same base.
        quantization: ``nf4`` for QLoRA, ``none`` to keep the base in ``compute_dtype``.
        compute_dtype: dtype of 4-bit matmuls and non-quantized weights; float16 on a T4.
        quant_storage: dtype holding the packed 4-bit weights; ``bfloat16`` (with
            ``compute_dtype: bfloat16`` and ``trainer.precision: bf16-true``) for FSDP, which
            shards float tensors of one dtype per wrapped block; null keeps uint8.
        trust_remote_code: allow model code from the hub.
        allow_pickle: also load model and adapter weights stored as pickles (``.bin``); off,
            only safetensors are read.
    """

    adapter: str | None = None
    reference: Literal["base", "adapter"] = "base"
    reference_adapter: str | None = None
    quantization: Quantization = "nf4"
    compute_dtype: DType = "float32"
    quant_storage: DType | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False

    @property
    def reference_folder(self) -> str | None:
        """The reference adapter folder, or None when the reference is the base."""
        return self.reference_adapter if self.reference == "adapter" else None


@dataclass(frozen=True)
class LoRASettings:
    """The LoRA adapter trained (when no saved ``load.adapter`` is given).

    Attributes:
        r: LoRA rank.
        alpha: LoRA scale numerator (updates scale by alpha / r).
        dropout: dropout on LoRA inputs.
        target_modules: modules to adapt; ``all-linear`` is every attention and MLP projection.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass(frozen=True)
class OptimizationSettings:
    """How the optimizer (``model.optimizer``) steps: its schedule, and what a non-finite step
    does.

    Attributes:
        lr_schedule: ``cosine``, ``linear`` or ``constant`` after warmup (transformers' schedules).
        warmup_ratio: share of optimizer steps spent warming the learning rate up from zero.
        on_nonfinite: what a NaN or infinite loss or gradient does: ``stop`` raises, naming the
            step and what to try; ``skip`` drops that optimizer step, warns and counts it in
            ``train/skipped_steps``. Either way the bad step is never applied.
    """

    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.1
    on_nonfinite: OnNonFinite = "stop"


@dataclass(frozen=True)
class EfficiencySettings:
    """How a step runs, trading time for memory or the reverse; never what it computes
    (``tests/test_techniques.py`` checks each switch against the plain path).

    Attributes:
        gradient_checkpointing: recompute activations in the backward instead of keeping them:
            less memory, about 20% more time.
        logps_chunk_size: apply the output head only to scored (completion) positions, this many
            at a time, from the last hidden states: no full-vocabulary logits. null scores full
            logits (needed when the output head itself is adapted).
        share_prompt: run each pair as one row holding the shared prompt once, chosen and
            rejected after it, with a mask that hides chosen from rejected. Needs
            logps_chunk_size and an ``sdpa``, ``eager`` or ``flex_attention`` attention.
        packed_attention: how a packed pair's attention runs: ``mask``, the model's sdpa
            attention with a dense (B, 1, L, L) mask (which keeps sdpa off its fused flash
            kernel on a GPU); ``flex``, FlexAttention with a block mask (a fused kernel that skips
            masked blocks; CUDA only, the whole model then runs it); ``auto``, flex on CUDA GPUs
            of compute capability 8.0 and newer, mask elsewhere (CPU, T4).
        precompute_reference: compute the reference log-probs of the train and validation pairs
            in one no-grad pass before training, cache them on disk (``LIT_DPO_CACHE``) and skip
            the reference forward in every step. Needs batches carrying ``pair_index``
            (PreferenceDataModule's do). Under DDP each rank scores its share of the pairs and
            rank 0 writes the cache; not available under FSDP. A reference-free objective
            (``simpo``, ``cpo``, ``orpo``, ``sft``) tables the validation pairs only.
        return_freed_memory: on a CPU, what glibc does with freed tensor memory during the fit
            (``lit_dpo.host_memory.FreedMemory``). ``between_steps`` (default): the heap is
            trimmed after each training batch, so each step starts from its live tensors; the
            pages come back once per step, at no measurable cost in speed (28% less peak
            memory in ``tools/bench.py``). ``keep`` (false): glibc keeps a forward's worth of
            freed activations resident for reuse (about as much again as the live ones).
            ``promptly`` (true): as well as the trim, each freed activation is unmapped at once:
            least memory, but it roughly halves CPU steps per second (every allocation's pages
            are zeroed again). No effect on a GPU or where glibc is not the allocator.
    """

    gradient_checkpointing: bool = True
    logps_chunk_size: int | None = DEFAULT_CHUNK_SIZE
    share_prompt: bool = True
    packed_attention: PackedAttention = "auto"
    precompute_reference: bool = False
    return_freed_memory: bool | FreedMemory = DEFAULT_FREED_MEMORY


# DPOModule's arguments that are groups, and the class of each
GROUPS: dict[str, type] = {
    "load": LoadSettings,
    "lora": LoRASettings,
    "objective": ObjectiveSettings,
    "optimization": OptimizationSettings,
    "efficiency": EfficiencySettings,
}


@dataclass(frozen=True)
class Settings:
    """All of DPOModule's settings but the optimizer: what its hyperparameters (``hparams.yaml``,
    checkpoints) hold, as plain dicts (``as_dict``)."""

    model: str = DEFAULT_MODEL
    load: LoadSettings = field(default_factory=LoadSettings)
    lora: LoRASettings = field(default_factory=LoRASettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    optimization: OptimizationSettings = field(default_factory=OptimizationSettings)
    efficiency: EfficiencySettings = field(default_factory=EfficiencySettings)

    def as_dict(self) -> dict[str, Any]:
        """Plain values only, so that a checkpoint loads with ``torch.load(weights_only=True)``
        and ``hparams.yaml`` names no lit-dpo class."""
        return asdict(self)

    @classmethod
    def from_arguments(cls, values: Mapping[str, Any]) -> Settings:
        """From DPOModule's arguments, where 0.2's flat ones (``beta=0.2``) may still be: each
        is put in its group with a FutureWarning naming the new place (``move_keys``)."""
        moved, old_keys = move_keys(values)
        for old in old_keys:
            warnings.warn(
                f"DPOModule({old}=...) is now {MOVED_KEYS[old]} (model.{MOVED_KEYS[old]} in a "
                f"config); the old argument works until lit-dpo {OLD_KEYS_REMOVED_IN}",
                FutureWarning,
                stacklevel=3,
            )
        return cls.from_values(moved)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """From ``model`` and the groups, each a group object or a dict of its fields (as
        ``as_dict`` writes them); no old flat keys (``move_keys`` first).

        Raises:
            TypeError: an unknown setting or group field.
        """
        unknown = set(values) - {"model", *GROUPS}
        if unknown:
            raise TypeError(f"unknown DPOModule settings {sorted(unknown)}")
        groups = {}
        for name, group in GROUPS.items():
            value = values.get(name, group())
            groups[name] = value if isinstance(value, group) else group(**_fields(value))
        return cls(model=values.get("model", DEFAULT_MODEL), **groups)


# lit-dpo 0.2's flat DPOModule setting -> its place in a group (the key under ``model.``)
MOVED_KEYS: dict[str, str] = {
    **{
        name: f"load.{name}"
        for name in (
            "adapter", "reference", "reference_adapter", "quantization", "compute_dtype",
            "quant_storage", "trust_remote_code", "allow_pickle",
        )
    },
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "target_modules": "lora.target_modules",
    **{f.name: f"objective.{f.name}" for f in fields(ObjectiveSettings)},
    **{f.name: f"optimization.{f.name}" for f in fields(OptimizationSettings)},
    **{f.name: f"efficiency.{f.name}" for f in fields(EfficiencySettings)},
}


def moved_key_message(old: str, prefix: str = "model.") -> str:
    """The one line an old key gives: its new name, and until when the old one works."""
    return (
        f"{prefix}{old} is now {prefix}{MOVED_KEYS[old]}; the old key works until lit-dpo "
        f"{OLD_KEYS_REMOVED_IN}"
    )


def move_keys(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """DPOModule's settings with every old flat key (``MOVED_KEYS``) put in its group.

    An old key is applied over its group's value (given as a dict or a group object); a key that
    is neither old nor new stays as it is, for the caller's own error to name it.

    Args:
        values: settings by name, e.g. a config's ``model:`` mapping or DPOModule's keywords.

    Returns:
        ``(settings, old_keys)``: the settings in the new layout (groups given as objects stay
        objects unless an old key changed them), and the old keys found, in order.
    """
    moved = {key: value for key, value in values.items() if key not in MOVED_KEYS}
    old_keys = []
    for old, value in values.items():
        if old not in MOVED_KEYS:
            continue
        group, name = MOVED_KEYS[old].split(".")
        target = moved.get(group, {})
        if not isinstance(target, Mapping) and not is_dataclass(target):
            moved[old] = value  # the group is a file name or a bad value: left to the parser
            continue
        moved[group] = {**_fields(target), name: value}
        old_keys.append(old)
    return moved, old_keys


def _fields(group: Any) -> dict[str, Any]:
    """A group's fields as a dict, whether it is a group object or a mapping."""
    if is_dataclass(group):
        return {f.name: getattr(group, f.name) for f in fields(group)}
    return dict(group)
