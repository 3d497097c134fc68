"""Win rates and agreement of human judges, from their votes (pure: records in, numbers out).

A record is one entry of ``human_votes.json``: ``{"judge": "human:<name>", "prompt_id": ...,
"category": ..., "winner": "policy" | "reference" | "tie"}``; skips are not records. The policy's
win rate counts ties as half a win, with the 95% Wilson interval the reward-model judge uses
(:func:`lit_dpo.compare.judge.wilson_interval`).

Pooled over judges ("all judges"), every vote is a trial, yet two judges' votes on one prompt are
not independent: that interval is narrower than it should be, and each judge's own row is the
honest one. Agreement is Cohen's kappa (Cohen 1960) between two judges on the prompts both voted
on, over the verdicts policy / reference / tie: ``(p_o - p_e) / (1 - p_e)``, with ``p_o`` the
share of prompts where they agree and ``p_e`` the agreement expected by chance from each judge's
own verdict frequencies. It is undefined (None) when ``p_e`` is 1: both gave one and the same
verdict to every shared prompt.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

from lit_dpo.stats import cohen_kappa, wilson_interval

VERDICTS = ("policy", "reference", "tie")
ALL_JUDGES = "all judges"


def tally(winners: list[str]) -> dict[str, float] | None:
    """Wins, ties and losses of the policy among ``winners``, its win rate and 95% interval.

    Returns:
        ``wins``, ``ties``, ``losses``, ``votes``, ``win_rate``, ``ci_low``, ``ci_high``; None
        when there are no votes.

    Raises:
        ValueError: a winner is not policy, reference or tie.
    """
    unknown = set(winners) - set(VERDICTS)
    if unknown:
        raise ValueError(f"winners are policy, reference or tie; got {sorted(unknown)}")
    if not winners:
        return None
    counts = Counter(winners)
    successes = counts["policy"] + counts["tie"] / 2
    low, high = wilson_interval(successes, len(winners))
    return {
        "wins": counts["policy"],
        "ties": counts["tie"],
        "losses": counts["reference"],
        "votes": len(winners),
        "win_rate": successes / len(winners),
        "ci_low": low,
        "ci_high": high,
    }


def win_rates(records: list[dict[str, str]]) -> list[dict]:
    """Per judge (by name), then pooled over judges when there are several: the overall tally
    and one per category (categories in order of first appearance).

    Returns:
        ``[{"judge": "human:alice", "overall": tally, "categories": {category: tally}}, ...]``,
        the pooled entry's judge being ``"all judges"``.
    """
    categories = list(dict.fromkeys(r["category"] for r in records))
    judges = sorted({r["judge"] for r in records})
    groups = [(judge, [r for r in records if r["judge"] == judge]) for judge in judges]
    if len(judges) > 1:
        groups.append((ALL_JUDGES, list(records)))
    return [
        {
            "judge": judge,
            "overall": tally([r["winner"] for r in group]),
            "categories": {
                category: tally([r["winner"] for r in group if r["category"] == category])
                for category in categories
            },
        }
        for judge, group in groups
    ]


def agreement(records: list[dict[str, str]]) -> list[dict]:
    """Cohen's kappa for every two judges who voted on at least one same prompt.

    Returns:
        ``[{"judges": [a, b], "prompts": shared prompts, "agreement": p_o, "kappa": kappa or
        None}, ...]``, pairs of judges in name order.
    """
    verdicts: dict[str, dict[str, str]] = {}
    for record in records:
        verdicts.setdefault(record["judge"], {})[record["prompt_id"]] = record["winner"]
    rows = []
    for a, b in combinations(sorted(verdicts), 2):
        shared = [p for p in verdicts[a] if p in verdicts[b]]
        if not shared:
            continue
        first = [verdicts[a][p] for p in shared]
        second = [verdicts[b][p] for p in shared]
        observed, kappa = cohen_kappa(first, second)
        rows.append(
            {
                "judges": [a, b],
                "prompts": len(shared),
                "agreement": observed,
                "kappa": None if math.isnan(kappa) else kappa,
            }
        )
    return rows
