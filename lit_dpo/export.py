"""``lit-dpo export``: merge a trained adapter into its base and save a plain transformers model.

The base is loaded in fp32, never 4-bit: LoRA's update ``B @ A * alpha / r`` can only be added to
unquantized weights, and adding it in fp32 then casting once loses less than merging in bf16. The
result is a folder ``AutoModelForCausalLM.from_pretrained`` loads without peft or lit-dpo, with the
tokenizer and chat template the adapter was trained with, and a model card (``README.md``) telling
the adapter's run.

    lit-dpo export --adapter runs/cpu/adapter --out runs/cpu/merged --dtype bf16
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch

from lit_dpo.errors import ConfigError
from lit_dpo.files import staged_folder, unwritable_problem
from lit_dpo.models.adapters import check_adapter
from lit_dpo.models.inference import adapter_base_model, load_adapter_tokenizer, load_full_precision
from lit_dpo.reporting.model_card import merged_card
from lit_dpo.reporting.run_facts import (
    base_model_facts,
    framework_versions,
    read_facts,
    write_facts,
)

log = logging.getLogger(__name__)

ExportDType = Literal["bf16", "fp16", "fp32"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def export(
    adapter: str,
    out: str,
    dtype: ExportDType = "bf16",
    model: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """Merge ``adapter`` into its base and write a standalone model folder to ``out``.

    Args:
        adapter: folder of a trained PEFT adapter.
        out: folder to create; it must not exist or be empty.
        dtype: dtype of the saved weights: ``bf16``, ``fp16`` (half the size of fp32) or ``fp32``.
        model: base model; by default the adapter's ``base_model_name_or_path``.
        trust_remote_code: run model code from the hub; off unless the user asks.
        allow_pickle: also read weights stored as pickles (``.bin``); else safetensors only.

    Returns:
        The folder written.

    Raises:
        ConfigError: bad adapter folder, dtype, or an ``out`` folder that already holds files.
    """
    target = Path(out)
    problems = check_adapter(adapter, allow_pickle)
    if dtype not in DTYPES:
        problems.append(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        problems.append(f"--out {target} already exists and is not empty; pick a new folder")
    unwritable = unwritable_problem(target.parent, "--out")
    if unwritable:
        problems.append(unwritable)
    if problems:
        raise ConfigError("export: " + "; ".join(problems))
    base = adapter_base_model(adapter, model)
    tokenizer = load_adapter_tokenizer(adapter, base, trust_remote_code)
    merged = load_full_precision(adapter, base, trust_remote_code, allow_pickle)
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
        # the adapter's run, as its card tells it, with this merge; an adapter lit-dpo did not
        # write has only its base to tell
        facts = read_facts(adapter) or {"base": base_model_facts(base)}
        facts.setdefault("versions", framework_versions())
        write_facts(staging, facts)
        card = merged_card(facts, target, str(adapter), dtype)
        (staging / "README.md").write_text(card, encoding="utf-8")
    log.info("merged %s into %s: %s (%s)", adapter, base, target, dtype)
    print(f"merged model written to {target} ({dtype})", flush=True)
    return target
