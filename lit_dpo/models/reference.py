"""The reference DPO measures the policy against: the base (adapters off) or a frozen SFT adapter.

By default the reference is the policy's own network with its LoRA adapters disabled (peft's
``disable_adapter()``, as in torchtune's LoRA DPO recipe): the base model. A user who ran LoRA SFT
first wants the SFT model as the reference, else the KL anchor, the implicit rewards and every
accuracy are measured against a model the policy never was (TRL #3371, torchtune #2272). With
``model.load.reference adapter`` the SFT adapter is on the one 4-bit base twice, as peft's
multi-adapter model holds it: the policy's trainable adapter (peft's ``default``) and a frozen
copy named ``reference``, which :func:`as_reference` switches to for the reference pass (TRL
loads a passed adapter a second time as a frozen adapter named "ref" in the same way:
``trl.trainer.utils.use_adapter``). The base weights exist once.

The reference adapter is deterministic: its LoRA dropout is replaced by the identity when it is
attached, because a no-grad pass in train mode still drops. peft's ``set_adapter`` marks the adapter
it activates trainable (or freezes every adapter, in inference mode, and from peft 0.22 also puts
that adapter's modules in eval mode); :func:`as_reference` puts every ``requires_grad`` and every
module's mode back as it found them, so the optimizer's weights stay exactly the policy's and its
LoRA dropout stays on.

A saved adapter folder records its reference in :data:`REFERENCE_RECORD`, so ``compare`` and
``serve`` answer with the same reference training measured against.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import PeftModel

from lit_dpo.files import write_text_atomically

log = logging.getLogger(__name__)

# peft's name of the first adapter, the policy's
POLICY_ADAPTER = "default"
REFERENCE_ADAPTER = "reference"
# PEFT's name for "adapters off" in a batch that mixes adapters
BASE_IN_MIXED_BATCH = "__base__"
# beside adapter_config.json in every adapter folder lit-dpo writes
REFERENCE_RECORD = "lit_dpo_reference.json"


def attach_reference_adapter(model: PeftModel, reference_adapter: str | Path) -> None:
    """Load ``reference_adapter`` onto ``model`` as the frozen adapter :data:`REFERENCE_ADAPTER`.

    The policy's adapter stays active, trainable or not as it was, and the model keeps its train
    or eval mode (peft's ``load_adapter`` would leave it in eval). The caller checks beforehand
    that the adapter fits the base (``adapters.check_adapter_fits``).
    """
    training = model.training
    model.load_adapter(str(reference_adapter), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.train(training)
    for module in model.modules():
        dropout = getattr(module, "lora_dropout", None)
        if isinstance(dropout, torch.nn.ModuleDict) and REFERENCE_ADAPTER in dropout:
            dropout[REFERENCE_ADAPTER] = torch.nn.Identity()
    for name, parameter in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            parameter.requires_grad_(False)


def has_reference_adapter(model: torch.nn.Module) -> bool:
    return REFERENCE_ADAPTER in getattr(model, "peft_config", {})


def reference_adapter_name(model: torch.nn.Module) -> str:
    """The adapter that runs ``model`` as the reference in a batch that mixes adapters: the frozen
    reference adapter when it has one, else PEFT's ``__base__`` (adapters off)."""
    return REFERENCE_ADAPTER if has_reference_adapter(model) else BASE_IN_MIXED_BATCH


@contextlib.contextmanager
def as_reference(model: PeftModel) -> Iterator[None]:
    """Run ``model`` as the reference inside the block: its frozen reference adapter when it has
    one, else its adapters off. Gradients are the caller's business (``torch.no_grad()``)."""
    if not has_reference_adapter(model):
        with model.disable_adapter():
            yield
        return
    # set_adapter flips requires_grad of every adapter, and since peft 0.22 puts the adapter it
    # activates with inference_mode into eval mode (which would turn the policy's LoRA dropout off
    # for the rest of training): put each flag and each module's mode back as it was
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    modes = [(module, module.training) for module in model.modules()]
    active = model.active_adapter
    model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(active, inference_mode=True)
        for parameter, requires_grad in flags:
            parameter.requires_grad_(requires_grad)
        for module, training in modes:
            module.training = training


def describe_reference(reference_adapter: str | Path | None) -> str:
    """'the base (adapters off)' or 'the adapter <folder> (frozen)', for tables and reports."""
    if reference_adapter is None:
        return "the base (adapters off)"
    return f"the adapter {reference_adapter} (frozen)"


def write_reference_record(folder: str | Path, reference_adapter: str | Path | None) -> None:
    """Record in an adapter folder what its policy was trained against."""
    record = {"reference": "base"}
    if reference_adapter is not None:
        folder_name = str(Path(reference_adapter).resolve())
        record = {"reference": "adapter", "reference_adapter": folder_name}
    text = json.dumps(record, indent=2) + "\n"
    write_text_atomically(Path(folder) / REFERENCE_RECORD, text)


def recorded_reference_adapter(folder: str | Path) -> str | None:
    """The reference adapter an adapter folder records, or None (the base, or no record)."""
    path = Path(folder) / REFERENCE_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("reference") != "adapter":
        return None
    return record.get("reference_adapter")
