"""Load a trained adapter on its base for inference: the one loader of compare, serve and export.

An adapter folder written by lit-dpo holds ``adapter_config.json`` (whose
``base_model_name_or_path`` names the base it was trained on), the LoRA weights and the tokenizer
with its chat template, and ``lit_dpo_reference.json``, which names the reference adapter the policy
was trained against when it was not the base. :func:`load_for_inference` loads the base once,
4-bit NF4 as training saw it (``compare``, ``serve``) or unquantized (``export``: LoRA weights can
only be merged into unquantized ones), attaches the adapter frozen and, when given, the frozen
reference adapter beside it (``models.reference.as_reference`` switches to it). A merged model
folder (``lit-dpo export``'s) loads alone. Whatever calls it, the same folder gives the same
network, so ``serve`` answers with the model ``compare`` measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import prepare_model_for_kbit_training
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_dpo.errors import ConfigError, ModelSourceError
from lit_dpo.models.adapters import (
    ADAPTER_CONFIG,
    PICKLED_WEIGHTS,
    SAFETENSORS_WEIGHTS,
    attach_adapter,
    check_adapter,
    check_adapter_fits,
    check_adapter_folder,
    recorded_base,
)
from lit_dpo.models.policy import DType, Quantization, nf4_config
from lit_dpo.models.reference import (
    REFERENCE_RECORD,
    attach_reference_adapter,
    recorded_reference_adapter,
)
from lit_dpo.models.weights import load_base
from lit_dpo.sources import DEFAULT_MODEL, check_weights, load_kwargs, resolve_model

# what an adapter folder holds, and a merged model folder must not
ADAPTER_FILES = (ADAPTER_CONFIG, SAFETENSORS_WEIGHTS, PICKLED_WEIGHTS)


@dataclass(frozen=True)
class InferenceModel:
    """A model loaded for inference, and what it was loaded from.

    Attributes:
        model: the base with the adapter attached (a PeftModel: the policy; ``as_reference``
            gives the reference), or a merged model alone; frozen, in eval mode, KV cache on.
        tokenizer: the tokenizer saved with the adapter (else the base's), with a chat template.
        base: the base model's name, as given or as the adapter records it; for a merged model,
            its folder.
        merged: ``adapter`` was a merged model folder: there is no adapter and no reference.
        reference_adapter: the frozen reference adapter attached, or None (the base, adapters
            off).
    """

    model: Any
    tokenizer: PreTrainedTokenizerBase
    base: str
    merged: bool = False
    reference_adapter: str | None = None


def is_merged_model(folder: str | Path) -> bool:
    """A plain transformers folder (``lit-dpo export``), not a PEFT adapter."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and not (folder / ADAPTER_CONFIG).is_file()


def load_for_inference(
    adapter: str | Path,
    model: str | None = None,
    reference_adapter: str | Path | None = None,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    device: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> InferenceModel:
    """Load the base, attach the adapter (and the reference adapter) frozen, for inference.

    A 4-bit base is loaded as training loads it (``policy.load_policy``): NF4 with double
    quantization, the weights that stay unquantized in fp32, so the policy computes what it
    computed in training; without quantization the weights are in ``compute_dtype``.

    Args:
        adapter: a PEFT adapter folder, or a merged model folder (loaded alone).
        model: the base (hub id, folder, ``embedded:...``); None: the base the adapter records
            (:func:`adapter_base_model`). A merged model folder is its own base.
        reference_adapter: an adapter folder attached frozen beside the policy's as the
            reference (``reference_adapter_for`` resolves and checks it); None: adapters off.
        quantization: ``nf4`` (the 4-bit base of training) or ``none``.
        compute_dtype: dtype of the 4-bit matmuls and of the other weights.
        device: where the weights go (``cpu``, ``cuda``, ``cuda:1``); None: the CPU.
        allow_pickle: also read weights stored as pickles (``.bin``); else safetensors only.
        trust_remote_code: run model code from the hub; off unless the user asks.

    Raises:
        ConfigError: the adapter names no base that is here and ``model`` is None, or an adapter
            does not fit the model.
        ModelSourceError: the base or an adapter cannot be loaded.
    """
    merged = is_merged_model(adapter)
    if merged:
        base = str(adapter)
    else:
        check_adapter_folder(adapter, allow_pickle)
        base = adapter_base_model(adapter, model)
    network = _load_frozen_base(
        base, quantization, compute_dtype, device, allow_pickle, trust_remote_code
    )
    if not merged:
        if reference_adapter is not None:
            check_adapter_fits(network, reference_adapter, base, allow_pickle)
        network = attach_adapter(network, adapter, base, allow_pickle=allow_pickle)
        if reference_adapter is not None:
            attach_reference_adapter(network, reference_adapter)
    network.requires_grad_(False)
    return InferenceModel(
        model=network.eval(),
        tokenizer=load_adapter_tokenizer(adapter, base, trust_remote_code),
        base=base,
        merged=merged,
        reference_adapter=None if reference_adapter is None else str(reference_adapter),
    )


def _load_frozen_base(
    name: str,
    quantization: Quantization,
    compute_dtype: DType,
    device: str | None,
    allow_pickle: bool,
    trust_remote_code: bool,
) -> PreTrainedModel:
    dtype = getattr(torch, compute_dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, **load_kwargs(allow_pickle, trust_remote_code)}
    if quantization == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype)
    if device is not None:
        kwargs["device_map"] = {"": torch.device(device)}
    source = resolve_model(name)
    check_weights(source, allow_pickle)
    try:
        network = load_base(source, quantized=quantization == "nf4", **kwargs)
    except (OSError, ValueError) as error:
        raise ModelSourceError(
            f"cannot load the model {name!r}: {error}\npass --model with a local folder, a hub id "
            f"or {DEFAULT_MODEL}"
        ) from error
    if quantization == "nf4":
        # training's casts (norms and embeddings to fp32), without its gradient checkpointing
        network = prepare_model_for_kbit_training(network, use_gradient_checkpointing=False)
    # a folder saved by a training run may have the cache off; generation wants it on
    network.config.use_cache = True
    return network


def adapter_base_model(adapter: str | Path, model: str | None = None) -> str:
    """The base model to load: ``model`` when given, else the adapter's own record of its base.

    Raises:
        ConfigError: the adapter names no base, or names a local folder that is not here.
    """
    if model is not None:
        return model
    config_path = Path(adapter) / ADAPTER_CONFIG
    base = recorded_base(adapter)
    if not base:
        raise ConfigError(f"{config_path} names no base_model_name_or_path; pass --model NAME")
    if Path(base).is_absolute() and not Path(base).exists():
        raise ConfigError(
            f"{config_path} names the base folder {base}, which is not on this machine; pass "
            "--model NAME (e.g. embedded:SmolLM2-135M-Instruct or a hub id)"
        )
    return base


def reference_adapter_for(
    adapter: str | Path, reference_adapter: str | None = None, allow_pickle: bool = False
) -> tuple[str | None, list[str]]:
    """The reference adapter to run beside ``adapter``, and the problems with it.

    ``reference_adapter`` when given, else the one ``adapter``'s ``lit_dpo_reference.json``
    records (a fit with ``model.load.reference adapter`` writes it), else None: the reference is the
    base, adapters off. Nothing is loaded.

    Returns:
        ``(folder or None, problems)``; each problem names the option that fixes it.
    """
    if reference_adapter is None:
        reference_adapter = recorded_reference_adapter(adapter)
        if reference_adapter is not None and not Path(reference_adapter).is_dir():
            return None, [
                f"--adapter {adapter} was trained against the reference adapter "
                f"{reference_adapter} ({REFERENCE_RECORD}), which is not on this machine; pass "
                "--reference_adapter with its folder"
            ]
    if reference_adapter is None:
        return None, []
    problems = [
        f"--reference_adapter {p.removeprefix('--adapter ')}"
        for p in check_adapter(reference_adapter, allow_pickle)
    ]
    return reference_adapter, problems


def load_adapter_tokenizer(
    adapter: str | Path, base: str, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the adapter (the one training used), else the base model's.

    Raises:
        ConfigError: the tokenizer has no chat template, so prompts cannot be rendered.
    """
    source = adapter if (Path(adapter) / "tokenizer_config.json").is_file() else resolve_model(base)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer in {source} has no chat template; use an instruct/chat model"
        )
    return tokenizer
