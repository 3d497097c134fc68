"""Every judge's verdicts in one shape, and what the report computes from them.

A verdict is one judge's pick for one prompt: ``policy``, ``reference`` or ``tie``. Judges are
named by kind: ``reward_model:<name>`` (a sequence-classification model's scores),
``ai:<model>`` (a chat model over an OpenAI-compatible endpoint, both orders combined) and
``human:<name>`` (votes from the blind A/B page, read from ``human_votes.json`` beside the
report). Prompts are named by :func:`prompt_id`, so verdicts from anywhere join the answers and
their lengths. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from lit_dpo.errors import DataError
from lit_dpo.stats import cohen_kappa, length_logistic_fit, sigmoid, wilson_interval

WINNERS = ("policy", "reference", "tie")
JUDGE_KINDS = ("reward_model", "ai", "human")
HUMAN_VOTES_FILE = "human_votes.json"
# Two answers are of similar length when they differ by at most this share of the longer one.
SIMILAR_LENGTH = 0.2
# Fewer pairs than this and a two-parameter fit says more about noise than about the judge.
LENGTH_FIT_MIN_PAIRS = 10


@dataclass(frozen=True)
class Verdict:
    """One judge's verdict on one prompt.

    Args:
        judge: ``reward_model:<name>``, ``ai:<model>`` or ``human:<name>``.
        prompt_id: :func:`prompt_id` of the prompt's conversation.
        category: the prompt's category in the report.
        winner: ``policy``, ``reference`` or ``tie``.
    """

    judge: str
    prompt_id: str
    category: str
    winner: str


def prompt_id(messages: Sequence[Mapping[str, str]]) -> str:
    """A short, stable id of a conversation: the same prompt has the same id in every run."""
    text = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def from_scores(judge: str, items: Iterable[tuple[str, str, float, float]]) -> list[Verdict]:
    """Verdicts from scores ``(prompt_id, category, policy_score, reference_score)``:
    the higher score wins, equal scores tie."""
    verdicts = []
    for pid, category, policy, reference in items:
        winner = "policy" if policy > reference else "reference" if reference > policy else "tie"
        verdicts.append(Verdict(judge, pid, category, winner))
    return verdicts


def load_votes(path: str | Path) -> list[Verdict]:
    """Verdicts from a JSON list of ``{"judge", "prompt_id", "category", "winner"}`` records
    (``human_votes.json``). A judge's later vote on a prompt replaces its earlier one.

    Raises:
        DataError: not a JSON list of such records; names the file and the item.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable as JSON ({error})") from error
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of votes, got {type(items).__name__}")
    votes: dict[tuple[str, str], Verdict] = {}
    for i, item in enumerate(items):
        fields = ("judge", "prompt_id", "category", "winner")
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in fields):
            raise DataError(f"{path} item {i}: expected string fields {fields}, got {item!r}")
        kind = item["judge"].partition(":")[0]
        if kind not in JUDGE_KINDS or ":" not in item["judge"] or item["winner"] not in WINNERS:
            raise DataError(
                f"{path} item {i}: judge is '<kind>:<name>' with kind one of {JUDGE_KINDS} and "
                f"winner one of {WINNERS}; got {item['judge']!r}, {item['winner']!r}"
            )
        votes[item["judge"], item["prompt_id"]] = Verdict(*(item[f] for f in fields))
    return list(votes.values())


def tally(winners: Sequence[str]) -> dict[str, float]:
    """Wins, ties and losses of the policy, its win rate (a tie is half a win) and the rate's
    95% Wilson interval. An empty list gives zeros and NaN rates."""
    wins, ties = winners.count("policy"), winners.count("tie")
    n = len(winners)
    rate = (wins + ties / 2) / n if n else math.nan
    low, high = wilson_interval(wins + ties / 2, n) if n else (math.nan, math.nan)
    return {
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "pairs": n,
        "win_rate": rate,
        "ci_low": low,
        "ci_high": high,
    }


def judge_summary(
    verdicts: Sequence[Verdict],
    lengths: Mapping[str, tuple[int, int]],
    min_fit_pairs: int = LENGTH_FIT_MIN_PAIRS,
) -> dict[str, object]:
    """One judge's numbers: overall and per-category tallies, lengths and the length views.

    Args:
        verdicts: this judge's verdicts.
        lengths: ``prompt_id -> (policy_tokens, reference_tokens)`` of the answers judged.
        min_fit_pairs: fewest pairs with known lengths for the logistic length fit.

    Returns:
        ``overall`` and ``categories`` (:func:`tally` each); ``tokens/policy`` and
        ``tokens/reference``, the mean answer lengths over the judged pairs;
        ``similar_length`` (:func:`tally` of the pairs within ``SIMILAR_LENGTH`` of each other);
        ``length_fit`` with the logistic fit's ``intercept``, ``slope`` and the
        ``controlled_win_rate`` it predicts at equal length (absent below ``min_fit_pairs``).
    """
    categories: dict[str, list[str]] = {}
    for verdict in verdicts:
        categories.setdefault(verdict.category, []).append(verdict.winner)
    summary: dict[str, object] = {
        "overall": tally([v.winner for v in verdicts]),
        "categories": {category: tally(w) for category, w in categories.items()},
    }
    known = [v for v in verdicts if v.prompt_id in lengths]
    if known:
        pairs = [lengths[v.prompt_id] for v in known]
        summary["tokens/policy"] = sum(p for p, _ in pairs) / len(pairs)
        summary["tokens/reference"] = sum(r for _, r in pairs) / len(pairs)
        summary["similar_length"] = tally(
            [v.winner for v, (p, r) in zip(known, pairs, strict=True) if _similar(p, r)]
        )
    if len(known) >= max(2, min_fit_pairs):
        differences = [(p - r) / (p + r) if p + r else 0.0 for p, r in pairs]
        outcomes = [{"policy": 1.0, "tie": 0.5, "reference": 0.0}[v.winner] for v in known]
        intercept, slope = length_logistic_fit(differences, outcomes)
        summary["length_fit"] = {
            "intercept": intercept,
            "slope": slope,
            "controlled_win_rate": sigmoid(intercept),
        }
    return summary


def _similar(policy: int, reference: int) -> bool:
    return abs(policy - reference) <= SIMILAR_LENGTH * max(policy, reference)


def by_judge(verdicts: Iterable[Verdict]) -> dict[str, list[Verdict]]:
    """Verdicts grouped by judge, judges in order of first appearance."""
    grouped: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        grouped.setdefault(verdict.judge, []).append(verdict)
    return grouped


def agreements(verdicts: Iterable[Verdict]) -> list[dict[str, object]]:
    """For every two judges with prompts in common: how many, raw agreement, Cohen's kappa
    (NaN when both gave one and the same verdict throughout)."""
    grouped = {
        judge: {v.prompt_id: v.winner for v in group} for judge, group in by_judge(verdicts).items()
    }
    rows = []
    for first, second in combinations(grouped, 2):
        common = [pid for pid in grouped[first] if pid in grouped[second]]
        if not common:
            continue
        agreement, kappa = cohen_kappa(
            [grouped[first][pid] for pid in common], [grouped[second][pid] for pid in common]
        )
        rows.append(
            {
                "judges": [first, second],
                "pairs": len(common),
                "agreement": agreement,
                "kappa": kappa,
            }
        )
    return rows
