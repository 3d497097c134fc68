"""What a fit's model card says, gathered once from the trainer as plain JSON values.

The base model (its hub id, and its license where its own files say: the embedded GGUF's metadata,
or the front matter of its ``README.md``), the objective, the data and what was dropped, the
training settings, the latest held-out validation and the framework versions. They are kept beside
the card as ``lit_dpo_run.json``, so ``lit-dpo export`` writes the merged model's card from them;
:mod:`lit_dpo.reporting.model_card` renders them.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from lightning import LightningModule, Trainer

import lit_dpo
from lit_dpo.models.reference import describe_reference
from lit_dpo.reporting.model_card import OBJECTIVE_EXTRAS
from lit_dpo.sources import EMBEDDED_HUB_IDS, EMBEDDED_PREFIX, embedded_metadata, is_hub_id
from lit_dpo.train.losses import Objective

FACTS_FILE = "lit_dpo_run.json"
PACKAGES = ("torch", "lightning", "transformers", "peft", "datasets", "bitsandbytes")


def run_facts(
    trainer: Trainer, pl_module: LightningModule, validations: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the card says, from a fit in progress or ended: plain JSON values only.

    Args:
        validations: the run's validations so far, oldest first (``MetricHistory.validations()``).
    """
    facts: dict[str, Any] = {
        "base": base_model_facts(pl_module.settings.model),
        "objective": objective_facts(pl_module),
        "training": _training_facts(trainer, pl_module),
        "data": _data_facts(trainer.datamodule),
        "validation": _validation_facts(validations),
        "versions": framework_versions(),
    }
    return facts


def objective_facts(pl_module: LightningModule) -> dict[str, Any]:
    """The loss, its settings (those the objective reads and the run moved from their defaults)
    and what the policy was measured against."""
    settings, objective, defaults = pl_module.settings, pl_module.objective, Objective()
    names = list(objective.loss_types)
    facts: dict[str, Any] = {
        # a single loss type by its name, as a config gives it
        "loss_type": names[0] if isinstance(settings.objective.loss_type, str) else names,
        "beta": objective.beta,
        "label_smoothing": objective.label_smoothing,
    }
    for name in ("loss_weights", *OBJECTIVE_EXTRAS):
        value = getattr(objective, name)
        if value != getattr(defaults, name):
            facts[name] = list(value) if isinstance(value, tuple) else value
    reference = describe_reference(getattr(pl_module, "reference_adapter", None))
    if not objective.needs_reference:
        facts["reference"] = f"none in training (reference-free); held-out table: {reference}"
    elif settings.efficiency.precompute_reference:
        facts["reference"] = f"{reference}, log-probs precomputed once"
    else:
        facts["reference"] = f"{reference}, in every step"
    return facts


def base_model_facts(model: str) -> dict[str, Any]:
    """The base as configured, its hub id when there is one, and its license where its files say.

    The license is read from the embedded GGUF's metadata, or from the Hub front matter of the
    base's ``README.md``: in a local folder, or in the local Hub cache (nothing is downloaded).
    """
    facts: dict[str, Any] = {"name": model, "hub_id": None, "license": None, "license_from": None}
    if model.startswith(EMBEDDED_PREFIX):
        facts["hub_id"] = EMBEDDED_HUB_IDS.get(model[len(EMBEDDED_PREFIX) :])
        license_name = embedded_metadata(model).get("license")
        if license_name:
            facts.update(license=license_name, license_from="the embedded GGUF file's metadata")
        return facts
    local = Path(model).expanduser()
    readme: Path | None = local / "README.md"
    if not local.exists() and is_hub_id(model):
        facts["hub_id"] = model
        readme = _cached_hub_file(model, "README.md")
    if readme is not None and readme.is_file():
        license_name = front_matter(readme.read_text(encoding="utf-8")).get("license")
        if isinstance(license_name, str):
            facts.update(license=license_name, license_from=f"the base's model card ({readme})")
    return facts


