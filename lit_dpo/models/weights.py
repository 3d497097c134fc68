"""Loading a 4-bit base on a CPU without the full-precision file resident beside it.

``from_pretrained`` reads safetensors through a memory map. Quantizing touches every page of it,
and mapped pages count as the process's resident memory while the map is open: loading the
embedded SmolLM2-135M (an fp32 file of 0.54 GB) in 4-bit keeps all 0.54 GB resident beside the
0.07 GB of 4-bit weights. Worse, a weight that is not converted (embeddings and norms already in
the compute dtype) keeps pointing into the map after loading, so the whole file stays resident
for the rest of the run.

``load_base`` reads each tensor of a local folder's safetensors with ``pread`` into memory of its
own instead (``safe_open(..., backend="pread")``; transformers does the same on Windows and MPS)
and hands the lazy tensors to ``from_pretrained`` as its ``state_dict``: a tensor is read, quantized
and freed one at a time. Elsewhere (a hub id, model code of its own, a GPU, no quantization) it
loads as transformers does, and with 4-bit weights on a CPU still copies the unquantized weights
out of the map so that it closes (``release_model_file``).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedModel


def load_base(source: str, quantized: bool, **kwargs: Any) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained(source, **kwargs)``, frugal with host memory.

    Args:
        source: a local folder or hub id (``sources.resolve_model``'s answer).
        quantized: the weights are quantized as they load (``quantization_config`` in kwargs).
        kwargs: ``from_pretrained``'s keyword arguments (``dtype``, ``device_map``...).
    """
    model_class = _pread_class(source, quantized, kwargs)
    if model_class is None:
        base = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        if quantized and _on_cpu(kwargs):
            release_model_file(base)
        return compute_4bit_as_asked(base)
    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    loading = {k: v for k, v in kwargs.items() if k not in ("use_safetensors", "trust_remote_code")}
    with ExitStack() as files:
        from safetensors import safe_open

        state = {}
        for path in sorted(Path(source).glob("*.safetensors")):
            handle = files.enter_context(safe_open(path, framework="pt", backend="pread"))
            state.update({name: handle.get_slice(name) for name in handle.keys()})
        base = model_class.from_pretrained(None, config=config, state_dict=state, **loading)
    # from_pretrained(None) records no source; peft writes name_or_path into adapter_config.json
    base.config._name_or_path = base.name_or_path = str(source)
    if (Path(source) / "generation_config.json").is_file():
        # what from_pretrained reads beside the weights when it is given the folder
        base.generation_config = GenerationConfig.from_pretrained(source)
    return compute_4bit_as_asked(base)


def compute_4bit_as_asked(model: torch.nn.Module) -> torch.nn.Module:
    """Keep bitsandbytes' 4-bit layers on the kernel of the compute dtype asked for.

    On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weights the first time it runs
    in eval mode without grad (the reference and validation passes, and every inference pass)
    and from then on uses a kernel with no backward that computes in bf16: in training the
    gradients into earlier LoRA layers would silently vanish, and in inference ``lit-dpo
    compare`` would score replies ~1e-3 nats away from what validation computes on the same
    weights (and from what the same command gives on a CPU without AVX512-BF16).
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def release_model_file(model: torch.nn.Module) -> None:
    """Give the CPU weights that were not quantized memory of their own, so the model file is
    unmapped (0.11 GB copied for SmolLM2-135M, 0.49 GB of mapped file released).

    4-bit weights (bitsandbytes' ``Params4bit``, which carries its ``quant_state``) are new
    memory already; without quantization the map holds the weights themselves and is left alone.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.device.type == "cpu" and not hasattr(parameter, "quant_state"):
                parameter.data = parameter.data.clone()
        for module in model.modules():
            for name, buffer in module.named_buffers(recurse=False):
                if buffer is not None and buffer.device.type == "cpu":
                    setattr(module, name, buffer.clone())


def _pread_class(source: str, quantized: bool, kwargs: dict[str, Any]) -> type | None:
    """The model class to load ``source`` tensor by tensor, or None to load it as transformers
    does: only 4-bit loads on the CPU of a local folder of safetensors, with a transformers
    architecture."""
    folder = Path(source)
    if not (quantized and _on_cpu(kwargs) and folder.is_dir()):
        return None
    if not any(folder.glob("*.safetensors")) or kwargs.get("trust_remote_code"):
        return None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return None


def _on_cpu(kwargs: dict[str, Any]) -> bool:
    devices = (kwargs.get("device_map") or {"": torch.device("cpu")}).values()
    return all(torch.device(device).type == "cpu" for device in devices)
