"""Every objective through DPOModule and the CLI: settings, the reference forward, what is logged.

The maths is checked in test_losses.py (by hand) and test_objectives_trl.py (against TRL); here,
that each objective trains end to end from ``lit-dpo fit`` on the tiny model, that settings which
do not go together fail before the model loads in one message, that a reference-free objective
runs no reference forward in training while validation still reports the reference's accuracy,
and that the logged keys follow the objective.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import tiny_fit_args
from safetensors.torch import load_file

from lit_dpo.cli import main
from lit_dpo.errors import ConfigError
from lit_dpo.train.losses import LOSS_TYPES, LOSSES
from lit_dpo.train.module import DPOModule
from lit_dpo.train.settings import EfficiencySettings, ObjectiveSettings

pytestmark = pytest.mark.usefixtures("one_thread")

# what an objective needs beyond its name to be valid
EXTRA = {"exo_pair": ["--model.objective.label_smoothing=0.001"]}


def _fit(tiny_model_dir, tiny_data_dir, root, *extra) -> tuple[list[dict], dict]:
    """Fit 2 steps; return the metrics.csv rows and fit_metrics.json."""
    main(tiny_fit_args(tiny_model_dir, tiny_data_dir, root, "--trainer.callbacks=[]", *extra))
    [log] = root.glob("lightning_logs/version_*/metrics.csv")
    rows = list(csv.DictReader(log.open()))
    return rows, json.loads((root / "fit_metrics.json").read_text())


def _count_reference_passes(monkeypatch) -> dict[str, int]:
    """Counts of reference passes while the trainer trains and while it evaluates (a table
    scored in ``on_train_start`` counts as training)."""
    calls = {"train": 0, "eval": 0}
    reference_logps = DPOModule._reference_logps

    def counted(self, batch, *scoring):
        calls["train" if self.trainer.training else "eval"] += 1
        return reference_logps(self, batch, *scoring)

    monkeypatch.setattr(DPOModule, "_reference_logps", counted)
    return calls


def _logged(rows: list[dict], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


# unpaired objectives (kto, apo_zero_unpaired) train on unpaired rows: tests/test_kto_fit.py
@pytest.mark.parametrize("loss_type", [t for t in LOSS_TYPES if LOSSES[t].paired])
def test_every_loss_type_trains_from_the_cli(tiny_model_dir, tiny_data_dir, tmp_path, loss_type):
    rows, val = _fit(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        f"--model.objective.loss_type={loss_type}",
        *EXTRA.get(loss_type, []),
    )
    losses = _logged(rows, "train/loss")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert math.isfinite(val["val/loss"])
    # the reference is reported in validation whatever the objective, so before/after compare
    assert {"val/logps_accuracy/reference", "val/logps_accuracy/policy"} <= set(val)
    has_nll = loss_type in ("sft", "cpo", "orpo")
    assert bool(_logged(rows, "train/sft_loss")) == has_nll
    assert ("val/log_odds_ratio" in val) == (loss_type == "orpo")
    # sft alone defines no reward; every other objective logs its own
    assert bool(_logged(rows, "train/rewards/margins")) == (loss_type != "sft")
    # the same pairs under the reference (the displacement alarm's yardstick), where one ran
    needs_reference = loss_type not in ("simpo", "cpo", "orpo", "sft")
    assert len(_logged(rows, "train/reference_logps/chosen")) == 2 * needs_reference
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k), "did not train"


def test_a_weighted_combination_with_every_term_from_the_cli(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    rows, val = _fit(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--model.objective.loss_type=[sigmoid, hinge]",
        "--model.objective.loss_weights=[1.0, 0.5]",
        "--model.objective.sft_weight=0.2",
        "--model.objective.ld_alpha=0.5",
        "--model.objective.use_weighting=true",
        "--model.objective.f_divergence_type=js_divergence",
    )
    assert len(_logged(rows, "train/sft_loss")) == 2 and "val/sft_loss" in val
    assert len(_logged(rows, "train/rewards/accuracies")) == 2
    # the adapter's card names the weighted losses and every setting the run moved
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "1.0 x `sigmoid` (DPO (sigmoid loss)) + 0.5 x `hinge`" in card
    for row in ("| sft weight | 0.2 |", "| ld alpha | 0.5 |", "| use weighting | True |"):
        assert row in card, row
    assert "| f divergence type | js_divergence |" in card


@pytest.mark.parametrize(("loss_type", "reference_in_training"), [("simpo", 0), ("sigmoid", 2)])
def test_reference_free_training_runs_no_reference_forward(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, loss_type, reference_in_training
):
    """Counts reference passes by the trainer's state: none in SimPO's 2 training steps, where
    DPO runs one per step; validation runs the reference for either."""
    calls = _count_reference_passes(monkeypatch)
    loss = f"--model.objective.loss_type={loss_type}"
    rows, val = _fit(tiny_model_dir, tiny_data_dir, tmp_path, loss)
    assert calls["train"] == reference_in_training
    assert calls["eval"] >= 1
    assert "val/logps_accuracy/reference" in val and "val/logps_accuracy_per_token/reference" in val


def test_simpo_rewards_are_its_own_length_normalised_ones(tiny_model_dir, tiny_data_dir, tmp_path):
    """SimPO's reward is beta times the mean log-prob per token: rewards/chosen over beta is
    logps/chosen over the reply's length, so it lies between the per-token extremes a summed
    log-prob allows, and it is not beta times the summed log-prob as DPO-family rewards are."""
    rows, _ = _fit(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--model.objective.loss_type=simpo",
        "--model.objective.beta=2.0",
    )
    chosen_rewards = _logged(rows, "train/rewards/chosen")
    chosen_logps = _logged(rows, "train/logps/chosen")
    for reward, logps in zip(chosen_rewards, chosen_logps, strict=True):
        per_token = reward / 2.0
        assert logps < per_token < 0  # a mean over several tokens, each log-prob negative


def test_settings_that_do_not_go_together_fail_in_one_message_before_loading():
    with pytest.raises(ConfigError) as error:
        DPOModule(
            model="/nonexistent",
            objective=ObjectiveSettings(
                loss_type=["sigmoid", "simpo", "aot"],
                loss_weights=[1.0],
                use_weighting=True,
                f_divergence_type="forward_kl",
            ),
        )
    message = str(error.value)
    for part in ("loss_weights has 1 weights", "cannot be combined", "f_divergence_type", "WPO"):
        assert part in message, part


def test_precompute_reference_with_a_reference_free_objective_tables_validation_only(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    """SimPO needs no reference in training, so no train table is scored; validation still
    reports the reference, from a table (a sweep over SimPO settings computes it once)."""
    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    calls = _count_reference_passes(monkeypatch)
    extra = ("--model.objective.loss_type=simpo", "--model.efficiency.precompute_reference=true")
    _, val = _fit(tiny_model_dir, tiny_data_dir, tmp_path / "run", *extra)
    assert calls["train"] == 0 and calls["eval"] >= 1
    tables = list((tmp_path / "cache" / "reference_logps").glob("*.pt"))
    assert len(tables) == 1, tables  # validation's
    assert "val/logps_accuracy/reference" in val
    # a second run reads that table: no reference pass at all
    calls.update(train=0, eval=0)
    _, again = _fit(tiny_model_dir, tiny_data_dir, tmp_path / "again", *extra)
    assert calls == {"train": 0, "eval": 0}
    assert again["val/logps_accuracy/reference"] == val["val/logps_accuracy/reference"]


def test_bco_pair_keeps_a_running_mean_reward_across_steps_and_checkpoints(
    tiny_model_dir, tiny_tokenizer
):
    """Two training steps: the shift is the mean of the two steps' mean rewards; validation
    reads it without moving it; a checkpoint carries it."""
    from test_techniques import _module, _tiny_batch

    module = _module(
        tiny_model_dir,
        efficiency=EfficiencySettings(gradient_checkpointing=False),
        objective=ObjectiveSettings(loss_type="bco_pair"),
    )
    batch = _tiny_batch(tiny_tokenizer)
    means = []
    for _ in range(2):
        stats = module.step_statistics(batch, "train")
        rewards = torch.cat([stats["rewards/chosen"], stats["rewards/rejected"]])
        means.append(rewards.mean().item())
        with torch.no_grad():  # a different policy for the second step
            for name, parameter in module.policy.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(1.5)
    shift = module.bco_shift.shift
    assert shift.steps == 2
    assert shift.mean == pytest.approx(sum(means) / 2, rel=1e-5)
    assert abs(means[0] - means[1]) > 1e-4
    module.step_statistics(batch, "val")
    assert module.bco_shift.shift == shift
    # the shift travels in the state dict, as Lightning saves and restores it
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    restored = DPOModule(objective=ObjectiveSettings(loss_type="bco_pair"))
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"], strict=False)
    assert restored.bco_shift.shift == shift


def test_a_0_2_checkpoint_brings_its_bco_shift():
    """0.2 checkpoints kept the shift beside the state dict, as (mean, steps)."""
    checkpoint = {"state_dict": {}, "bco_reward_mean": (0.25, 3)}
    restored = DPOModule(objective=ObjectiveSettings(loss_type="bco_pair"))
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"], strict=False)
    assert (restored.bco_shift.shift.mean, restored.bco_shift.shift.steps) == (0.25, 3)


EMBEDDED_OBJECTIVES = {
    "dpo+sft": ["--model.objective.sft_weight=0.1"],
    "simpo": [
        "--model.objective.loss_type=simpo",
        "--model.objective.beta=2.0",
        "--model.objective.simpo_gamma=1.0",
    ],
    "orpo": ["--model.objective.loss_type=orpo"],
}


@pytest.mark.slow
def test_representative_objectives_on_the_embedded_model(tmp_path):
    """DPO + SFT, SimPO and ORPO train 3 steps on the real SmolLM2 and its data; the reference
    (the same base, adapters off) gets the same held-out accuracy whichever objective trains."""
    reference_accuracy = {}
    for name, settings in EMBEDDED_OBJECTIVES.items():
        root = tmp_path / name
        main([
            "fit",
            "--config=configs/cpu.yaml",
            "--data.train_size=12",
            "--data.val_size=8",
            "--data.batch_size=4",
            "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            *settings,
        ])
        [log] = root.glob("lightning_logs/version_*/metrics.csv")
        rows = list(csv.DictReader(log.open()))
        losses = _logged(rows, "train/loss")
        assert len(losses) == 3 and all(math.isfinite(v) for v in losses), name
        assert len(_logged(rows, "train/sft_loss")) == (0 if name == "simpo" else 3), name
        metrics = json.loads((root / "fit_metrics.json").read_text())
        assert math.isfinite(metrics["val/loss"]) and "val/rewards/accuracies" in metrics
        reference_accuracy[name] = metrics["val/logps_accuracy/reference"]
    assert len(set(reference_accuracy.values())) == 1, reference_accuracy