def front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block a Hub model card opens with (``---`` lines around it), or {}."""
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def framework_versions() -> dict[str, str]:
    """Versions of lit-dpo and of the installed packages a run depends on."""
    found = {"lit-dpo": lit_dpo.__version__}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _cached_hub_file(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def _training_facts(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    settings = pl_module.settings
    data_hp = getattr(trainer.datamodule, "hparams", {})
    batch_size = data_hp.get("batch_size")
    accumulation = trainer.accumulate_grad_batches
    facts: dict[str, Any] = {
        "optimizer_steps": trainer.global_step,
        "planned_steps": _planned_steps(trainer),
        "batch_size": batch_size,
        "devices": trainer.world_size,
        "accumulate_grad_batches": accumulation,
        "pairs_per_step": batch_size * accumulation * trainer.world_size if batch_size else None,
        "lr_schedule": settings.optimization.lr_schedule,
        "warmup_ratio": settings.optimization.warmup_ratio,
        "precision": str(trainer.precision),
        "quantization": settings.load.quantization,
        "compute_dtype": settings.load.compute_dtype,
        "lora_r": settings.lora.r,
        "lora_alpha": settings.lora.alpha,
        "lora_dropout": settings.lora.dropout,
        "target_modules": _target_modules(pl_module),
        "gradient_checkpointing": settings.efficiency.gradient_checkpointing,
        "skipped_steps": getattr(pl_module, "skipped_steps", 0),
        "seed": _seed(),
    }
    if trainer.optimizers:
        optimizer = trainer.optimizers[0]
        kind = type(optimizer)
        facts["optimizer"] = f"{kind.__module__}.{kind.__qualname__}"
        facts["learning_rate"] = optimizer.defaults.get("lr")
        facts["weight_decay"] = optimizer.defaults.get("weight_decay")
    return facts


def _planned_steps(trainer: Trainer) -> int | None:
    planned = trainer.estimated_stepping_batches
    return int(planned) if planned != float("inf") else None


def _target_modules(pl_module: LightningModule) -> list[str] | str:
    """The layers LoRA adapted, by name (``q_proj``...): PEFT resolves ``all-linear`` to them."""
    config = getattr(getattr(pl_module, "policy", None), "peft_config", {}).get("default")
    modules = getattr(config, "target_modules", None) or pl_module.settings.lora.target_modules
    if isinstance(modules, str):
        return modules
    return sorted({name.rsplit(".", 1)[-1] for name in modules})


def _seed() -> int | None:
    # Lightning's seed_everything (the CLI's seed_everything) keeps the seed here
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else None


def _data_facts(datamodule) -> dict[str, Any]:
    if datamodule is None:
        return {}
    hp = datamodule.hparams
    single = {"dataset": hp.get("dataset"), "format": hp.get("format")}
    parts = [
        {key: part[key] for key in ("dataset", "format", "weight", "max_pairs") if key in part}
        for part in hp.get("mixture") or [single]
    ]
    splits = {}
    for stage, report in getattr(datamodule, "report", {}).items():
        splits[stage] = {
            "split": getattr(datamodule, "split_names", {}).get(stage),
            **{key: report.get(key) for key in ("rows", "pairs", "truncated", "dropped")},
        }
        if report.get("unpaired"):
            splits[stage].update(desirable=report["desirable"], undesirable=report["undesirable"])
    return {
        "datasets": parts,
        "splits": splits,
        "max_length": hp.get("max_length"),
        "max_prompt_length": hp.get("max_prompt_length"),
        "train_size": hp.get("train_size"),
        "val_size": hp.get("val_size"),
    }


def _validation_facts(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not runs:
        return None
    last = runs[-1]
    return {
        "after_optimizer_steps": last["optimizer_steps"],
        "metrics": {k: v for k, v in last.items() if k.startswith("val/")},
    }


def write_facts(folder: Path, facts: dict[str, Any]) -> None:
    """The facts beside the card, as JSON (``lit-dpo export`` reads them)."""
    (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")


def read_facts(folder: str | Path) -> dict[str, Any] | None:
    """The facts an adapter folder keeps beside its card, or None (not written by lit-dpo)."""
    path = Path(folder) / FACTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
