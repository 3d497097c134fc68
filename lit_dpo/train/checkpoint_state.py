"""What a DPOModule checkpoint keeps of the module's state, and what it still reads of 0.2's.

The frozen base (hundreds of MB, 4-bit) is reloaded from its source, so a checkpoint keeps what
training changed: the trainable LoRA weights, the metric states and, where the objective has one,
BCO's reward shift (Lightning adds the optimizer and scheduler state). The settings are saved as
plain values (``settings.Settings.as_dict``); a 0.2 checkpoint's flat ones are read through
``settings.MOVED_KEYS`` by ``lit_dpo.cli``.
"""

from __future__ import annotations

from typing import Any

import torch


def kept_state(
    state_dict: dict[str, Any], policy: torch.nn.Module, keep_bco_shift: bool
) -> dict[str, Any]:
    """The entries of a module's ``state_dict`` a checkpoint keeps.

    Args:
        state_dict: the module's whole state dict (the frozen base included).
        policy: the module's ``policy``: its parameters with ``requires_grad`` are kept.
        keep_bco_shift: keep ``bco_shift.*`` (the objective has ``bco_pair``).
    """
    trainable = {
        # FSDP's wrappers are in the module's names but not in the state dict's
        f"policy.{name.replace('_fsdp_wrapped_module.', '')}"
        for name, parameter in policy.named_parameters()
        if parameter.requires_grad
    }
    kept = ("metrics", "bco_shift.") if keep_bco_shift else ("metrics",)
    return {
        key: value
        for key, value in state_dict.items()
        if key in trainable or any(part in key for part in kept)
    }


def read_0_2_state(checkpoint: dict[str, Any]) -> None:
    """Put what a 0.2 checkpoint kept beside the state dict where 0.3 keeps it: BCO's shift
    (``bco_reward_mean``) as ``bco_shift``'s state. Read for one release."""
    if "bco_reward_mean" in checkpoint:
        mean, steps = checkpoint["bco_reward_mean"]
        state = {"mean": mean, "steps": steps}
        checkpoint["state_dict"].setdefault("bco_shift._extra_state", state)
