"""Intervals of quality numbers (lit_dpo/stats.py), on numbers worked by hand."""

import math

import pytest
import torch

from lit_dpo.stats import (
    OUTCOME_KEYS,
    Interval,
    bootstrap_interval,
    interval_summary,
    paired_difference,
    wilson_interval,
)


def test_all_correct_has_a_zero_width_interval_at_one():
    """Every resample of 1s has mean 1."""
    assert bootstrap_interval([1] * 50) == Interval(1.0, 1.0, 1.0)
    assert bootstrap_interval([0] * 7) == Interval(0.0, 0.0, 0.0)


def test_two_values_span_the_whole_range():
    """[0, 1]: a resample's mean is 0 with chance 1/4, 1/2 with 1/2, 1 with 1/4. The 2.5% and
    97.5% order statistics of 2,000 draws are then 0 and 1 (P(all 2,000 draws avoid 0 in the
    lowest 50) is nil)."""
    assert bootstrap_interval([0, 1]) == Interval(0.5, 0.0, 1.0)


def test_same_seed_same_interval_other_seed_close():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 30
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    other = bootstrap_interval(values, seed=4)
    assert other != bootstrap_interval(values, seed=3)
    assert abs(other.low - bootstrap_interval(values, seed=3).low) < 0.02


def test_accuracy_interval_matches_the_normal_approximation():
    """p = 0.6 on 400 pairs: standard error sqrt(0.24 / 400) = 0.0245, so the 95% interval is
    about 0.6 +- 0.048 (and the Wilson interval 0.551..0.647)."""
    values = [1] * 240 + [0] * 160
    interval = bootstrap_interval(values)
    assert interval.value == pytest.approx(0.6)
    assert interval.low < 0.6 < interval.high
    half = 1.96 * math.sqrt(0.6 * 0.4 / 400)
    assert interval.low == pytest.approx(0.6 - half, abs=0.01)
    assert interval.high == pytest.approx(0.6 + half, abs=0.01)
    low, high = wilson_interval(240, 400)
    assert (low, high) == pytest.approx((0.5514, 0.6468), abs=1e-3)


def test_mean_of_any_numbers():
    """The mean of 1, 2, 3, 4 is 2.5; resample means lie within [1, 4]."""
    interval = bootstrap_interval([1.0, 2.0, 3.0, 4.0])
    assert interval.value == 2.5
    assert 1.0 <= interval.low < 2.5 < interval.high <= 4.0


def test_identical_runs_differ_by_exactly_zero():
    run = [1, 0, 1, 1, 0] * 40
    assert paired_difference(run, run) == Interval(0.0, 0.0, 0.0)


def test_paired_difference_of_a_run_better_on_some_pairs():
    """B is A with 10 of 200 wrong pairs made right: the difference is +0.05; the per-pair
    differences are 0 or +1, so a draw's mean is 0 only when it misses all 10 (chance
    (190/200)^200 = 3e-5): the interval lies above 0."""
    first = [1] * 100 + [0] * 100
    second = [1] * 110 + [0] * 90
    interval = paired_difference(second, first)
    assert interval.value == pytest.approx(0.05)
    assert 0 < interval.low < 0.05 < interval.high
    # unpaired, the two accuracies' intervals overlap; the paired one excludes 0
    assert bootstrap_interval(first).high > bootstrap_interval(second).low


def test_paired_difference_refuses_other_pairs():
    with pytest.raises(ValueError, match="same pairs, got 3 and 2"):
        paired_difference([1, 0, 1], [1, 0])


def test_bad_inputs_fail_with_a_message():
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="0 < level < 1"):
        bootstrap_interval([1, 0], level=1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_wilson_hand_worked():
    """8 of 10: p = 0.8, z = 1.96: center (0.8 + 0.19208) / 1.38416 = 0.7167, half-width
    1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.2266 -> (0.4902, 0.9433)."""
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_pair_outcomes_per_pair():
    """Three pairs (summed log-probs; chosen tokens 2, rejected tokens 4):
    pair 0: policy -2 vs -6 (right), reference -3 vs -5 (right); per token policy -1 vs -1.5
      (right), reference -1.5 vs -1.25 (wrong); rewards 0.1 * 1 = 0.1 vs 0.1 * -1 = -0.1 (right).
    pair 1: policy -5 vs -4 (wrong), reference -4 vs -4 (tie: wrong); per token -2.5 vs -1
      (wrong), -2 vs -1 (wrong); rewards -0.1 vs 0 (wrong).
    pair 2: policy -1 vs -9 (right), reference -2 vs -1 (wrong); per token -0.5 vs -2.25
      (right), -1 vs -0.25 (wrong); rewards 0.1 vs -0.8 (right)."""
    from lit_dpo.train.metrics import PAIR_SCORES, pair_outcomes, pair_statistics

    policy = torch.tensor([-2.0, -5.0, -1.0, -6.0, -4.0, -9.0])  # chosen rows, then rejected
    reference = torch.tensor([-3.0, -4.0, -2.0, -5.0, -4.0, -1.0])
    counts = torch.tensor([2, 2, 2, 4, 4, 4])
    rewards = 0.1 * (policy - reference)
    stats = pair_statistics(policy, reference, counts, rewards[:3], rewards[3:])
    outcomes = {key: value.tolist() for key, value in pair_outcomes(stats).items()}
    assert outcomes == {
        "logps_accuracy/reference": [1, 0, 0],
        "logps_accuracy/policy": [1, 0, 1],
        "logps_accuracy_per_token/reference": [0, 0, 0],
        "logps_accuracy_per_token/policy": [1, 0, 1],
        "rewards/accuracies": [1, 0, 1],
    }
    # the records of tools/quality.py keep one string of outcomes per accuracy of validation
    assert set(OUTCOME_KEYS) == set(PAIR_SCORES) == set(outcomes)


def test_interval_summary_keys():
    summary = interval_summary({"rewards/accuracies": [1] * 10, "x": [0, 1]})
    assert summary == {
        "rewards/accuracies/ci_low": 1.0,
        "rewards/accuracies/ci_high": 1.0,
        "x/ci_low": 0.0,
        "x/ci_high": 1.0,
    }
