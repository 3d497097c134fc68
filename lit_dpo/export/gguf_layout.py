"""How a transformers model's tensors and settings are laid out in a llama.cpp GGUF file.

This is the part of llama.cpp's ``convert_hf_to_gguf.py`` lit-dpo needs, for the architectures it
exports (``LlamaModel`` and ``Qwen2Model`` there): the GGUF architecture name, the ``<arch>.*``
hyperparameters, the tensor names (``model.layers.0.self_attn.q_proj.weight`` ->
``blk.0.attn_q.weight``, from the ``gguf`` package's own name map) and Llama's Q/K row
permutation. Everything here is pure: arrays and configs in, names and arrays out.

https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np


@dataclass(frozen=True)
class Architecture:
    """One transformers model type as llama.cpp reads it.

    Attributes:
        gguf_arch: the GGUF architecture (``general.architecture``) llama.cpp loads.
        permute_qk: llama.cpp's Llama graph applies RoPE to interleaved pairs, transformers' to
            halves: Q and K rows are reordered so both compute the same thing. Qwen2's graph
            uses the halves (NEOX RoPE) and takes the rows as they are.
    """

    gguf_arch: gguf.MODEL_ARCH
    permute_qk: bool


# transformers ``config.model_type`` -> its layout; the one list every refusal names
ARCHITECTURES = {
    "llama": Architecture(gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "qwen2": Architecture(gguf.MODEL_ARCH.QWEN2, permute_qk=False),
}
# parameters transformers keeps and llama.cpp recomputes (rotary tables)
SKIPPED_SUFFIXES = (".rotary_emb.inv_freq",)


def architecture_problem(config: Any) -> str | None:
    """Why ``config`` cannot be written as GGUF by lit-dpo (None: it can)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        return (
            f"GGUF export supports the architectures {', '.join(ARCHITECTURES)}, not "
            f"{model_type!r}; export a transformers folder (--format hf) and convert it with "
            "llama.cpp's convert_hf_to_gguf.py"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        return (
            f"GGUF export supports plain RoPE only, not rope_type {rope['rope_type']!r}; export a "
            "transformers folder (--format hf) and convert it with llama.cpp"
        )
    return None


def rope_parameters(config: Any) -> dict[str, Any]:
    """``rope_theta`` and ``rope_type``, as transformers 5 (``rope_parameters``) or 4 keeps them."""
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in rope and getattr(config, "rope_theta", None) is not None:
        rope["rope_theta"] = config.rope_theta
    scaling = getattr(config, "rope_scaling", None) or {}
    if "rope_type" not in rope and scaling:
        rope["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
    return rope


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def hyperparameters(config: Any) -> dict[str, int | float]:
    """The ``<arch>.*`` settings llama.cpp builds the graph from, keyed by the writer's method
    (``add_block_count`` ...), as ``TextModel.set_gguf_parameters`` writes them."""
    params: dict[str, int | float] = {
        "add_block_count": config.num_hidden_layers,
        "add_context_length": config.max_position_embeddings,
        "add_embedding_length": config.hidden_size,
        "add_feed_forward_length": config.intermediate_size,
        "add_head_count": config.num_attention_heads,
        "add_head_count_kv": getattr(config, "num_key_value_heads", None)
        or config.num_attention_heads,
        "add_rope_freq_base": float(rope_parameters(config).get("rope_theta", 10000.0)),
        "add_layer_norm_rms_eps": float(config.rms_norm_eps),
        "add_vocab_size": config.vocab_size,
        "add_rope_dimension_count": head_dim(config),
    }
    if head_dim(config) != config.hidden_size // config.num_attention_heads:
        params["add_key_length"] = params["add_value_length"] = head_dim(config)
    return params


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q or K projection (or of a LoRA B) from transformers' RoPE halves
    to llama.cpp's interleaved pairs (``LlamaModel.permute`` in ``convert_hf_to_gguf.py``).

    Within each head, rows ``[x0..x(d/2-1), y0..y(d/2-1)]`` become ``[x0, y0, x1, y1, ...]``.

    Args:
        weight: ``(n_head * head_dim, in)`` or ``(n_head * head_dim,)``.
        n_head: heads of this projection (key-value heads for K).

    Raises:
        ValueError: the rows do not split into ``n_head`` heads of an even size.
    """
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot split {rows} rows into {n_head} heads of even size")
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


class TensorNames:
    """transformers parameter names -> GGUF tensor names for one model, with its Q/K layout."""

    def __init__(self, config: Any) -> None:
        self.architecture = ARCHITECTURES[config.model_type]
        self.n_head = config.num_attention_heads
        self.n_head_kv = getattr(config, "num_key_value_heads", None) or self.n_head
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self._map = gguf.get_tensor_name_map(
            self.architecture.gguf_arch, config.num_hidden_layers
        )
        self._allowed = set(gguf.MODEL_TENSORS[self.architecture.gguf_arch])

    def gguf_name(self, name: str) -> str | None:
        """The GGUF name of parameter ``name``; None for one llama.cpp does not read (a tied
        ``lm_head``, which the file leaves out: llama.cpp falls back to ``token_embd``).

        Raises:
            ValueError: a parameter llama.cpp's layout for this architecture has no place for.
        """
        if name.endswith(SKIPPED_SUFFIXES) or (self.tied and name == "lm_head.weight"):
            return None
        found = self._map.get_type_and_name(name, try_suffixes=(".weight", ".bias"))
        if found is None or found[0] not in self._allowed:
            raise ValueError(f"{name} has no place in llama.cpp's {self.gguf_arch} layout")
        return found[1]

    @property
    def gguf_arch(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.architecture.gguf_arch]

    def to_gguf_rows(self, name: str, weight: np.ndarray) -> np.ndarray:
        """``weight`` (a parameter, or the LoRA B of one) with its rows in llama.cpp's order."""
        if not self.architecture.permute_qk:
            return weight
        if ".self_attn.q_proj." in name:
            return permute_rows(weight, self.n_head)
        if ".self_attn.k_proj." in name:
            return permute_rows(weight, self.n_head_kv)
        return weight
