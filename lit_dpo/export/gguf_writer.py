"""Write a merged model, or a LoRA adapter alone, as a GGUF file llama.cpp loads.

The model: every tensor under its llama.cpp name (:mod:`gguf_layout`), 1-D tensors (norms,
biases) in f32 whatever the type, matrices in ``f32``, ``f16``, ``bf16`` or ``q8_0`` (blocks of 32
int8 with one f16 scale, quantized by the ``gguf`` package's ``gguf.quants``, as
``convert_hf_to_gguf.py --outtype q8_0``); the hyperparameters; the tokenizer and chat template
(:mod:`gguf_vocab`).

The adapter: llama.cpp's LoRA layout (``convert_lora_to_gguf.py``): ``general.type adapter``,
``adapter.type lora``, ``adapter.lora.alpha``, and for each adapted matrix ``<name>.lora_a``
(``r x in``) and ``<name>.lora_b`` (``out x r``, rows permuted as the matrix's are), which
``llama-cli --lora`` adds to the base GGUF as ``W + B @ A * alpha / r``.

https://github.com/ggml-org/llama.cpp/blob/master/convert_lora_to_gguf.py
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
import torch

from lit_dpo.export.gguf_layout import TensorNames, hyperparameters
from lit_dpo.export.gguf_vocab import add_vocab

GGUFType = Literal["f32", "f16", "bf16", "q8_0"]
# --gguf_type -> (the matrices' type, general.file_type)
GGUF_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


def encode(
    array: np.ndarray, qtype: gguf.GGMLQuantizationType
) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """``array`` (fp32) stored as ``qtype``: vectors stay f32 (llama.cpp adds and scales them in
    f32), and a matrix whose rows do not split into whole Q8_0 blocks falls back to f16, as
    llama.cpp's converter does."""
    if array.ndim < 2:
        qtype = gguf.GGMLQuantizationType.F32
    elif qtype == gguf.GGMLQuantizationType.Q8_0:
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if array.shape[-1] % block:
            qtype = gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype), qtype


def write_model_gguf(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    config: Any,
    tokenizer: Any,
    gguf_type: GGUFType,
    name: str,
    description: str = "",
) -> Path:
    """Write a full model as GGUF.

    Args:
        path: the ``.gguf`` file to write.
        state_dict: the transformers parameters (merged, no LoRA), any float dtype.
        config: its transformers config (``llama`` or ``qwen2``).
        tokenizer: the tokenizer with its chat template.
        gguf_type: the matrices' type.
        name: ``general.name``.
        description: ``general.description`` (the model card's summary).

    Returns:
        ``path``.

    Raises:
        ValueError: a parameter or tokenizer llama.cpp's layout has no place for.
    """
    names = TensorNames(config)
    qtype, file_type = GGUF_TYPES[gguf_type]
    writer = gguf.GGUFWriter(path, names.gguf_arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    if description:
        writer.add_description(description)
    for method, value in hyperparameters(config).items():
        getattr(writer, method)(value)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, tokenizer, config.vocab_size)
    for hf_name, tensor in state_dict.items():
        gguf_name = names.gguf_name(hf_name)
        if gguf_name is None:
            continue
        rows = names.to_gguf_rows(hf_name, tensor.detach().float().cpu().numpy())
        data, stored = encode(rows, qtype)
        writer.add_tensor(gguf_name, data, raw_dtype=stored)
    _write(writer)
    return Path(path)


def lora_scale_alpha(adapter_config: Mapping[str, Any]) -> float:
    """The ``adapter.lora.alpha`` that makes llama.cpp's scale ``alpha / r`` equal peft's:
    ``lora_alpha`` itself, or ``lora_alpha * sqrt(r)`` for rank-stabilised LoRA, whose scale is
    ``lora_alpha / sqrt(r)``."""
    alpha = float(adapter_config["lora_alpha"])
    if adapter_config.get("use_rslora"):
        alpha *= math.sqrt(adapter_config["r"])
    return alpha


def lora_problems(adapter_config: Mapping[str, Any]) -> list[str]:
    """What in a peft adapter config llama.cpp's LoRA layout cannot hold."""
    problems = []
    if adapter_config.get("peft_type", "LORA") != "LORA":
        problems.append(f"it is a {adapter_config['peft_type']} adapter, not LoRA")
    if adapter_config.get("use_dora"):
        problems.append("DoRA adapters have no llama.cpp layout")
    if adapter_config.get("modules_to_save"):
        problems.append(f"modules_to_save {adapter_config['modules_to_save']} are full weights")
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        problems.append("per-module rank or alpha (rank_pattern, alpha_pattern)")
    return problems


def lora_pairs(
    adapter_weights: Mapping[str, torch.Tensor],
) -> Iterable[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(base parameter name, A, B)`` for each adapted matrix of a peft state dict, whose keys
    read ``base_model.model.<module>.lora_A.weight`` (``r x in``) and ``...lora_B.weight``
    (``out x r``).

    Raises:
        ValueError: a key that is not a LoRA A or B matrix (embedding LoRA, biases), or an A
            without its B.
    """
    a_matrices, b_matrices = {}, {}
    for key, tensor in adapter_weights.items():
        module = key.removeprefix("base_model.model.")
        for suffix, found in ((".lora_A.weight", a_matrices), (".lora_B.weight", b_matrices)):
            if module.endswith(suffix):
                found[module.removesuffix(suffix) + ".weight"] = tensor
                break
        else:
            raise ValueError(f"adapter tensor {key} is not a LoRA A or B matrix")
    if a_matrices.keys() != b_matrices.keys():
        missing = sorted(a_matrices.keys() ^ b_matrices.keys())
        raise ValueError(f"adapter has LoRA A without B or B without A: {missing[:3]}")
    for name in sorted(a_matrices):
        yield name, a_matrices[name], b_matrices[name]


def write_lora_gguf(
    path: str | Path,
    adapter_weights: Mapping[str, torch.Tensor],
    adapter_config: Mapping[str, Any],
    base_config: Any,
    name: str,
) -> Path:
    """Write a LoRA adapter alone in llama.cpp's adapter layout, in f32 (a few MB).

    Args:
        path: the ``.gguf`` file to write.
        adapter_weights: peft's saved state dict (``adapter_model.safetensors``).
        adapter_config: its ``adapter_config.json``.
        base_config: the base model's transformers config (architecture, heads).
        name: ``general.name``.

    Raises:
        ValueError: an adapter :func:`lora_problems` refuses, or a module llama.cpp has no
            tensor for.
    """
    problems = lora_problems(adapter_config)
    if problems:
        raise ValueError("the adapter cannot be written for llama.cpp: " + "; ".join(problems))
    names = TensorNames(base_config)
    writer = gguf.GGUFWriter(path, names.gguf_arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora_scale_alpha(adapter_config))
    for hf_name, lora_a, lora_b in lora_pairs(adapter_weights):
        gguf_name = names.gguf_name(hf_name)
        if gguf_name is None:
            raise ValueError(f"the adapter changes {hf_name}, which the GGUF model leaves out")
        # W + B @ A: permuting W's rows is permuting B's rows
        lora_b = names.to_gguf_rows(hf_name, lora_b.float().numpy())
        writer.add_tensor(gguf_name + ".lora_a", lora_a.float().numpy())
        writer.add_tensor(gguf_name + ".lora_b", np.ascontiguousarray(lora_b))
    _write(writer)
    return Path(path)


def _write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
