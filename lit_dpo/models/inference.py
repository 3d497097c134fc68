"""Load a trained adapter on its base for inference: 4-bit as in training, or full precision.

An adapter folder written by lit-dpo holds ``adapter_config.json`` (whose
``base_model_name_or_path`` names the base it was trained on), the LoRA weights and the tokenizer
with its chat template, and ``lit_dpo_reference.json``, which names the reference adapter the policy
was trained against when it was not the base. ``compare`` loads the base 4-bit, as training saw it;
``export`` loads it in full precision, because LoRA weights can only be merged into unquantized
ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import attach_adapter, check_adapter, check_adapter_folder
from lit_dpo.models.policy import DType, Quantization, load_policy
from lit_dpo.models.reference import REFERENCE_RECORD, recorded_reference_adapter
from lit_dpo.sources import check_weights, load_kwargs, resolve_model

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def adapter_base_model(adapter: str | Path, model: str | None = None) -> str:
    """The base model to load: ``model`` when given, else the adapter's own record of its base.

    Raises:
        ConfigError: the adapter names no base, or names a local folder that is not here.
    """
    if model is not None:
        return model
    config_path = Path(adapter) / "adapter_config.json"
    base = json.loads(config_path.read_text()).get("base_model_name_or_path")
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
    records (a fit with ``model.reference adapter`` writes it), else None: the reference is the
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


def load_quantized(
    adapter: str | Path,
    base: str,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    device: str | None = None,
    allow_pickle: bool = False,
    reference_adapter: str | None = None,
) -> PeftModel:
    """The base loaded as in training (4-bit NF4 by default) with the adapter attached, in eval.

    The adapter gives the policy; ``with models.reference.as_reference(model):`` gives the
    reference: ``reference_adapter``, attached frozen beside it, or the base (adapters off).
    """
    model = load_policy(
        base,
        quantization=quantization,
        compute_dtype=compute_dtype,
        adapter=str(adapter),
        gradient_checkpointing=False,
        device=device,
        allow_pickle=allow_pickle,
        reference_adapter=reference_adapter,
    )
    model.requires_grad_(False)
    return model.eval()


def load_full_precision(
    adapter: str | Path, base: str, trust_remote_code: bool = False, allow_pickle: bool = False
) -> PeftModel:
    """The base in fp32, never quantized, with the adapter attached, in eval mode."""
    check_adapter_folder(adapter, allow_pickle)
    source = resolve_model(base)
    check_weights(source, allow_pickle)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32, **load_kwargs(allow_pickle, trust_remote_code)
    )
    return attach_adapter(model, adapter, base, allow_pickle=allow_pickle).eval()
