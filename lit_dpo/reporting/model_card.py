"""The model card (``README.md``) of every adapter and merged model lit-dpo writes.

A card a person and the Hugging Face Hub can use, filled from the run, with no template left:
Hub front matter (``library_name``, ``base_model``, ``license``, ``tags``), then the base model,
the objective and its settings, the data and what was dropped, the training settings, the
held-out reference-vs-policy table, how to load it (PEFT, ``lit-dpo serve``), the framework
versions and the citations. A section the run has no facts for says so plainly. The facts come
from :mod:`lit_dpo.reporting.run_facts`.
Model cards: https://huggingface.co/docs/hub/model-cards; DPO: https://arxiv.org/abs/2305.18290.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lit_dpo.sources import is_hub_id
from lit_dpo.train.losses import LOSSES

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
# loss type -> its name on a card, from the registry
OBJECTIVES = {name: record.title for name, record in LOSSES.items()}
# objective settings a card names when a run moved them from their defaults
OBJECTIVE_EXTRAS = (
    "sft_weight",
    "ld_alpha",
    "use_weighting",
    "f_divergence_type",
    "f_alpha_divergence_coef",
    "discopop_tau",
    "simpo_gamma",
    "cpo_alpha",
    "desirable_weight",
    "undesirable_weight",
)


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
        f"{what} {named}, trained by lit-dpo on preference pairs: "
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
        ("loss", _objective_name(objective)),
        ("beta", objective["beta"]),
        ("label smoothing", objective["label_smoothing"]),
        *(
            (name.replace("_", " "), objective[name])
            for name in OBJECTIVE_EXTRAS
            if name in objective
        ),
        ("reference model", objective["reference"]),
    ]
    return "## Objective\n\n" + _table(("setting", "value"), rows)


def _objective_name(objective: dict[str, Any]) -> str:
    """``sigmoid``: DPO (sigmoid loss), or a weighted sum of named losses."""
    if isinstance(objective["loss_type"], str):
        name = objective["loss_type"]
        if name == "sigmoid" and objective["label_smoothing"]:
            return "`sigmoid`: cDPO (sigmoid loss with label smoothing: conservative DPO)"
        return f"`{name}`: {OBJECTIVES.get(name, name)}"
    loss_types = objective["loss_type"]
    weights = objective.get("loss_weights") or [1.0] * len(loss_types)
    return " + ".join(
        f"{weight} x `{name}` ({OBJECTIVES.get(name, name)})"
        for name, weight in zip(loss_types, weights, strict=True)
    )


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
    for stage, split in data.get("splits", {}).items():
        if split.get("desirable") is not None:  # unpaired rows (KTO): "pairs" counts rows
            text += (
                f"\n\n{stage}: unpaired feedback, {split['desirable']} desirable and "
                f"{split['undesirable']} undesirable rows"
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
            "held-out numbers for it (`lit-dpo validate --model.load.adapter ...` measures them)."
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
