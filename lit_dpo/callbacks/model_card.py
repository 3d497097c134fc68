"""The model card (``README.md``) of every adapter and merged model lit-dpo writes.

A card a person and the Hugging Face Hub can use, filled from the run, with no template left:
Hub front matter (``library_name``, ``base_model``, ``license``, ``tags``), then the base model,
the objective and its settings, the data and what was dropped, the training settings, the
held-out reference-vs-policy table, how to load it (PEFT, ``lit-dpo serve``), the framework
versions and the citations. A section the run has no facts for says so plainly.

The facts are gathered once from the trainer (:func:`run_facts`) and kept beside the card as
``lit_dpo_run.json``, so ``lit-dpo export`` can write the merged model's card from them.
Model cards: https://huggingface.co/docs/hub/model-cards; DPO: https://arxiv.org/abs/2305.18290.
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
from lit_dpo.callbacks.history import MetricHistory
from lit_dpo.sources import (
    EMBEDDED_HUB_IDS,
    EMBEDDED_PREFIX,
    embedded_metadata,
    is_hub_id,
)

FACTS_FILE = "lit_dpo_run.json"
# held-out metrics defined for both models: (row, reference key, policy key); fit prints them too
LOGPS_ROWS = (
    ("log-prob accuracy, summed", "val/logps_accuracy/reference", "val/logps_accuracy/policy"),
    (
        "log-prob accuracy, per token",
        "val/logps_accuracy_per_token/reference",
        "val/logps_accuracy_per_token/policy",
    ),
)
# the card's held-out table; the reference's implicit reward is 0 by definition
HELDOUT_ROWS = (
    *LOGPS_ROWS,
    ("implicit-reward accuracy", None, "val/rewards/accuracies"),
    ("implicit-reward margin", None, "val/rewards/margins"),
    ("DPO loss", None, "val/loss"),
)
PACKAGES = ("torch", "lightning", "transformers", "peft", "datasets", "bitsandbytes")
OBJECTIVES = {
    "sigmoid": "DPO (sigmoid loss)",
    "ipo": "IPO (squared loss on length-normalised log-ratios)",
    "hinge": "hinge loss on the log-ratio margin (SLiC)",
}
DPO_BIBTEX = """@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Manning, Christopher D.
               and Ermon, Stefano and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {36},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.18290}
}"""
QLORA_BIBTEX = """@inproceedings{dettmers2023qlora,
  title     = {QLoRA: Efficient Finetuning of Quantized LLMs},
  author    = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {36},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.14314}
}"""


# ------------------------------------------------------------------------------ facts of a run


def run_facts(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """What the card says, from a fit in progress or ended: plain JSON values only."""
    hp = pl_module.hparams
    facts: dict[str, Any] = {
        "base": base_model_facts(hp.model),
        "objective": {
            "loss_type": hp.loss_type,
            "beta": hp.beta,
            "label_smoothing": hp.label_smoothing,
            "reference": "precomputed once from the base (adapters off)"
            if hp.precompute_reference
            else "the base with the adapters off, in every step",
        },
        "training": _training_facts(trainer, pl_module),
        "data": _data_facts(trainer.datamodule),
        "validation": _validation_facts(trainer),
        "versions": framework_versions(),
    }
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
    hp = pl_module.hparams
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
        "lr_schedule": hp.lr_schedule,
        "warmup_ratio": hp.warmup_ratio,
        "precision": str(trainer.precision),
        "quantization": hp.quantization,
        "compute_dtype": hp.compute_dtype,
        "lora_r": hp.lora_r,
        "lora_alpha": hp.lora_alpha,
        "lora_dropout": hp.lora_dropout,
        "target_modules": _target_modules(pl_module),
        "gradient_checkpointing": hp.gradient_checkpointing,
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
    modules = getattr(config, "target_modules", None) or pl_module.hparams.target_modules
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
    return {
        "datasets": parts,
        "splits": splits,
        "max_length": hp.get("max_length"),
        "max_prompt_length": hp.get("max_prompt_length"),
        "train_size": hp.get("train_size"),
        "val_size": hp.get("val_size"),
    }


def _validation_facts(trainer: Trainer) -> dict[str, Any] | None:
    runs = MetricHistory.of(trainer).validations()
    if not runs:
        return None
    last = runs[-1]
    return {
        "after_optimizer_steps": last["optimizer_steps"],
        "metrics": {k: v for k, v in last.items() if k.startswith("val/")},
    }


# ------------------------------------------------------------------------------------ the card


def adapter_card(facts: dict[str, Any], folder: str | Path) -> str:
    """The Markdown model card of the adapter in ``folder``, from :func:`run_facts`."""
    base = facts["base"]
    load_base = base["hub_id"] or base["name"]
    usage = f"""## How to use

