"""``lit-dpo export --format gguf`` and ``--format gguf_lora``: the files, written whole or not at
all, after every check that needs no weights.

``gguf``: the adapter merged into its fp32 base (the same merge as ``--format hf``), written with
:func:`gguf_writer.write_model_gguf`, and an Ollama Modelfile beside it (``model.gguf`` ->
``model.Modelfile``). ``gguf_lora``: the adapter's own file, read without loading the base (only
its config, for the architecture and head counts).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lit_dpo.errors import ConfigError
from lit_dpo.export.gguf_layout import architecture_problem
from lit_dpo.export.gguf_vocab import vocab_problem
from lit_dpo.export.gguf_writer import GGUFType, write_lora_gguf, write_model_gguf
from lit_dpo.export.modelfile import modelfile
from lit_dpo.export.summary import adapter_facts, card_summary
from lit_dpo.files import write_atomically, write_text_atomically
from lit_dpo.models.inference import load_for_inference
from lit_dpo.sources import resolve_model

log = logging.getLogger(__name__)


def modelfile_path(gguf_path: str | Path) -> Path:
    """The Ollama Modelfile beside ``gguf_path``: ``model-q8_0.gguf`` -> ``model-q8_0.Modelfile``
    (one per file, so exports of several types can share a folder)."""
    return Path(gguf_path).with_suffix(".Modelfile")


def base_config(base: str, trust_remote_code: bool = False) -> Any:
    """The base's transformers config, checked for a layout GGUF export supports.

    Raises:
        ConfigError: an architecture or RoPE variant the GGUF writer does not support.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(base), trust_remote_code=trust_remote_code)
    problem = architecture_problem(config)
    if problem:
        raise ConfigError(f"export: base {base}: {problem}")
    return config


def write_gguf(
    adapter: str | Path,
    base: str,
    target: Path,
    gguf_type: GGUFType,
    tokenizer: Any,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """Merge ``adapter`` into ``base`` in fp32 and write ``target`` (GGUF) and its Modelfile."""
    base_config(base, trust_remote_code)
    problem = vocab_problem(tokenizer)
    if problem:
        raise ConfigError(f"export: the tokenizer of {adapter}: {problem}")
    merged = load_for_inference(
        adapter, base, quantization="none", allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    ).model
    merged = merged.merge_and_unload()
    summary = card_summary(adapter_facts(adapter, base), target, adapter, f"GGUF {gguf_type}")
    write_atomically(
        target,
        lambda staging: write_model_gguf(
            staging,
            merged.state_dict(),
            merged.config,
            tokenizer,
            gguf_type,
            name=target.stem,
            description=summary,
        ),
    )
    modelfile_out = write_text_atomically(
        modelfile_path(target), modelfile(target.name, tokenizer, summary)
    )
    size = target.stat().st_size / 1e6
    log.info("merged %s into %s: %s (GGUF %s)", adapter, base, target, gguf_type)
    print(
        f"merged model written to {target} (GGUF {gguf_type}, {size:.1f} MB); Ollama: "
        f"ollama create NAME -f {modelfile_out}",
        flush=True,
    )
    return target


def write_gguf_lora(
    adapter: str | Path, base: str, target: Path, trust_remote_code: bool = False
) -> Path:
    """Write ``adapter`` alone as llama.cpp's LoRA GGUF, for ``--lora`` on ``base``'s GGUF.

    Raises:
        ConfigError: the adapter's weights are not safetensors, or its kind has no llama.cpp
            layout (DoRA, modules_to_save, per-module ranks).
    """
    from safetensors.torch import load_file

    config = base_config(base, trust_remote_code)
    weights_file = Path(adapter) / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise ConfigError(
            f"export: {weights_file} is missing; --format gguf_lora reads safetensors adapters"
        )
    adapter_config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    try:
        write_atomically(
            target,
            lambda staging: write_lora_gguf(
                staging, load_file(weights_file), adapter_config, config, name=target.stem
            ),
        )
    except ValueError as error:
        raise ConfigError(f"export: --adapter {adapter}: {error}") from None
    print(
        f"LoRA adapter written to {target} (GGUF f32); llama.cpp: llama-server -m BASE.gguf "
        f"--lora {target}, where BASE.gguf is {base} as GGUF",
        flush=True,
    )
    return target
