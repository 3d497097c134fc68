"""The policy: a causal LM loaded in 4-bit NF4 (or full precision) with LoRA adapters on top.

The reference model of DPO is this same network with its adapters disabled, or with a frozen
reference adapter switched on in place of the policy's (:mod:`lit_dpo.models.reference`), so one
copy of the base serves both (as in torchtune's LoRA DPO recipe and TRL with ``ref_model=None``).
"""

from __future__ import annotations

import logging

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import BitsAndBytesConfig

from lit_dpo.compat import enable_activation_checkpointing, prepare_for_kbit_training
from lit_dpo.device import DType, Quantization
from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import (
    attach_adapter,
    check_adapter_fits,
    check_adapter_folder,
    pair_problems,
)
from lit_dpo.models.reference import attach_reference_adapter, recorded_reference_adapter
from lit_dpo.models.weights import load_base
from lit_dpo.sources import check_weights, load_kwargs, resolve_model

log = logging.getLogger(__name__)


def load_policy(
    model: str,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    adapter: str | None = None,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: list[str] | str = "all-linear",
    gradient_checkpointing: bool = True,
    trust_remote_code: bool = False,
    device: torch.device | str | None = None,
    quant_storage: DType | None = None,
    allow_pickle: bool = False,
    attn_implementation: str | None = None,
    reference_adapter: str | None = None,
) -> PeftModel:
    """Load the base, quantize it, and attach new LoRA adapters or a saved adapter.

    With ``reference_adapter``, that adapter is also attached frozen as the reference
    (:mod:`lit_dpo.models.reference`), and the policy starts as a trainable copy of it unless
    ``adapter`` names the policy to start from (a DPO run trained from it, to continue or
    validate), which must be the same LoRA on the same base (``adapters.pair_problems``).

    Args:
        model: hub id, local folder, or ``embedded:...`` name.
        quantization: ``nf4`` (QLoRA: 4-bit NormalFloat with double quantization) or ``none``.
        compute_dtype: dtype of the 4-bit matmuls and of the non-quantized weights.
        adapter: folder of a saved PEFT adapter to continue from (trainable) instead of new LoRA.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA input.
        target_modules: module names to adapt, or ``all-linear`` for every attention and MLP
            projection (never the output head).
        gradient_checkpointing: recompute activations in backward to save memory.
        trust_remote_code: run model code from the hub; off unless the user asks.
        device: where to load; 4-bit weights are quantized as they land there.
        quant_storage: float dtype holding the packed 4-bit weights (uint8 when None); FSDP
            shards only float tensors, and only one dtype per wrapped unit.
        allow_pickle: also read weights stored as pickles (``.bin``); else safetensors only.
        attn_implementation: transformers' attention (``sdpa``, ``eager``, ``flex_attention``);
            None lets transformers pick (sdpa where it can).
        reference_adapter: folder of a saved PEFT adapter (an SFT adapter) to attach frozen as
            the reference.

    Raises:
        ConfigError: LoRA targets that match nothing, an adapter that does not fit the model, or
            a policy adapter that is not a copy of the reference adapter (before any load).
        ModelSourceError: the model or adapter is missing, or holds only pickled weights.
    """
    dtype = getattr(torch, compute_dtype)
    kwargs = {"dtype": dtype, **load_kwargs(allow_pickle, trust_remote_code)}
    if quantization == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype, quant_storage)
    if device is not None:
        kwargs["device_map"] = {"": torch.device(device)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    for folder in (adapter, reference_adapter):
        if folder is not None:
            check_adapter_folder(folder, allow_pickle)
    if adapter is not None and reference_adapter is not None:
        problems = pair_problems(adapter, reference_adapter)
        if problems:
            raise ConfigError("; ".join(problems))
    trained_against = recorded_reference_adapter(adapter) if adapter is not None else None
    if trained_against is not None and reference_adapter is None:
        log.warning(
            "the adapter %s was trained against the reference adapter %s; this run's reference "
            "is the base. To measure it against its own reference, set model.load.reference "
            "adapter and model.load.reference_adapter",
            adapter,
            trained_against,
        )
    source = resolve_model(model)
    check_weights(source, allow_pickle)
    # without the full-precision file resident beside the 4-bit weights (see models/weights.py)
    base = load_base(source, quantized=quantization == "nf4", **kwargs)
    # The KV cache is useless in training and conflicts with gradient checkpointing.
    base.config.use_cache = False
    checkpointing_kwargs = {"use_reentrant": False}
    if quantization == "nf4":
        # Casts layer norms and embeddings to fp32 for stable training; under fp16 this also keeps
        # the LoRA weights created below in fp32, which the gradient scaler needs.
        base = prepare_for_kbit_training(base, gradient_checkpointing, checkpointing_kwargs)
    elif gradient_checkpointing:
        enable_activation_checkpointing(base, checkpointing_kwargs)
        base.enable_input_require_grads()

    if reference_adapter is not None:
        check_adapter_fits(base, reference_adapter, model, allow_pickle)
        # the policy is a trainable copy of the reference adapter, or the adapter trained from it
        start = adapter if adapter is not None else reference_adapter
        policy = attach_adapter(base, start, model, is_trainable=True, allow_pickle=allow_pickle)
        attach_reference_adapter(policy, reference_adapter)
        return policy.train()
    if adapter is not None:
        policy = attach_adapter(base, adapter, model, is_trainable=True, allow_pickle=allow_pickle)
        return policy.train()
    config = LoraConfig(
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        policy = get_peft_model(base, config)
    except ValueError as error:
        raise ConfigError(f"LoRA target_modules {target_modules!r}: {error}") from error
    for parameter in policy.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    # from_pretrained returns eval mode; Lightning keeps each module's mode, and LoRA dropout only
    # acts in train mode.
    return policy.train()


def nf4_config(
    compute_dtype: torch.dtype, quant_storage: DType | None = None
) -> BitsAndBytesConfig:
    """QLoRA's quantization: 4-bit NormalFloat weights, their scales quantized again.

    Args:
        compute_dtype: dtype the 4-bit weights are dequantized to for each matmul.
        quant_storage: dtype of the tensors that hold the packed 4-bit weights; None keeps
            bitsandbytes' uint8. FSDP-QLoRA sets it to the dtype of the other weights (bfloat16)
            so that the quantized layers are sharded with the rest of their block.
    """
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=quant_storage,
    )


def trainable_summary(policy: torch.nn.Module) -> str:
    """'trainable params: 4,884,480 of 139,400,000 (3.50%)' (4-bit weights counted unpacked)."""
    trainable, total = policy.get_nb_trainable_parameters()
    return f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