With PEFT (the base model, then this adapter on it):

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{load_base}")
model = PeftModel.from_pretrained(base, "{folder}")
tokenizer = AutoTokenizer.from_pretrained("{folder}")  # with the chat template trained on
```

With lit-dpo, as an OpenAI-compatible server (the policy, and the reference with the adapter
off), or merged into a plain transformers model:

```bash
lit-dpo serve --adapter {folder}
lit-dpo export --adapter {folder} --out {folder}-merged
```
"""
    title = f"{Path(str(folder)).name}: a DPO adapter for {load_base}"
    return _card(facts, "peft", title, "A LoRA adapter for", usage, ["lora"])


def merged_card(facts: dict[str, Any], folder: str | Path, adapter: str, dtype: str) -> str:
    """The card of a merged model (``lit-dpo export``): the adapter's facts, merged in ``dtype``."""
    usage = f"""## How to use

The adapter `{adapter}` merged into its base in fp32, saved in {dtype}: a plain transformers model,
no PEFT needed.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{folder}")
tokenizer = AutoTokenizer.from_pretrained("{folder}")
```

With lit-dpo, as an OpenAI-compatible server:

```bash
lit-dpo serve --adapter {folder}
```
"""
    title = f"{Path(str(folder)).name}: {facts['base']['hub_id'] or facts['base']['name']} "
    title += "aligned by DPO, merged"
    what = "A LoRA adapter merged into"
    return _card(facts, "transformers", title, what, usage, ["merged"])


def _card(
    facts: dict[str, Any], library: str, title: str, what: str, usage: str, extra_tags: list[str]
) -> str:
    base, training = facts["base"], facts.get("training", {})
    tags = ["dpo", "lit-dpo", *extra_tags]
    if training.get("quantization") == "nf4":
        tags.append("qlora")
    metadata: dict[str, Any] = {"library_name": library}
    if base["hub_id"]:
        metadata["base_model"] = base["hub_id"]
    if base["license"]:
        metadata["license"] = base["license"]
    hub_datasets = [
        part["dataset"]
        for part in facts.get("data", {}).get("datasets", [])
        if part.get("dataset") and is_hub_id(part["dataset"]) and not Path(part["dataset"]).exists()
    ]
    if hub_datasets:
        metadata["datasets"] = hub_datasets
    metadata["tags"] = tags
    metadata["pipeline_tag"] = "text-generation"
    sections = [
        "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---",
        f"# {title}",
        _summary_section(facts, what),
        usage.rstrip(),
        _base_section(base),
        _objective_section(facts.get("objective", {})),
        _data_section(facts.get("data", {})),
        _training_section(training),
        _validation_section(facts.get("validation")),
        _versions_section(facts.get("versions", {})),
        _citation_section(training.get("quantization") == "nf4"),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _summary_section(facts: dict[str, Any], what: str) -> str:
    base, training = facts["base"], facts.get("training")
    objective = facts.get("objective")
    named = f"`{base['name']}`"
    if base["hub_id"] and base["hub_id"] != base["name"]:
        named += f" (`{base['hub_id']}`)"
    if not objective or not training:
        return (
            f"{what} {named}. It was not trained by lit-dpo, or its run's facts were not kept: "
            "this card holds only what its files show."
        )
    planned = training.get("planned_steps")
    steps = f"{training['optimizer_steps']} optimizer steps"
    steps += f" of {planned} planned" if planned else ""
    return (
        f"{what} {named}, trained by lit-dpo with Direct Preference Optimization: "
        f"{_objective_name(objective)}, beta {objective['beta']}, {steps}."
    )


def _base_section(base: dict[str, Any]) -> str:
    lines = ["## Base model", "", f"- name in the run's config: `{base['name']}`"]
    if base["hub_id"]:
        url = f"https://huggingface.co/{base['hub_id']}"
        lines.append(f"- on the Hugging Face Hub: [{base['hub_id']}]({url})")
    if base["license"]:
        lines.append(
            f"- license: {base['license']} (from {base['license_from']}); the weights here derive "
            "from the base and follow its terms"
        )
    else:
        lines.append(
            "- license: not stated in the base model's files; check the base model's own terms "
            "before sharing these weights"
        )
    return "\n".join(lines)


def _objective_section(objective: dict[str, Any]) -> str:
    if not objective:
        return ""
    rows = [
        ("loss", f"`{objective['loss_type']}`: {_objective_name(objective)}"),
        ("beta", objective["beta"]),
        ("label smoothing", objective["label_smoothing"]),
        ("reference model", objective["reference"]),
    ]
    return "## Objective\n\n" + _table(("setting", "value"), rows)


def _objective_name(objective: dict[str, Any]) -> str:
    if objective["loss_type"] == "sigmoid" and objective["label_smoothing"]:
        return "cDPO (sigmoid loss with label smoothing: conservative DPO)"
    return OBJECTIVES.get(objective["loss_type"], objective["loss_type"])


def _data_section(data: dict[str, Any]) -> str:
    if not data:
        return ""
    sources = ", ".join(
        f"`{part['dataset']}` (format {part.get('format', 'auto')}"
        + (f", weight {part['weight']}" if part.get("weight", 1) != 1 else "")
        + ")"
        for part in data["datasets"]
    )
    rows = []
    for stage, split in data.get("splits", {}).items():
        dropped = ", ".join(f"{reason}: {count}" for reason, count in split["dropped"].items())
        rows.append(
            (
                stage,
                split.get("split") or "",
                split["rows"],
                split["pairs"],
                dropped or "none",
                split["truncated"],
            )
        )
    text = f"## Data\n\nSource: {sources}. Tokens per sequence at most {data['max_length']}, "
    text += f"of which the prompt at most {data['max_prompt_length']} (its last tokens)."
    if rows:
        text += "\n\n" + _table(
            ("split", "source split", "rows", "pairs", "dropped", "truncated"), rows
        )
    return text


def _training_section(training: dict[str, Any]) -> str:
    if not training:
        return ""
    lora = (
        f"r {training['lora_r']}, alpha {training['lora_alpha']}, dropout "
        f"{training['lora_dropout']}, on {_modules(training['target_modules'])}"
    )
    quantization = (
        f"4-bit NF4 base (QLoRA), compute in {training['compute_dtype']}"
        if training["quantization"] == "nf4"
        else f"none: the base in {training['compute_dtype']}"
    )
    planned = training.get("planned_steps")
    rows = [
        (
            "optimizer steps",
            f"{training['optimizer_steps']}" + (f" of {planned} planned" if planned else ""),
        ),
        (
            "pairs per optimizer step",
            f"{training['pairs_per_step']} ({training['batch_size']} per batch x "
            f"{training['accumulate_grad_batches']} accumulated x {training['devices']} "
            "device(s))",
        ),
    ]
    if "optimizer" in training:
        rows.append(
            (
                "optimizer",
                f"`{training['optimizer']}`, learning rate {training['learning_rate']}, "
                f"weight decay {training['weight_decay']}",
            )
        )
    rows += [
        ("schedule", f"{training['lr_schedule']} after a warmup of {training['warmup_ratio']:.0%}"),
        ("precision", training["precision"]),
        ("quantization", quantization),
        ("LoRA", lora),
        ("gradient checkpointing", "on" if training["gradient_checkpointing"] else "off"),
        ("steps skipped (NaN or infinite)", training["skipped_steps"]),
    ]
    if training.get("seed") is not None:
        rows.append(("seed", training["seed"]))
    return "## Training\n\n" + _table(("setting", "value"), rows)


def _validation_section(validation: dict[str, Any] | None) -> str:
    if not validation:
        return (
            "## Evaluation\n\nNo validation ran before this adapter was saved: there are no "
            "held-out numbers for it (`lit-dpo validate --model.adapter ...` measures them)."
        )
    metrics = validation["metrics"]
    rows = []
    for label, reference_key, policy_key in HELDOUT_ROWS:
        if policy_key not in metrics:
            continue
        reference = f"{metrics[reference_key]:.3f}" if reference_key in metrics else ""
        rows.append((label, reference, f"{metrics[policy_key]:.3f}"))
    return (
        f"## Evaluation\n\nOn the held-out pairs after {validation['after_optimizer_steps']} "
        "optimizer steps. The reference is the base model (adapters off), the policy is this "
        "model; log-prob accuracy is the share of pairs whose chosen reply gets the higher "
        "log-probability. The implicit reward of the reference is 0 by definition, so its reward "
        "rows are empty.\n\n" + _table(("held-out metric", "reference", "policy"), rows)
    )


def _versions_section(versions: dict[str, str]) -> str:
    if not versions:
        return ""
    return "## Framework versions\n\n" + "\n".join(f"- {k} {v}" for k, v in versions.items())


def _citation_section(qlora: bool) -> str:
    entries = [DPO_BIBTEX] + ([QLORA_BIBTEX] if qlora else [])
    return "## Citation\n\n```bibtex\n" + "\n\n".join(entries) + "\n```"


def _modules(modules: list[str] | str) -> str:
    if isinstance(modules, str):
        return f"`{modules}`"
    return ", ".join(f"`{name}`" for name in modules)


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_facts(folder: Path, facts: dict[str, Any]) -> None:
    """The facts beside the card, as JSON (``lit-dpo export`` reads them)."""
    (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")


def read_facts(folder: str | Path) -> dict[str, Any] | None:
    """The facts an adapter folder keeps beside its card, or None (not written by lit-dpo)."""
    path = Path(folder) / FACTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
