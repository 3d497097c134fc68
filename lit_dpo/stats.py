"""Intervals for quality numbers measured on a few hundred pairs.

A held-out accuracy on 300 pairs has a 95% interval of about +-0.055, so two runs are told apart
only by the paired difference on the same pairs (each pair is a matched observation; the
difference's spread is much smaller than either accuracy's when the runs agree on most pairs).

- :func:`bootstrap_interval`: seeded percentile bootstrap of a mean over pairs (Efron and
  Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13).
- :func:`paired_difference`: the same over per-pair differences of two runs on the same pairs.
- :func:`wilson_interval`: Wilson score interval of a proportion, for counts without per-pair
  results (e.g. a judge's wins).
- :func:`interval_summary`: the intervals of per-pair correctness of held-out preference metrics
  (``lit_dpo.train.metrics.pair_outcomes``), under the keys ``lit-dpo compare`` reports.
- :func:`cohen_kappa`: agreement of two judges beyond chance (Cohen 1960).
- :func:`length_logistic_fit`: the verdict regressed on the answers' length difference, the core
  of AlpacaEval's length-controlled win rate (Dubois et al. 2024, https://arxiv.org/abs/2404.04475).

Pure functions of numbers and tensors: no trainer, files or devices.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


class Interval(NamedTuple):
    """A point estimate with its interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def wilson_interval(successes: float, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (z = 1.96: 95%).

    ``successes`` may be fractional (ties counted as half a win).

    Raises:
        ValueError: ``trials`` is not positive or ``successes`` is outside [0, trials].
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, trials >= 1; got {successes}/{trials}")
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_interval(
    values: Sequence[float] | torch.Tensor,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """Mean of ``values`` (one per pair) with its seeded percentile-bootstrap interval.

    Each of ``resamples`` draws picks ``len(values)`` pairs with replacement; the interval holds
    the central ``level`` share of the draws' means (lower and upper order statistics, no
    interpolation, so an interval of 0/1 outcomes never leaves [0, 1]). The same values and seed
    give the same interval.

    Args:
        values: per-pair numbers, (P,); 0/1 for an accuracy.
        resamples: bootstrap draws.
        seed: seed of the draws.
        level: coverage of the interval, in (0, 1).

    Returns:
        ``Interval(mean, low, high)``.

    Raises:
        ValueError: no values, fewer than 1 resample, or ``level`` outside (0, 1).
    """
    data = torch.as_tensor(values, dtype=torch.float64).flatten()
    if data.numel() == 0:
        raise ValueError("bootstrap_interval needs at least one value, got none")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1; got {resamples}, {level}")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, data.numel(), (resamples, data.numel()), generator=generator)
    means = data[picks].mean(dim=1).sort().values  # (resamples,)
    tail = (1 - level) / 2
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return Interval(data.mean().item(), low.item(), high.item())


def paired_difference(
    first: Sequence[float] | torch.Tensor,
    second: Sequence[float] | torch.Tensor,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """``mean(first) - mean(second)`` over the same pairs, with its paired bootstrap interval.

    Pairs are resampled together (the same draw for both runs), so what the two runs share
    cancels: two identical runs differ by exactly 0 with a zero-width interval.

    Args:
        first: per-pair numbers of one run, (P,).
        second: the other run's on the same pairs in the same order, (P,).

    Raises:
        ValueError: the two differ in length (then they were not on the same pairs).
    """
    a = torch.as_tensor(first, dtype=torch.float64).flatten()
    b = torch.as_tensor(second, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same pairs, got {a.numel()} and {b.numel()}")
    return bootstrap_interval(a - b, resamples, seed, level)


# The held-out metrics whose per-pair outcomes are kept (keys of compare's held-out report).
OUTCOME_KEYS = (
    "logps_accuracy/reference",
    "logps_accuracy/policy",
    "logps_accuracy_per_token/reference",
    "logps_accuracy_per_token/policy",
    "rewards/accuracies",
)


def interval_summary(
    outcomes: Mapping[str, Sequence[float]], seed: int = SEED
) -> dict[str, float]:
    """95% bootstrap interval of each per-pair metric, as flat keys beside compare's metrics.

    Args:
        outcomes: per-pair values under metric names (``lit_dpo.train.metrics.pair_outcomes``).
        seed: seed of the draws (the same for every metric).

    Returns:
        ``{name + "/ci_low": ..., name + "/ci_high": ...}`` for every name.
    """
    summary = {}
    for name, values in outcomes.items():
        interval = bootstrap_interval(values, seed=seed)
        summary[f"{name}/ci_low"], summary[f"{name}/ci_high"] = interval.low, interval.high
    return summary


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> tuple[float, float]:
    """Raw agreement and Cohen's kappa of two judges' labels on the same items, in order.

    ``kappa = (p_o - p_e) / (1 - p_e)``: ``p_o`` the share of items labelled alike, ``p_e`` the
    share two judges would agree on by chance with their own label frequencies. When both judges
    give every item one and the same label, ``p_e`` is 1 and kappa is undefined: NaN.

    Returns:
        ``(agreement, kappa)``.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need two equal, non-empty label lists, got {len(first)}, {len(second)}")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_first, counts_second = Counter(first), Counter(second)
    expected = sum(counts_first[label] * counts_second[label] for label in counts_first) / n**2
    if expected == 1:
        return observed, math.nan
    return observed, (observed - expected) / (1 - expected)


def length_logistic_fit(
    differences: Sequence[float], outcomes: Sequence[float], ridge: float = 1e-3
) -> tuple[float, float]:
    """Fit ``P(policy wins) = sigmoid(a + b * d)`` by Newton's method on the log-likelihood.

    ``d`` is the length difference, scaled to [-1, 1] by the caller (``(policy - reference) /
    (policy + reference)``); outcomes are 1 (policy wins), 0 (loses) or 0.5 (tie), a soft label.
    ``sigmoid(a)`` is the win rate the fit predicts for answers of equal length; ``b > 0`` means
    the judge prefers the longer answer. A small ridge penalty ``ridge * (a^2 + b^2) / 2`` keeps
    the fit finite when verdicts are separated perfectly by length (all long answers win).

    Returns:
        ``(a, b)``.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(differences) != len(outcomes) or not differences:
        raise ValueError(
            f"need one outcome per length difference, got {len(differences)} and {len(outcomes)}"
        )
    a = b = 0.0
    for _ in range(100):
        # gradient g and Hessian H of the penalized negative log-likelihood
        g_a, g_b = ridge * a, ridge * b
        h_aa, h_ab, h_bb = ridge, 0.0, ridge
        for d, y in zip(differences, outcomes, strict=True):
            p = 1 / (1 + math.exp(-(a + b * d)))
            g_a += p - y
            g_b += (p - y) * d
            w = p * (1 - p)
            h_aa, h_ab, h_bb = h_aa + w, h_ab + w * d, h_bb + w * d * d
        determinant = h_aa * h_bb - h_ab**2
        if determinant <= 1e-12:
            # every d alike: the slope is not identified; fit the intercept alone
            step_a, step_b = g_a / h_aa, 0.0
        else:
            step_a = (h_bb * g_a - h_ab * g_b) / determinant
            step_b = (h_aa * g_b - h_ab * g_a) / determinant
        a, b = a - step_a, b - step_b
        if abs(step_a) + abs(step_b) < 1e-10:
            break
    return a, b


def sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))``."""
    return 1 / (1 + math.exp(-x))
