"""The tokenizer as GGUF metadata: what llama.cpp needs to tokenize and render prompts as lit-dpo.

A byte-level BPE tokenizer (GPT-2's family: SmolLM2, Qwen2) is written as llama.cpp's
``convert_hf_to_gguf.py`` writes it (``get_vocab_base``, ``_set_vocab_gpt2``): every id's token
and type (normal, control for special tokens, user-defined for other added tokens, unused for ids
past the tokenizer), the merges, BOS/EOS/unknown/pad ids, whether BOS/EOS are added, and the chat
template (``tokenizer.chat_template``), read with the ``gguf`` package's ``SpecialVocab``.

``tokenizer.ggml.pre`` names llama.cpp's pre-tokenizer (how text is split before BPE). llama.cpp
picks it from a hash of a test string's tokens; lit-dpo reads the tokenizer's own pre-tokenizer
instead and refuses one it does not recognise, since a wrong choice splits numbers or spaces
differently from the tokenizer the adapter was trained with.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import gguf

# llama.cpp's name -> the ``pre_tokenizer`` of tokenizer.json it reproduces
GPT2_REGEX_BYTE_LEVEL = {"type": "ByteLevel", "use_regex": True}
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pre_tokenizer_name(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """llama.cpp's name for a tokenizer.json ``pre_tokenizer`` (None: not one it has).

    - ``gpt-2``: byte-level with GPT-2's split regex (the embedded SmolLM2 as converted);
    - ``smollm``: single digits split off first, then GPT-2's byte-level (SmolLM2 from the hub);
    - ``qwen2``: Qwen2's split regex, then byte-level without a regex of its own.
    """
    if not pre_tokenizer:
        return None
    if _is(pre_tokenizer, GPT2_REGEX_BYTE_LEVEL):
        return "gpt-2"
    parts = pre_tokenizer.get("pretokenizers") or []
    if pre_tokenizer.get("type") != "Sequence" or len(parts) != 2:
        return None
    first, second = parts
    if _is(first, {"type": "Digits", "individual_digits": True}) and _is(
        second, GPT2_REGEX_BYTE_LEVEL
    ):
        return "smollm"
    split = first.get("pattern", {}).get("Regex") if first.get("type") == "Split" else None
    if split == QWEN2_REGEX and _is(second, {"type": "ByteLevel", "use_regex": False}):
        return "qwen2"
    return None


def _is(part: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(part.get(key) == value for key, value in wanted.items())


def vocab_problem(tokenizer: Any) -> str | None:
    """Why ``tokenizer`` cannot be written for llama.cpp (None: it can)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        return f"GGUF export needs a byte-level BPE tokenizer, not {spec['model'].get('type')!r}"
    if pre_tokenizer_name(spec.get("pre_tokenizer")) is None:
        return (
            "GGUF export does not recognise this tokenizer's pre-tokenizer ("
            f"{json.dumps(spec.get('pre_tokenizer'))[:120]}); supported: GPT-2, SmolLM2, Qwen2"
        )
    return None


def token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id below ``vocab_size`` (the embedding's rows) as ``(token, gguf.TokenType)``.

    Ids the tokenizer lacks (Qwen2 pads its embedding to a multiple of 128) are ``[PAD<id>]``,
    unused, as llama.cpp writes them.
    """
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(token)
            special = added[index].special
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def add_vocab(writer: gguf.GGUFWriter, tokenizer: Any, vocab_size: int) -> None:
    """Write ``tokenizer`` (vocabulary, merges, special ids, chat template) into ``writer``.

    Raises:
        ValueError: a tokenizer :func:`vocab_problem` refuses.
    """
    problem = vocab_problem(tokenizer)
    if problem:
        raise ValueError(problem)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec["pre_tokenizer"]))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        # SpecialVocab reads the files transformers writes (tokenizer.json, tokenizer_config.json,
        # chat_template.jinja): the same reader llama.cpp's converter uses
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=len(tokens))
    # what the tokenizer does, not what its config says: transformers 5 drops the flags
    probe = tokenizer("a")["input_ids"]
    special.add_special_token["bos"] = bool(probe) and probe[0] == tokenizer.bos_token_id
    special.add_special_token["eos"] = bool(probe) and probe[-1] == tokenizer.eos_token_id
    if tokenizer.chat_template and special.chat_template is None:
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
