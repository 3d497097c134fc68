"""Adapter folders: is it a PEFT adapter, may its weights be read, does it fit the model.

Every place that attaches a saved adapter (training and ``validate`` through ``policy``,
``compare``, ``export``, ``serve``) goes through :func:`attach_adapter`, which refuses an adapter
whose LoRA weights do not fit the base before peft sees them (a frozen reference adapter, attached
beside the policy's by ``models.reference``, passes :func:`check_adapter_fits` first). The check is
on structure: each LoRA pair ``lora_A`` (r, in) / ``lora_B`` (out, r) must land on a module of the
base with those features. Names are only warned about: the base an adapter records
(``base_model_name_or_path``) is often a local folder or cache path naming the same model as a hub
id, so a name alone cannot say that two models differ.

Two adapters meant to share one base as policy and reference (``model.load.adapter`` and
``model.load.reference_adapter``) must be the same LoRA (same modules, rank and shapes) on the same
recorded base: :func:`pair_problems` compares them from their headers and configs, before anything
loads. Unlike a model name against an adapter's record, two adapters' records must name the same
model (the same string or folder): a policy trained from the reference adapter keeps the name that
adapter records (peft saves the config it loaded).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from peft import PeftModel

from lit_dpo.errors import ConfigError, LitDPOError
from lit_dpo.sources import pickle_problem, resolve_model

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
SAFETENSORS_WEIGHTS = "adapter_model.safetensors"
PICKLED_WEIGHTS = "adapter_model.bin"
# peft's key of a LoRA weight: "base_model.model.<module path>.<kind>[.weight]"
PEFT_PREFIX = "base_model.model."
LORA_KINDS = {
    # kind -> (which dim of the saved weight is the module's input / output size)
    "lora_A.weight": ("in", 1),
    "lora_B.weight": ("out", 0),
    "lora_embedding_A": ("in", 1),
    "lora_embedding_B": ("out", 0),
}
MAX_LISTED = 3


def check_adapter(adapter: str | Path, allow_pickle: bool = False) -> list[str]:
    """Problems with an adapter folder (empty when it looks loadable), for one combined error:
    not a folder, not an adapter, no weights, or weights only as a pickle not allowed."""
    path = Path(adapter)
    if not path.is_dir():
        return [f"--adapter {path}: no such folder (a lit-dpo run writes runs/<config>/adapter)"]
    if not (path / ADAPTER_CONFIG).is_file():
        return [f"--adapter {path}: no {ADAPTER_CONFIG}; is this a PEFT adapter folder?"]
    if not (path / SAFETENSORS_WEIGHTS).is_file() and not (path / PICKLED_WEIGHTS).is_file():
        return [f"--adapter {path}: no {SAFETENSORS_WEIGHTS}; the adapter has no weights"]
    problem = pickle_problem(path, allow_pickle, what="adapter")
    return [problem] if problem else []


def recorded_base(adapter: str | Path) -> str | None:
    """The base model the adapter says it was trained on (``base_model_name_or_path``)."""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text())
    return config.get("base_model_name_or_path") or None


def lora_weight_shapes(adapter: str | Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every saved weight, read from the safetensors header (no tensor loads).

    A pickled ``adapter_model.bin`` is read with ``torch.load(weights_only=True)``; callers allow
    that only when the user allowed pickles.
    """
    path = Path(adapter)
    if (path / SAFETENSORS_WEIGHTS).is_file():
        from safetensors import safe_open

        with safe_open(path / SAFETENSORS_WEIGHTS, framework="pt") as weights:
            return {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    state = torch.load(path / PICKLED_WEIGHTS, map_location="meta", weights_only=True)
    return {key: tuple(value.shape) for key, value in state.items()}


def module_features(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a linear or embedding layer (4-bit ones included), else None."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return module.in_features, module.out_features
    if isinstance(module, torch.nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    return None


def fit_problems(
    shapes: dict[str, tuple[int, ...]], modules: dict[str, torch.nn.Module]
) -> list[str]:
    """Where saved LoRA weights do not fit the base's modules (empty: they all fit).

    Args:
        shapes: adapter weight key -> shape, as saved by peft (``lora_weight_shapes``).
        modules: the base's ``named_modules()``, before peft wraps it.
    """
    missing, mismatched = [], []
    for key, shape in sorted(shapes.items()):
        kind = next((k for k in LORA_KINDS if key.endswith("." + k)), None)
        if kind is None or not key.startswith(PEFT_PREFIX):
            continue
        name = key[len(PEFT_PREFIX) : -len(kind) - 1]
        if name not in modules:
            if name not in missing:
                missing.append(name)
            continue
        features = module_features(modules[name])
        side, dim = LORA_KINDS[kind]
        if features is None or len(shape) != 2:
            continue
        expected = features[0] if side == "in" else features[1]
        if shape[dim] != expected:
            mismatched.append(
                f"{name} has {expected} {side}put features, the adapter's {kind} expects "
                f"{shape[dim]}"
            )
    problems = []
    if missing:
        problems.append("the model has no module " + _first(missing, ", "))
    if mismatched:
        problems.append(_first(mismatched, "; "))
    return problems


def _first(items: list[str], separator: str) -> str:
    more = len(items) - MAX_LISTED
    return separator.join(items[:MAX_LISTED]) + (f" (and {more} more)" if more > 0 else "")


def same_model_name(recorded: str, given: str) -> bool:
    """Whether two model names plainly name the same model (same string or same folder)."""
    if recorded == given:
        return True
    try:
        return Path(resolve_model(given)).resolve() == Path(recorded).expanduser().resolve()
    except (LitDPOError, OSError):  # an unresolvable name cannot be shown to be the same
        return False


def pair_problems(
    adapter: str | Path,
    reference_adapter: str | Path,
    options: tuple[str, str] = ("model.load.adapter", "model.load.reference_adapter"),
) -> list[str]:
    """Why a policy adapter cannot be a trained copy of ``reference_adapter`` (empty: it can be).

    A DPO run that started from the reference adapter keeps its LoRA shape and its base, so the two
    must adapt the same modules with the same shapes (rank included) and record the same base
    model; both are read from the folders (safetensors headers, ``adapter_config.json``) without
    loading a weight. Both folders must already pass :func:`check_adapter`.

    Args:
        adapter: the policy's adapter folder.
        reference_adapter: the reference adapter folder.
        options: the settings that named them, for the message.
    """
    policy, reference = lora_weight_shapes(adapter), lora_weight_shapes(reference_adapter)
    problems = []
    only = [
        (name, sorted({_module_of(k) for k in keys}))
        for name, keys in (
            (options[0], policy.keys() - reference.keys()),
            (options[1], reference.keys() - policy.keys()),
        )
        if keys
    ]
    for name, modules in only:
        problems.append(f"only {name} adapts " + _first(modules, ", "))
    differing = [
        f"{key.removeprefix(PEFT_PREFIX)} is {tuple(policy[key])} against {tuple(reference[key])}"
        for key in sorted(policy.keys() & reference.keys())
        if tuple(policy[key]) != tuple(reference[key])
    ]
    if differing:
        problems.append("shapes differ: " + _first(differing, "; "))
    bases = recorded_base(adapter), recorded_base(reference_adapter)
    if all(bases) and not (same_model_name(*bases) or same_model_name(*reversed(bases))):
        problems.append(f"they record different bases, {bases[0]} and {bases[1]}")
    if not problems:
        return []
    return [
        f"{options[0]} {adapter} is not a trained copy of {options[1]} {reference_adapter}: "
        + "; ".join(problems)
        + ". Give the reference adapter this policy was trained from"
    ]


def _module_of(key: str) -> str:
    """``base_model.model.<module>.lora_A.weight`` -> ``<module>``."""
    kind = next((k for k in LORA_KINDS if key.endswith("." + k)), None)
    module = key[: -len(kind) - 1] if kind else key
    return module.removeprefix(PEFT_PREFIX)


def check_adapter_folder(adapter: str | Path, allow_pickle: bool = False) -> None:
    """Refuse a folder that is not an adapter, or whose weights are pickles not allowed.

    Raises:
        ConfigError: saying what the folder lacks or how to allow pickles.
    """
    problems = check_adapter(adapter, allow_pickle)
    if problems:
        raise ConfigError("; ".join(problems))


def check_adapter_fits(
    base: torch.nn.Module, adapter: str | Path, model_name: str, allow_pickle: bool = False
) -> None:
    """Refuse an adapter that is not a readable adapter folder or does not fit ``base``.

    Raises:
        ConfigError: naming the adapter folder, the base it records and the model given.
    """
    check_adapter_folder(adapter, allow_pickle)
    recorded = recorded_base(adapter)
    problems = fit_problems(lora_weight_shapes(adapter), dict(base.named_modules()))
    if problems:
        raise ConfigError(
            f"the adapter {adapter} (trained on {recorded or 'an unrecorded base'}) does not fit "
            f"the model {model_name!r}: " + "; ".join(problems) + ". Load it on the model it was "
            "trained on (model.model, or --model)"
        )
    if recorded and not same_model_name(recorded, model_name):
        log.warning(
            "the adapter %s records the base %s; loading it on %s, whose layers it fits",
            adapter,
            recorded,
            model_name,
        )


def attach_adapter(
    base: torch.nn.Module,
    adapter: str | Path,
    model_name: str,
    is_trainable: bool = False,
    allow_pickle: bool = False,
) -> PeftModel:
    """Check that ``adapter`` fits ``base`` (:func:`check_adapter_fits`), then attach it."""
    check_adapter_fits(base, adapter, model_name, allow_pickle)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=is_trainable)
