"""``lit-dpo export``: merge a trained adapter into its base and save it for other tools.

``--format hf`` (the default) writes a plain transformers folder; ``--format gguf`` one GGUF file
llama.cpp, Ollama and LM Studio run, with an Ollama ``Modelfile`` beside it; ``--format
gguf_lora`` the adapter alone in llama.cpp's LoRA layout, for ``llama-server --lora`` on the
base's GGUF.

The base is loaded in fp32, never 4-bit: LoRA's update ``B @ A * alpha / r`` can only be added to
unquantized weights, and adding it in fp32 then casting once loses less than merging in bf16. The
folder loads with ``AutoModelForCausalLM.from_pretrained`` without peft or lit-dpo, with the
tokenizer and chat template the adapter was trained with, and a model card (``README.md``) telling
the adapter's run; the GGUF file holds the same tokenizer and template in its metadata.

    lit-dpo export --adapter runs/cpu/adapter --out runs/cpu/merged --dtype bf16
    lit-dpo export --adapter runs/cpu/adapter --format gguf --gguf_type q8_0 \
        --out runs/cpu/model.gguf
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch

from lit_dpo.errors import ConfigError
from lit_dpo.export.gguf_files import write_gguf, write_gguf_lora
from lit_dpo.export.gguf_writer import GGUF_TYPES, GGUFType
from lit_dpo.export.summary import adapter_facts
from lit_dpo.files import clear_leftovers, staged_folder, unwritable_problem
from lit_dpo.models.adapters import check_adapter
from lit_dpo.models.inference import adapter_base_model, load_adapter_tokenizer, load_for_inference
from lit_dpo.reporting.model_card import merged_card
from lit_dpo.reporting.run_facts import write_facts

log = logging.getLogger(__name__)

ExportDType = Literal["bf16", "fp16", "fp32"]
ExportFormat = Literal["hf", "gguf", "gguf_lora"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FORMATS = ("hf", "gguf", "gguf_lora")


def export(
    adapter: str,
    out: str,
    dtype: ExportDType = "bf16",
    model: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    format: ExportFormat = "hf",
    gguf_type: GGUFType = "f16",
) -> Path:
    """Merge ``adapter`` into its base and write it to ``out``.

    Args:
        adapter: folder of a trained PEFT adapter.
        out: ``hf``: a folder to create (new or empty); ``gguf``, ``gguf_lora``: a new ``.gguf``
            file.
        dtype: ``hf`` only: dtype of the saved weights: ``bf16``, ``fp16`` or ``fp32``.
        model: base model; by default the adapter's ``base_model_name_or_path``.
        trust_remote_code: run model code from the hub; off unless the user asks.
        allow_pickle: also read weights stored as pickles (``.bin``); else safetensors only.
        format: ``hf`` (a transformers folder), ``gguf`` (the merged model as one GGUF file, with
            an Ollama Modelfile beside it) or ``gguf_lora`` (the adapter alone, for llama.cpp's
            ``--lora`` on the base's GGUF).
        gguf_type: ``gguf`` only: the matrices' type: ``f16``, ``bf16``, ``f32`` or ``q8_0``
            (8-bit blocks, about half of f16).

    Returns:
        The folder or file written.

    Raises:
        ConfigError: bad adapter folder, dtype, format, an architecture GGUF export does not
            support, or an ``out`` that already holds files.
    """
    target = Path(out)
    problems = check_adapter(adapter, allow_pickle)
    if format not in FORMATS:
        problems.append(f"--format must be one of {list(FORMATS)}, got {format!r}")
    if dtype not in DTYPES:
        problems.append(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if gguf_type not in GGUF_TYPES:
        problems.append(f"--gguf_type must be one of {list(GGUF_TYPES)}, got {gguf_type!r}")
    if format == "hf" and target.exists() and (not target.is_dir() or any(target.iterdir())):
        problems.append(f"--out {target} already exists and is not empty; pick a new folder")
    if format in ("gguf", "gguf_lora"):
        if target.suffix != ".gguf":
            problems.append(f"--out {target}: a GGUF export is one file; name it FILE.gguf")
        elif target.exists():
            problems.append(f"--out {target} already exists; pick a new file name")
    unwritable = unwritable_problem(target.parent, "--out")
    if unwritable:
        problems.append(unwritable)
    if problems:
        raise ConfigError("export: " + "; ".join(problems))
    clear_leftovers([target.parent])  # exports a killed run left unfinished
    base = adapter_base_model(adapter, model)
    if format == "gguf_lora":
        return write_gguf_lora(adapter, base, target, trust_remote_code)
    tokenizer = load_adapter_tokenizer(adapter, base, trust_remote_code)
    if format == "gguf":
        return write_gguf(
            adapter, base, target, gguf_type, tokenizer, trust_remote_code, allow_pickle
        )
    merged = load_for_inference(
        adapter, base, quantization="none", allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    ).model
    merged = merged.merge_and_unload()
    merged = merged.to(DTYPES[dtype])
    # Training loads switch the cache off; a model for inference wants it on.
    merged.config.use_cache = True

    # Written beside the target and renamed, so a crash or a full disk never leaves half a model
    # at ``out`` (an empty ``out`` folder given by the user is replaced)
    weight_bytes = sum(p.numel() * p.element_size() for p in merged.state_dict().values())
    with staged_folder(target, expected=weight_bytes) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        facts = adapter_facts(adapter, base)
        write_facts(staging, facts)
        card = merged_card(facts, target, str(adapter), dtype)
        (staging / "README.md").write_text(card, encoding="utf-8")
    log.info("merged %s into %s: %s (%s)", adapter, base, target, dtype)
    print(f"merged model written to {target} ({dtype})", flush=True)
    return target

