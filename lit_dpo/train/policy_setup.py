"""The policy a run trains, loaded as its settings say on the device its trainer got: the 4-bit
base with LoRA (``models.policy.load_policy``) and, with ``load.reference adapter``, the frozen
reference adapter beside it (``models.reference``)."""

from __future__ import annotations

import logging

import torch
from peft import PeftModel

from lit_dpo.device import packed_attention_for, trainer_device
from lit_dpo.host_memory import freed_memory_mode, release_freed_memory_promptly
from lit_dpo.models.policy import load_policy, trainable_summary
from lit_dpo.models.reference import describe_reference
from lit_dpo.train.forward import check_hidden_state_scoring
from lit_dpo.train.settings import Settings

log = logging.getLogger(__name__)


def load_run_policy(settings: Settings, root_device: torch.device | None) -> PeftModel:
    """Load the policy of ``settings`` on ``root_device`` (None: the CPU, outside a trainer).

    Raises:
        ConfigError: the model cannot be scored as ``efficiency`` says (an adapted output head
            with ``logps_chunk_size``), or the adapters do not fit the base.
    """
    load, lora, efficiency = settings.load, settings.lora, settings.efficiency
    device = trainer_device(root_device if root_device is not None else torch.device("cpu"))
    flex = (
        efficiency.share_prompt
        and packed_attention_for(efficiency.packed_attention, device) == "flex"
    )
    if freed_memory_mode(efficiency.return_freed_memory) == "promptly" and device.kind == "cpu":
        # before loading, so that no freed block of the load or the steps stays resident
        release_freed_memory_promptly()
    policy = load_policy(
        settings.model,
        quantization=load.quantization,
        compute_dtype=load.compute_dtype,
        adapter=load.adapter,
        lora_r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        gradient_checkpointing=efficiency.gradient_checkpointing,
        trust_remote_code=load.trust_remote_code,
        device=root_device,
        quant_storage=load.quant_storage,
        allow_pickle=load.allow_pickle,
        attn_implementation="flex_attention" if flex else None,
        reference_adapter=load.reference_folder,
    )
    log.info("%s: %s", settings.model, trainable_summary(policy))
    log.info("reference: %s", describe_reference(load.reference_folder))
    if efficiency.logps_chunk_size is not None:
        check_hidden_state_scoring(policy, efficiency.share_prompt)
    return policy
