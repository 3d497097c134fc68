"""The README.md of every adapter and merged model: a whole model card filled from the run, with
Hub front matter, and no template placeholder left (PEFT's own says "More Information Needed")."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from conftest import make_adapter, tiny_fit_args

import lit_dpo
from lit_dpo.cli import main
from lit_dpo.export import export
from lit_dpo.reporting.model_card import adapter_card
from lit_dpo.reporting.run_facts import base_model_facts, front_matter

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_filled(card: str) -> None:
    """No template left: PEFT's placeholders, an unfilled format field, a missing fact."""
    assert "More Information Needed" not in card
    assert "[More" not in card
    assert not re.search(r"\bNone\b|\bnan\b|\{[a-z_]+\}", card), re.findall(
        r".*(?:\bNone\b|\bnan\b|\{[a-z_]+\}).*", card
    )


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """A tiny fit (2 steps, one validation) keeping an adapter beside its checkpoint too."""
    root = tmp_path_factory.mktemp("fit")
    main(
        tiny_fit_args(
            tiny_model_dir,
            tiny_data_dir,
            root,
            "--trainer.callbacks+=lit_dpo.callbacks.AdapterCheckpoint",
            "--trainer.callbacks.monitor=val/loss",
            "--trainer.callbacks.filename={step}",
        )
    )
    return root


def test_the_final_adapter_has_a_card_filled_from_the_run(fitted, tiny_model_dir):
    adapter = fitted / "adapter"
    card = (adapter / "README.md").read_text()
    assert_filled(card)
    metadata = front_matter(card)
    assert metadata["library_name"] == "peft"
    assert {"dpo", "lit-dpo", "lora", "qlora"} <= set(metadata["tags"])
    # a local base folder has no hub id and, here, no license in its files: the body says so
    assert "base_model" not in metadata and "license" not in metadata
    assert f"name in the run's config: `{tiny_model_dir}`" in card
    assert "license: not stated in the base model's files" in card

    # objective, data with what was dropped, training settings
    assert "| loss | `sigmoid`: DPO" in card and "| beta | 0.1 |" in card
    assert "| train | train_prefs | 7 | 6 | tie: 1 | 0 |" in card
    assert "| val | test_prefs | 2 | 2 | none | 0 |" in card
    assert "| optimizer steps | 2 of 2 planned |" in card
    assert "| pairs per optimizer step | 2 (2 per batch x 1 accumulated x 1 device(s)) |" in card
    assert "`torch.optim.adamw.AdamW`, learning rate 0.01, weight decay 0.01" in card
    assert "| schedule | cosine after a warmup of 10% |" in card
    assert "| quantization | 4-bit NF4 base (QLoRA), compute in float32 |" in card
    modules = "`down_proj`, `gate_proj`, `k_proj`, `o_proj`, `q_proj`, `up_proj`, `v_proj`"
    assert f"| LoRA | r 16, alpha 32, dropout 0.05, on {modules} |" in card
    assert "| seed | 42 |" in card

    # the held-out table is the run's final validation
    metrics = json.loads((fitted / "fit_metrics.json").read_text())
    policy = metrics["val/logps_accuracy/policy"]
    reference = metrics["val/logps_accuracy/reference"]
    assert f"| log-prob accuracy, summed | {reference:.3f} | {policy:.3f} |" in card
    assert f"| implicit-reward margin |  | {metrics['val/rewards/margins']:.3f} |" in card
    assert "after 2 optimizer steps" in card

    # how to load it, versions, citation
    assert f'PeftModel.from_pretrained(base, "{adapter}")' in card
    assert f"lit-dpo serve --adapter {adapter}" in card
    assert f"- lit-dpo {lit_dpo.__version__}" in card
    assert f"- peft {version('peft')}" in card and f"- torch {version('torch')}" in card
    assert "@inproceedings{rafailov2023direct," in card and "dettmers2023qlora" in card
    assert json.loads((adapter / "lit_dpo_run.json").read_text())["objective"]["beta"] == 0.1


def test_checkpoint_adapters_carry_the_card_of_their_step(fitted):
    (checkpoint_adapter,) = fitted.rglob("step=2.adapter")
    card = (checkpoint_adapter / "README.md").read_text()
    assert_filled(card)
    assert "| optimizer steps | 2 of 2 planned |" in card
    assert "On the held-out pairs after 2 optimizer steps" in card


def test_the_merged_export_has_the_adapters_card(fitted, tmp_path):
    out = export(str(fitted / "adapter"), str(tmp_path / "merged"), dtype="fp32")
    card = (out / "README.md").read_text()
    assert_filled(card)
    metadata = front_matter(card)
    assert metadata["library_name"] == "transformers"
    assert {"dpo", "lit-dpo", "merged"} <= set(metadata["tags"])
    assert "| beta | 0.1 |" in card and "| train | train_prefs | 7 | 6 | tie: 1 | 0 |" in card
    assert "saved in fp32" in card and f'AutoModelForCausalLM.from_pretrained("{out}")' in card
    assert "PeftModel" not in card


def test_an_adapter_from_elsewhere_exports_with_what_its_files_show(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "foreign")
    out = export(str(adapter), str(tmp_path / "merged"), dtype="fp32")
    card = (out / "README.md").read_text()
    assert_filled(card)
    assert "It was not trained by lit-dpo, or its run's facts were not kept" in card
    assert "## Training" not in card


def test_the_embedded_base_is_named_on_the_hub_with_its_license(fitted):
    """SmolLM2's license is read from the embedded GGUF's metadata; the card's front matter then
    names the base by hub id, as the Hub links a fine-tune to its base."""
    facts = json.loads((fitted / "adapter" / "lit_dpo_run.json").read_text())
    facts["base"] = base_model_facts("embedded:SmolLM2-135M-Instruct")
    assert facts["base"]["license"] == "apache-2.0"
    card = adapter_card(facts, "runs/cpu/adapter")
    assert_filled(card)
    metadata = front_matter(card)
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert metadata["license"] == "apache-2.0"
    assert 'from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in card


def test_a_local_base_folder_gives_the_license_of_its_card(tmp_path):
    metadata = {"license": "mit", "base_model": "someone/else"}
    (tmp_path / "README.md").write_text("---\n" + yaml.safe_dump(metadata) + "---\n# a model\n")
    facts = base_model_facts(str(tmp_path))
    assert (facts["license"], facts["hub_id"]) == ("mit", None)
    assert facts["license_from"] == f"the base's model card ({tmp_path / 'README.md'})"


def test_the_embedded_gguf_fields_are_read_once_and_kept_beside_the_model(tmp_path, monkeypatch):
    """The GGUF reader parses the whole file (~2 s): its general.* fields are kept beside the
    converted model after the first read, and later reads take them from there."""
    from lit_dpo.sources import GGUF_METADATA, embedded_metadata

    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path))
    # before conversion there is no folder to keep them in: read from the GGUF file, nothing kept
    assert embedded_metadata("embedded:SmolLM2-135M-Instruct")["license"] == "apache-2.0"
    converted = tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert not converted.exists()
    converted.mkdir(parents=True)
    first = embedded_metadata("embedded:SmolLM2-135M-Instruct")
    kept = json.loads((converted / GGUF_METADATA).read_text())
    assert kept == first and first["license"] == "apache-2.0"
    (converted / GGUF_METADATA).write_text(json.dumps({**kept, "license": "kept-copy"}))
    assert embedded_metadata("embedded:SmolLM2-135M-Instruct")["license"] == "kept-copy"
    assert embedded_metadata("not-embedded") == {}
