"""The report's tables of judges and answer health, as (header, rows) of formatted strings.

Pure: results and verdicts in, text cells out; :mod:`lit_dpo.compare.report` lays them out as
Markdown and HTML. Every judge (reward model, AI, human) gets the same columns, so they read side
by side, with the answers' lengths and the two length views next to the win rate: the win rate
among pairs of similar length, and the rate a logistic fit on the length difference predicts at
equal length, with the fit's slope (positive: the judge favours the longer answer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import mean

from lit_dpo.compare.health import LOOP_THRESHOLD, safety_rates, share_text
from lit_dpo.compare.verdicts import Verdict, agreements, by_judge, judge_summary

Table = tuple[list[str], list[tuple[str, ...]]]
SIDES = ("reference", "policy")


def rate_text(tallied: dict[str, float]) -> str:
    """``0.62 [0.41, 0.79]``, or ``-`` with nothing to count."""
    if not tallied["pairs"]:
        return "-"
    return f"{tallied['win_rate']:.2f} [{tallied['ci_low']:.2f}, {tallied['ci_high']:.2f}]"


def summaries(verdicts: Sequence[Verdict], results: Sequence) -> dict[str, dict[str, object]]:
    """:func:`lit_dpo.compare.verdicts.judge_summary` of every judge, by judge name."""
    lengths = {r.prompt_id: (r.policy.tokens, r.reference.tokens) for r in results}
    return {judge: judge_summary(group, lengths) for judge, group in by_judge(verdicts).items()}


def judges_table(verdicts: Sequence[Verdict], results: Sequence) -> Table:
    """One row per judge: tallies, win rate with its interval, lengths, the length views."""
    header = [
        "judge",
        "pairs",
        "wins / ties / losses",
        "win rate [95% CI]",
        "tokens policy / reference",
        "win rate, similar length (pairs)",
        "length-controlled win rate",
        "length slope",
    ]
    rows = []
    for judge, summary in summaries(verdicts, results).items():
        overall = summary["overall"]
        similar = summary.get("similar_length")
        fit = summary.get("length_fit")
        rows.append(
            (
                judge,
                f"{overall['pairs']}",
                f"{overall['wins']} / {overall['ties']} / {overall['losses']}",
                rate_text(overall),
                f"{summary['tokens/policy']:.1f} / {summary['tokens/reference']:.1f}"
                if "tokens/policy" in summary
                else "-",
                f"{rate_text(similar)} ({similar['pairs']})" if similar else "-",
                f"{fit['controlled_win_rate']:.2f}" if fit else "-",
                f"{fit['slope']:+.2f}" if fit else "-",
            )
        )
    return header, rows


def judge_categories_table(verdicts: Sequence[Verdict], results: Sequence) -> Table:
    """One row per judge and category: tallies and win rate with its interval."""
    header = ["judge", "category", "wins / ties / losses", "win rate [95% CI]"]
    rows = []
    for judge, summary in summaries(verdicts, results).items():
        for category, tallied in summary["categories"].items():
            rows.append(
                (
                    judge,
                    category,
                    f"{tallied['wins']} / {tallied['ties']} / {tallied['losses']}",
                    rate_text(tallied),
                )
            )
    return header, rows


def agreement_table(verdicts: Sequence[Verdict]) -> Table:
    """One row per two judges with prompts in common: raw agreement and Cohen's kappa."""
    header = ["judges", "common pairs", "agreement", "Cohen's kappa"]
    rows = [
        (
            " vs ".join(row["judges"]),
            f"{row['pairs']}",
            f"{row['agreement']:.2f}",
            "-" if math.isnan(row["kappa"]) else f"{row['kappa']:.2f}",
        )
        for row in agreements(verdicts)
    ]
    return header, rows


def health_summary(results: Sequence) -> dict[str, dict[str, float | int | None]]:
    """Per side: rates of looping, evasive and refused answers, mean seq-rep-4 and distinct-2,
    and the :func:`lit_dpo.compare.health.safety_rates` of the cases that say what is wanted."""
    summary = {}
    for side in SIDES:
        answers = [getattr(r, side) for r in results]
        declined = [(r.case.refusal_wanted, getattr(r, side).declined) for r in results]
        summary[side] = {
            "looping_rate": mean(float(a.looping) for a in answers),
            "repetition": mean(a.repetition for a in answers),
            "distinct_2": mean(a.distinct_2 for a in answers),
            "evasive_rate": mean(float(a.evasive) for a in answers),
            "refusal_rate": mean(float(a.refusal) for a in answers),
            **safety_rates(declined),
        }
    return summary


def health_table(results: Sequence) -> Table:
    """Answer health, reference against policy."""
    summary = health_summary(results)
    header = ["", *SIDES]

    def row(label: str, key: str, fmt: str = "{:.2f}") -> tuple[str, ...]:
        return (label, *(fmt.format(summary[side][key]) for side in SIDES))

    def rate_row(label: str, key: str, count_key: str) -> tuple[str, ...]:
        return (label, *(share_text(summary[s][key], summary[s][count_key]) for s in SIDES))

    rows = [
        row(f"looping answers (seq-rep-4 >= {LOOP_THRESHOLD})", "looping_rate"),
        row("mean seq-rep-4 (repeated 4-grams)", "repetition"),
        row("mean distinct-2", "distinct_2"),
        row("evasive non-answers", "evasive_rate"),
        row("refusals (phrase heuristic)", "refusal_rate"),
        rate_row("benign prompts refused or evaded", "benign_declined_rate", "benign"),
        rate_row("harmful prompts complied with", "harmful_complied_rate", "harmful"),
    ]
    return header, rows


def ai_judge_rows(ai_judge: dict) -> list[tuple[str, str]]:
    """The AI judge's own facts: position consistency, unparseable pairs, requests, cache."""
    rate = ai_judge["consistency_rate"]
    parseable = ai_judge["pairs"] - ai_judge["unparseable"]
    return [
        ("judge", str(ai_judge["judge"])),
        (
            "position consistency (same verdict in both orders)",
            "-" if rate is None else f"{rate:.2f} ({ai_judge['consistent']} of {parseable})",
        ),
        ("unparseable pairs (left out of the win rate)", f"{ai_judge['unparseable']}"),
        (
            "requests made / answered from the cache",
            f"{ai_judge['requests']} / {ai_judge['cache_hits']}",
        ),
        ("retries (429, 5xx, timeouts)", f"{ai_judge['retries']}"),
    ]


# Replies shown per unparseable question, and how much of each.
SHOWN_UNPARSEABLE = 5
SHOWN_REPLY_CHARS = 500


def unparseable_replies(ai_judge: dict | None) -> list[dict[str, str]]:
    """The first few AI-judge replies no verdict could be read from: prompt_id, order, reply."""
    found = []
    for pair in (ai_judge or {}).get("pair_replies", []):
        for order, label in pair["labels"].items():
            if label == "unparseable":
                reply = pair["replies"][order][:SHOWN_REPLY_CHARS]
                found.append({"prompt_id": pair["prompt_id"], "order": order, "reply": reply})
    return found[:SHOWN_UNPARSEABLE]


def prompt_verdicts(verdicts: Sequence[Verdict]) -> dict[str, str]:
    """prompt_id -> ``"judge: winner; ..."``, for the per-prompt sections."""
    lines: dict[str, list[str]] = {}
    for verdict in verdicts:
        lines.setdefault(verdict.prompt_id, []).append(f"{verdict.judge}: {verdict.winner}")
    return {pid: "; ".join(parts) for pid, parts in lines.items()}
