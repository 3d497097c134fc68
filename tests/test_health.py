"""Health alarms on synthetic metric streams, the callback's plumbing, and one real tiny run."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch

from lit_dpo.callbacks.health import (
    HealthAlarms,
    chance_accuracy,
    default_loss_range,
    falling_logps,
    loss_scale_skips,
    mostly_truncated,
    out_of_range,
)
from lit_dpo.callbacks.summary import summary_table
from lit_dpo.train.losses import LOSS_TYPES, LOSSES, Objective, objective_loss


def _ramp(start: float, end: float, steps: int) -> list[float]:
    return [start + (end - start) * i / (steps - 1) for i in range(steps)]


def test_falling_logps_needs_chosen_down_by_the_share_and_rejected_down_too():
    """A 20-step ramp -100 -> -138 moves 2 a step: the first 5 average -104, the last 5 -134,
    a fall of 30 / 104 = 28.8%."""
    chosen, rejected = _ramp(-100, -138, 20), _ramp(-110, -170, 20)
    finding = falling_logps(chosen, rejected, window=5, min_drop=0.1)
    assert finding and "-104.0 to -134.0" in finding and "-29%" in finding
    assert "lower learning rate" in finding
    # rejected rising: the margin grows the healthy way
    assert falling_logps(chosen, _ramp(-110, -90, 20), window=5, min_drop=0.1) is None
    # chosen down only 5%: -100 -> -106.333 averages -101 then -106 (-4.95%)
    assert falling_logps(_ramp(-100, -106 - 1 / 3, 20), rejected, window=5, min_drop=0.1) is None
    # too short to judge
    assert falling_logps(chosen[:9], rejected[:9], window=5, min_drop=0.1) is None


def test_falling_logps_against_the_reference_compares_the_same_pairs():
    """Short replies early in the epoch and long ones late: summed log-probs fall from -100 to
    -300 while the policy gains 5 nats on every pair over the reference. The first-vs-last
    comparison calls that a fall; compared with the reference on the same batches it is none."""
    reference_chosen = [-100.0] * 10 + [-300.0] * 10
    reference_rejected = [-110.0] * 10 + [-320.0] * 10
    chosen = [r + 5 for r in reference_chosen]
    rejected = [r - 8 for r in reference_rejected]
    assert falling_logps(chosen, rejected, 5, 0.1)  # fooled by the lengths
    assert falling_logps(chosen, rejected, 5, 0.1, reference_chosen, reference_rejected) is None
    # a real fall: the last 5 steps' chosen 12% below the reference on the same pairs
    displaced = chosen[:15] + [r * 1.12 for r in reference_chosen[15:]]
    finding = falling_logps(displaced, rejected, 5, 0.1, reference_chosen, reference_rejected)
    assert finding and "-300.0 to -336.0 (-12%)" in finding
    assert "than the reference on the same pairs" in finding
    # the rejected not below its reference: the margin grows the healthy way
    assert falling_logps(displaced, reference_rejected, 5, 0.1, reference_chosen,
                         reference_rejected) is None


def test_out_of_range_averages_the_window_and_catches_non_finite_at_once():
    assert out_of_range("loss", [0.7] * 9 + [5.0], 0.0, 2.0, window=10) is None  # mean 1.13
    finding = out_of_range("loss", [0.7] * 5 + [3.0] * 5, 0.0, 2.0, window=5)
    assert finding and "3 over the last 5" in finding and "above" in finding
    below = out_of_range("reward margin", [-6.0] * 4, -5.0, 20.0, window=4)
    assert below and "below" in below
    assert "nan" in out_of_range("loss", [0.7, math.nan], 0.0, 2.0, window=10)
    assert out_of_range("loss", [3.0] * 3, 0.0, 2.0, window=5) is None  # too few steps


def test_chance_accuracy_only_after_the_grace_steps():
    coin = [0.5, 0.625, 0.375, 0.5] * 30  # mean 0.5
    finding = chance_accuracy(coin, after_steps=100, window=20, tolerance=0.05)
    assert finding and "0.50 over the last 20" in finding and "120 steps" in finding
    assert chance_accuracy(coin[:99], after_steps=100, window=20, tolerance=0.05) is None
    assert chance_accuracy([0.75] * 120, after_steps=100, window=20, tolerance=0.05) is None


def test_loss_scale_skips_counts_decreases_in_the_window():
    # the scaler grows, then overflows 5 times among the last 10 readings
    scales = [2.0**16] * 20 + [2.0**15, 2.0**15, 2.0**14, 2.0**13, 2.0**13, 2.0**12, 2.0**11]
    finding = loss_scale_skips(scales, max_skips=5, window=10)
    assert finding and "skipped 5 of the last 10" in finding and "2048" in finding
    assert loss_scale_skips(scales, max_skips=6, window=10) is None
    assert loss_scale_skips([2.0**16, 2.0**15, 2.0**16, 2.0**15], max_skips=5, window=10) is None
    assert loss_scale_skips([], max_skips=1, window=10) is None


def test_mostly_truncated_and_loss_ranges():
    finding = mostly_truncated("train_prefs", 60, 100, max_share=0.5)
    assert finding and "60 of 100 pairs (60%)" in finding and "max_length" in finding
    assert mostly_truncated("train_prefs", 50, 100, max_share=0.5) is None
    assert mostly_truncated("train_prefs", 0, 0, max_share=0.5) is None
    assert default_loss_range({"loss_type": "sigmoid", "beta": 0.1}) == (0.0, 2.0)
    # 2 * (1 / 0.2)^2
    assert default_loss_range({"loss_type": "ipo", "beta": 0.1}) == pytest.approx((0.0, 50.0))
    # weighted sum: 0.5 * [0, 2] + 2 * [0, 3]
    mixed = {"loss_type": ["sigmoid", "nca_pair"], "loss_weights": [0.5, 2.0]}
    assert default_loss_range(mixed) == (0.0, 7.0)
    assert default_loss_range({"loss_type": ["sigmoid", "apo_zero"]}) is None


NO_RANGE = {"apo_zero", "apo_down", "sft", "cpo", "orpo"}


# unpaired objectives' start: tests/test_kto.py
@pytest.mark.parametrize("loss_type", [t for t in LOSS_TYPES if LOSSES[t].paired])
def test_every_objective_starts_inside_its_default_loss_range(loss_type):
    """At the start of training the policy is the reference; the objective's first loss must be
    well inside its range (under a tenth of the way to the top), or the objective is one of
    those that have none and say so. Reference-free losses start with chosen and rejected
    equally likely per token."""
    settings = {"loss_type": loss_type, "beta": 0.1, "simpo_gamma": 0.5}
    if loss_type in ("exo_pair", "robust"):
        settings["label_smoothing"] = 1e-3
    span = default_loss_range(settings)
    if loss_type in NO_RANGE:
        assert span is None
        return
    objective = Objective.from_settings(settings)
    policy = torch.tensor([-12.0, -30.0, -18.0, -45.0])  # 4 and 6 tokens per pair: equal means
    counts = torch.tensor([4, 10, 6, 15])
    start = objective_loss(objective, policy, policy, counts, torch.tensor(2.0)).loss.item()
    low, high = span
    assert low <= start <= high
    assert start <= high - 0.1 * (high - max(low, 0.0)), (start, span)


def test_the_loss_check_leaves_out_the_sft_term():
    """loss 3.0 with sft_weight 0.5 and sft_loss 4.0: the preference loss is 1.0, inside [0, 2]."""
    alarms = HealthAlarms(window=2)
    trainer = _trainer()
    trainer.datamodule = SimpleNamespace(report={})
    module = SimpleNamespace(hparams={"loss_type": "sigmoid", "sft_weight": 0.5})
    alarms.on_train_start(trainer, module)
    for step in range(4):
        trainer.callback_metrics = {
            "train/loss": torch.tensor(3.0),
            "train/sft_loss": torch.tensor(4.0),
        }
        alarms.on_train_batch_end(trainer, module, None, None, step)
    assert alarms.history["train/loss"] == [1.0] * 4 and "loss" not in alarms.raised


def test_likelihood_displacement_advice_names_a_setting_that_exists():
    import re
    from dataclasses import fields

    from lit_dpo.train.settings import GROUPS

    finding = falling_logps(_ramp(-100, -138, 20), _ramp(-110, -170, 20), 5, 0.1)
    named = re.findall(r"--model\.(\w+)\.(\w+)", finding)
    assert named == [("objective", "sft_weight")]
    group, name = named[0]
    assert name in {field.name for field in fields(GROUPS[group])}


class _Scaler:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.scale


def _trainer(**metrics):
    return SimpleNamespace(
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
        global_step=0,
        world_size=1,
        should_stop=False,
        precision_plugin=SimpleNamespace(scaler=_Scaler(2.0**16)),
        datamodule=SimpleNamespace(report={"train_prefs": {"pairs": 10, "truncated": 9}}),
    )


def test_callback_warns_once_per_alarm_with_the_step_and_stops_on_request(caplog):
    alarms = HealthAlarms(window=2, stop_on_alarm=True)
    trainer = _trainer()
    module = SimpleNamespace(hparams={"loss_type": "sigmoid", "beta": 0.1})
    with caplog.at_level(logging.WARNING, logger="lit_dpo.callbacks.health"):
        alarms.on_train_start(trainer, module)
        for step in range(1, 9):
            trainer.global_step = step
            # losses 4, 5, ...: the first 2-step mean, (4 + 5) / 2 = 4.5, is above [0, 2]
            trainer.callback_metrics = {"train/loss": torch.tensor(3.0 + step)}
            trainer.precision_plugin.scaler.scale /= 2  # overflow every step
            alarms.on_train_batch_end(trainer, module, None, None, step)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("train_prefs: 9 of 10 pairs" in m for m in messages) == 1
    assert sum("health alarm at step 2: loss averaged 4.5" in m for m in messages) == 1
    assert sum("loss scaler skipped 5" in m for m in messages) == 1
    assert list(alarms.raised) == ["truncated:train_prefs", "loss", "loss_scale"]
    assert trainer.should_stop


def test_disabled_callback_records_nothing():
    alarms = HealthAlarms(enabled=False)
    trainer = _trainer(**{"train/loss": 9.0})
    alarms.on_train_start(trainer, SimpleNamespace(hparams={}))
    alarms.on_train_batch_end(trainer, None, None, None, 0)
    assert not alarms.raised and not alarms.history["train/loss"] and not trainer.should_stop


def test_summary_table_reports_final_and_best():
    table = summary_table(
        steps=4,
        batches=8,
        pairs=16,
        seconds=8.0,
        peak_memory=("peak RSS", 1.5 * 2**30),
        validations=[
            {
                "step": 2,
                "val/logps_accuracy/policy": 0.6,
                "val/logps_accuracy/reference": 0.5,
                "val/rewards/accuracies": 0.7,
            },
            {
                "step": 4,
                "val/logps_accuracy/policy": 0.55,
                "val/logps_accuracy/reference": 0.45,
                "val/rewards/accuracies": 0.75,
            },
        ],
        alarms={"loss": (3, "...")},
        adapter="runs/x/adapter",
        reports=["runs/x/fit_metrics.json"],
    )
    assert "4 optimizer steps (8 batches)" in table
    assert f"{'pairs/s':34}2.00" in table
    assert "1.50 GiB (peak RSS)" in table
    assert f"{'val log-prob accuracy, policy':34}final 0.550, best 0.600 (step 2)" in table
    assert f"{'val log-prob accuracy, reference':34}final 0.450, best 0.500 (step 2)" in table
    assert f"{'val reward accuracy':34}final 0.750, best 0.750 (step 4)" in table
    assert f"{'val reward margin':34}not logged" in table  # validation ran, no margin
    assert "1: loss (step 3)" in table and "runs/x/adapter" in table


def test_a_real_fit_raises_truncation_and_chance_alarms_and_summarises(
    tiny_model_dir, tiny_data_dir, tmp_path, caplog, capsys
):
    """A 6-token prompt limit cuts every pair (prompts are ~10 tokens). The untrained policy's
    reward accuracy is 0 at step 1 (policy == reference: ties count wrong), so any 2-step mean is
    at most 0.5, chance."""
    from lit_dpo.cli import main

    args = [
        "fit",
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tiny_data_dir}",
        "--data.batch_size=2",
        "--data.max_length=12",
        "--data.max_prompt_length=6",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--health.window=2",
        "--health.chance_after_steps=2",
        "--health.chance_min_pairs=4",
    ]
    with caplog.at_level(logging.WARNING, logger="lit_dpo.callbacks.health"):
        main(args)
    alarms = [r.getMessage() for r in caplog.records if "health alarm" in r.getMessage()]
    assert len(alarms) == 3, alarms
    assert alarms[0].startswith("health alarm at step 0: train: 6 of 6 pairs (100%)")
    assert alarms[1].startswith("health alarm at step 0: val: 2 of 2 pairs (100%)")
    assert alarms[2].startswith("health alarm at step 2: preference accuracy averaged")
    out = capsys.readouterr().out
    assert "run summary" in out
    assert "3 optimizer steps (3 batches)" in out and f"{'pairs seen':34}6" in out
    raised = "3: truncated:train (step 0), truncated:val (step 0), chance (step 2)"
    assert raised in out
    assert str(tmp_path / "adapter") in out
    assert f"{'reports':34}none" in out  # no logger, no validation


def test_chance_accuracy_judges_at_least_min_pairs():
    """Ten 4-pair steps at 0.5 after a run that learned (0.75) are 40 pairs: too few to call
    chance when 200 are asked for: the widened window (50 steps) averages
    (40 * 0.5 + 160 * 0.75) / 200 = 0.70."""
    learned_then_unlucky = [0.75] * 100 + [0.5] * 10
    four = [4] * 110
    # the plain 10-step window alone calls it chance
    assert chance_accuracy(learned_then_unlucky, 100, 10, 0.05, four, min_pairs=0)
    assert chance_accuracy(learned_then_unlucky, 100, 10, 0.05, four, min_pairs=200) is None
    at_chance = [0.5] * 110
    finding = chance_accuracy(at_chance, 100, 10, 0.05, four, min_pairs=200)
    assert finding and "last 50 steps (200 pairs)" in finding
    # the mean is weighted by pairs: one 196-pair step at 0.5 and one 4-pair step at 1.0 average
    # (196 * 0.5 + 4 * 1.0) / 200 = 0.51, at chance; unweighted it would be 0.75
    finding = chance_accuracy([0.5, 1.0], 2, 1, 0.05, [196, 4], min_pairs=200)
    assert finding and "0.51 over the last 2 steps (200 pairs)" in finding
    # the history has not yet seen 200 pairs: not judged
    assert chance_accuracy([0.5] * 40, 10, 10, 0.05, [4] * 40, min_pairs=200) is None


def test_an_unpaired_batch_without_a_kind_leaves_its_means_out_but_a_nan_loss_still_alarms():
    """KTO logs per-kind means; a batch of undesirable replies only has no desirable mean and no
    margin (nan). Those are left out of the history; with both kinds present a nan margin is
    divergence in one process but not over several ranks (no rank may have held both), and a nan
    loss always is."""
    alarms = HealthAlarms(window=2)
    trainer = _trainer()
    module = SimpleNamespace(hparams={"loss_type": "kto", "beta": 0.1})
    alarms.on_train_start(trainer, module)
    nan = float("nan")
    only_undesirable = {
        "train/loss": 0.5, "train/rewards/margins": nan, "train/logps/chosen": nan,
        "train/reference_logps/chosen": nan, "train/logps/rejected": -40.0,
        "train/reference_logps/rejected": -40.0, "train/count/desirable": 0.0,
        "train/count/undesirable": 4.0,
    }
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in only_undesirable.items()}
    alarms.on_train_batch_end(trainer, module, None, None, 0)
    assert alarms.history["train/rewards/margins"] == []
    assert alarms.history["train/logps/chosen"] == []
    assert alarms.history["train/logps/rejected"] == [-40.0]
    assert "margin" not in alarms.raised
    both = dict(only_undesirable, **{"train/count/desirable": 1.0, "train/count/undesirable": 3.0})
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in both.items()}
    alarms.on_train_batch_end(trainer, module, None, None, 1)
    assert "training diverged" in alarms.raised["margin"][1]
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in
                                dict(only_undesirable, **{"train/loss": nan}).items()}
    alarms.on_train_batch_end(trainer, module, None, None, 2)
    assert "training diverged" in alarms.raised["loss"][1]
    # over two ranks the counts are summed: both kinds in the step, yet no rank held both, so no
    # rank had a margin and the synced mean is nan; that is not divergence
    ddp_alarms, ddp_trainer = HealthAlarms(window=2), _trainer()
    ddp_trainer.world_size = 2
    ddp_alarms.on_train_start(ddp_trainer, module)
    ddp_trainer.callback_metrics = {k: torch.tensor(v) for k, v in both.items()}
    ddp_alarms.on_train_batch_end(ddp_trainer, module, None, None, 0)
    assert ddp_alarms.history["train/rewards/margins"] == []
    assert "margin" not in ddp_alarms.raised
