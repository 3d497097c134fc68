"""Pure statistics of judge verdicts: Wilson's interval, Cohen's kappa, a logistic length fit.

Wilson's score interval (Wilson 1927; Brown, Cai & DasGupta 2001) stays inside [0, 1] and behaves
at the handful of prompts a comparison has, where the normal approximation does not. Cohen's kappa
(Cohen 1960) is the agreement of two judges beyond what their own label frequencies give by chance.
The length fit is the idea of AlpacaEval's length-controlled win rate (Dubois et al. 2024,
https://arxiv.org/abs/2404.04475), reduced to its core: regress the verdict on the answers' length
difference and read the win rate the fit predicts at equal length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


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
