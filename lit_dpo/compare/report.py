"""The results of ``lit-dpo compare`` and their renderings: terminal table, Markdown, HTML, JSON.

Rendering is pure (results in, text out). The HTML page is self-contained: inline CSS, no scripts,
fonts or images from elsewhere, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from dataclasses import dataclass, field
from statistics import mean

from lit_dpo.compare.health import share_text
from lit_dpo.compare.judge_tables import (
    agreement_table,
    ai_judge_rows,
    health_summary,
    health_table,
    judge_categories_table,
    judges_table,
    prompt_verdicts,
    rate_text,
    summaries,
    unparseable_replies,
)
from lit_dpo.compare.prompts import PromptCase
from lit_dpo.compare.verdicts import Verdict, agreements, by_judge, prompt_id, tally

# Prompts longer than this (the long-context case) are shown as their start and end.
SHOWN_PROMPT_CHARS = 1200
# The two sides of every comparison, in column order: the names training's metric keys use.
SIDES = ("reference", "policy")


@dataclass
class Answer:
    """One model's answer to one prompt.

    Args:
        text: the answer, special tokens removed.
        tokens: its length in tokens (end-of-turn not counted).
        reward: implicit DPO reward ``beta * (log p_policy - log p_reference)`` of this answer.
        refusal: whether :func:`lit_dpo.compare.prompts.is_refusal` counts it as a refusal.
        judge: the reward model's score, when one ran.
        evasive: whether :func:`lit_dpo.compare.prompts.is_evasive` counts it as a non-answer.
        repetition: seq-rep-4 of its words (:mod:`lit_dpo.compare.health`).
        distinct_2: distinct word pairs over word pairs.
        looping: ``repetition`` at or past :data:`lit_dpo.compare.health.LOOP_THRESHOLD`.
    """

    text: str
    tokens: int
    reward: float
    refusal: bool
    judge: float | None = None
    evasive: bool = False
    repetition: float = 0.0
    distinct_2: float = 1.0
    looping: bool = False

    @property
    def declined(self) -> bool:
        """Refused or evaded."""
        return self.refusal or self.evasive


@dataclass
class PromptResult:
    """A prompt with the reference's and the policy's answers; ``prompt_id`` names it for
    every judge (:func:`lit_dpo.compare.verdicts.prompt_id` of its conversation)."""

    case: PromptCase
    reference: Answer
    policy: Answer
    prompt_id: str = ""

    def __post_init__(self) -> None:
        if not self.prompt_id:
            self.prompt_id = prompt_id(self.case.messages)


@dataclass
class CompareReport:
    """Everything a comparison measured.

    Args:
        base_model: the base model's name or folder.
        adapter: the adapter folder.
        settings: the options that shaped the numbers (beta, lengths, dataset, judge...).
        results: one entry per prompt, user prompts first.
        heldout: :func:`lit_dpo.compare.scoring.preference_summary` of the held-out split, if
            evaluated.
        heldout_intervals: the 95% bootstrap interval over pairs of each held-out accuracy
            (``<metric>/ci_low``, ``<metric>/ci_high``), if evaluated.
        judge: :func:`lit_dpo.compare.judge.win_rate` of policy over reference, if a reward
            model judged.
        reference_adapter: the reference's adapter folder; None when the reference is the base.
        verdicts: every judge's verdicts (reward model, AI, human) in the common shape.
        ai_judge: the AI judge's consistency, unparseable pairs, request counts and each pair's
            replies in both orders, if an AI judge ran.
    """

    base_model: str
    adapter: str
    settings: dict[str, object]
    results: list[PromptResult] = field(default_factory=list)
    heldout: dict[str, float] | None = None
    judge: dict[str, float] | None = None
    heldout_intervals: dict[str, float] | None = None
    reference_adapter: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    ai_judge: dict[str, object] | None = None


def sides_explained(report: CompareReport) -> str:
    """What the two columns are: the reference training measured against, and the policy."""
    if report.reference_adapter is None:
        return (
            "reference = adapters off (the base model); policy = adapters on (the trained adapter)."
        )
    return (
        f"reference = the frozen reference adapter {report.reference_adapter}; "
        "policy = the trained adapter."
    )


def category_rows(results: list[PromptResult]) -> list[dict[str, float | str]]:
    """Per category (in order of appearance): prompts, mean lengths, refusal rates, mean rewards."""
    categories: dict[str, list[PromptResult]] = {}
    for result in results:
        categories.setdefault(result.case.category, []).append(result)
    rows = []
    for category, group in categories.items():
        row: dict[str, float | str] = {"category": category, "prompts": len(group)}
        for side in SIDES:
            answers = [getattr(r, side) for r in group]
            row[f"tokens/{side}"] = mean(a.tokens for a in answers)
            row[f"refusal_rate/{side}"] = mean(float(a.refusal) for a in answers)
            row[f"reward/{side}"] = mean(a.reward for a in answers)
        rows.append(row)
    return rows


def summary_rows(report: CompareReport) -> list[tuple[str, str, str]]:
    """(label, reference, policy) lines of the headline table, as formatted strings."""
    rows = []
    heldout = report.heldout
    intervals = report.heldout_intervals or {}

    def accuracy(key: str) -> str:
        # an accuracy on a few hundred pairs is a sample: its 95% interval beside it
        low, high = intervals.get(f"{key}/ci_low"), intervals.get(f"{key}/ci_high")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        return f"{heldout[key]:.3f}{interval}"

    if heldout:
        pairs = f"{heldout['pairs']:.0f}"
        rows.append(("held-out pairs", pairs, pairs))
        for label, key in (
            ("log-prob accuracy, summed", "logps_accuracy"),
            ("log-prob accuracy, per token", "logps_accuracy_per_token"),
        ):
            rows.append((label, accuracy(key + "/reference"), accuracy(key + "/policy")))
        key = "perplexity_chosen"
        rows.append(
            (
                "perplexity on chosen replies",
                f"{heldout[key + '/reference']:.3f}",
                f"{heldout[key + '/policy']:.3f}",
            )
        )
        rows.append(
            (
                "implicit-reward accuracy / margin",
                "",
                f"{accuracy('rewards/accuracies')} / {heldout['rewards/margins']:.3f}",
            )
        )
    if report.results:
        rows.append(("prompts answered", str(len(report.results)), str(len(report.results))))
        for label, attribute, fmt in (
            ("mean answer length, tokens", "tokens", "{:.1f}"),
            ("refusal rate (phrase heuristic)", "refusal", "{:.2f}"),
            ("evasive non-answer rate", "evasive", "{:.2f}"),
            ("looping answer rate", "looping", "{:.2f}"),
            ("mean implicit reward of answers", "reward", "{:.3f}"),
        ):
            values = [
                fmt.format(
                    mean(float(getattr(getattr(r, side), attribute)) for r in report.results)
                )
                for side in SIDES
            ]
            rows.append((label, *values))
        health = health_summary(report.results)
        for label, key, count in (
            ("benign prompts refused or evaded", "benign_declined_rate", "benign"),
            ("harmful prompts complied with", "harmful_complied_rate", "harmful"),
        ):
            if health["policy"][key] is not None:
                rows.append((label, *(share_text(health[s][key], health[s][count]) for s in SIDES)))
    for judge, group in by_judge(report.verdicts).items():
        tallied = tally([v.winner for v in group])
        rows.append(
            (f"win rate of policy, {judge} ({tallied['pairs']} pairs)", "", rate_text(tallied))
        )
    if report.ai_judge:
        rate = report.ai_judge["consistency_rate"]
        rows.append(
            (
                f"position consistency, {report.ai_judge['judge']}",
                "",
                "-" if rate is None else f"{rate:.2f}",
            )
        )
        if report.ai_judge["unparseable"]:
            unparseable = f"{report.ai_judge['unparseable']}"
            rows.append(("unparseable AI verdicts (pairs)", "", unparseable))
    return rows


def summary_table(report: CompareReport) -> str:
    """The headline table for a terminal."""
    rows = summary_rows(report)
    width = max([len(label) for label, _, _ in rows] + [10]) + 2
    lines = [sides_explained(report), f"{'':{width}}{'reference':>10}  {'policy':<}"]
    lines += [f"{label:{width}}{reference:>10}  {policy}" for label, reference, policy in rows]
    return "\n".join(lines)


def to_json(report: CompareReport) -> str:
    """All numbers and texts, for scripts: the report's fields, plus per-judge ``judges``
    summaries, judge ``agreement`` and ``health`` (reference and policy)."""
    data = dataclasses.asdict(report)
    data["judges"] = summaries(report.verdicts, report.results)
    data["agreement"] = agreements(report.verdicts)
    data["health"] = health_summary(report.results) if report.results else None
    # NaN (an undefined kappa or rate) is not JSON: write null
    return json.dumps(_nan_to_none(data), indent=2, ensure_ascii=False) + "\n"


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _sections(report: CompareReport) -> list[tuple[str, tuple[list[str], list[tuple[str, ...]]]]]:
    """The tables after the summary: (title, (header, rows)), those with rows only."""
    sections = []
    if report.verdicts:
        sections.append(("Judges", judges_table(report.verdicts, report.results)))
        sections.append(
            ("Judges by category", judge_categories_table(report.verdicts, report.results))
        )
        agreement = agreement_table(report.verdicts)
        if agreement[1]:
            sections.append(("Agreement between judges", agreement))
    if report.ai_judge:
        sections.append(("AI judge", (["", "value"], ai_judge_rows(report.ai_judge))))
    if report.results:
        sections.append(("Answer health", health_table(report.results)))
        sections.append(("By category", _category_table(category_rows(report.results))))
    return sections


def to_markdown(report: CompareReport) -> str:
    """The report as Markdown: summary, categories, then every prompt with both answers."""
    parts = [
        "# lit-dpo compare: reference vs policy\n",
        f"{sides_explained(report)} Base `{report.base_model}`, adapter `{report.adapter}`. "
        + ", ".join(f"{k} {v}" for k, v in report.settings.items())
        + ".\n",
        "## Summary\n",
        _markdown_table(["", *SIDES], summary_rows(report)),
    ]
    for title, table in _sections(report):
        parts += [f"## {title}\n", _markdown_table(*table)]
    parts += _unparseable_markdown(report)
    verdicts = prompt_verdicts(report.verdicts)
    for i, result in enumerate(report.results, 1):
        parts.append(f"## {i}. {result.case.category}\n")
        parts.append(f"Prompt id `{result.prompt_id}`.\n")
        if result.case.expect:
            parts.append(f"A good answer {result.case.expect}.\n")
        if result.prompt_id in verdicts:
            parts.append(f"Verdicts: {verdicts[result.prompt_id]}.\n")
        for message in result.case.messages:
            parts.append(f"**{message['role']}**\n\n{_fenced(_shorten(message['content']))}")
        for side in SIDES:
            answer: Answer = getattr(result, side)
            parts.append(f"**{side}** ({_answer_facts(answer)})\n\n{_fenced(answer.text)}")
    return "\n".join(parts)


def to_html(report: CompareReport) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    settings = ", ".join(f"{e(str(k))} {e(str(v))}" for k, v in report.settings.items())
    body = [
        "<h1>lit-dpo compare: reference vs policy</h1>",
        f"<p>{e(sides_explained(report))} Base <code>{e(report.base_model)}</code>, adapter "
        f"<code>{e(report.adapter)}</code>. {settings}.</p>",
        "<h2>Summary</h2>",
        _html_table(["", *SIDES], summary_rows(report)),
    ]
    for title, table in _sections(report):
        body += [f"<h2>{e(title)}</h2>", _html_table(*table)]
    for item in unparseable_replies(report.ai_judge):
        body.append(
            f"<p>Unparseable reply ({e(item['order'])}, prompt <code>{e(item['prompt_id'])}"
            f"</code>):</p><pre>{e(item['reply'])}</pre>"
        )
    verdicts = prompt_verdicts(report.verdicts)
    for i, result in enumerate(report.results, 1):
        body.append(f"<section><h2>{i}. {e(result.case.category)}</h2>")
        body.append(f"<p>Prompt id <code>{e(result.prompt_id)}</code>.</p>")
        if result.case.expect:
            body.append(f"<p class=expect>A good answer {e(result.case.expect)}.</p>")
        if result.prompt_id in verdicts:
            body.append(f"<p>Verdicts: {e(verdicts[result.prompt_id])}.</p>")
        for message in result.case.messages:
            body.append(
                f"<div class=turn><b>{e(message['role'])}</b>"
                f"<pre>{e(_shorten(message['content']))}</pre></div>"
            )
        body.append("<div class=pair>")
        for side in SIDES:
            answer: Answer = getattr(result, side)
            body.append(
                f"<div class='answer {side}'><b>{side}</b> <small>{e(_answer_facts(answer))}"
                f"</small><pre>{e(answer.text)}</pre></div>"
            )
        body.append("</div></section>")
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>lit-dpo compare</title><style>"
        + _CSS
        + "</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;"
    "padding:.3rem .6rem;text-align:right}td:first-child,th:first-child{text-align:left}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;margin:.3rem 0}"
    ".pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.reference pre{background:#f3f3fb}"
    ".policy pre{background:#f1f8f1}.expect{color:#555;font-style:italic}"
    "section{border-top:1px solid #ddd;margin-top:1.5rem}"
)


def _category_table(rows: list[dict]) -> tuple[list[str], list[tuple[str, ...]]]:
    header = [
        "category",
        "prompts",
        "tokens reference",
        "tokens policy",
        "refusals reference",
        "refusals policy",
        "reward reference",
        "reward policy",
    ]
    body = [
        (
            str(r["category"]),
            f"{r['prompts']}",
            f"{r['tokens/reference']:.1f}",
            f"{r['tokens/policy']:.1f}",
            f"{r['refusal_rate/reference']:.2f}",
            f"{r['refusal_rate/policy']:.2f}",
            f"{r['reward/reference']:.3f}",
            f"{r['reward/policy']:.3f}",
        )
        for r in rows
    ]
    return header, body


def _unparseable_markdown(report: CompareReport) -> list[str]:
    return [
        f"Unparseable reply ({item['order']}, prompt `{item['prompt_id']}`):\n\n"
        + _fenced(item["reply"])
        for item in unparseable_replies(report.ai_judge)
    ]


def _answer_facts(answer: Answer) -> str:
    facts = [f"{answer.tokens} tokens", f"implicit reward {answer.reward:.3f}"]
    if answer.refusal:
        facts.append("refusal")
    if answer.evasive:
        facts.append("evasive")
    if answer.looping:
        facts.append(f"looping (seq-rep-4 {answer.repetition:.2f})")
    if answer.judge is not None:
        facts.append(f"judge {answer.judge:.3f}")
    return ", ".join(facts)


def _shorten(text: str) -> str:
    if len(text) <= SHOWN_PROMPT_CHARS:
        return text
    head, tail = text[: SHOWN_PROMPT_CHARS * 2 // 3], text[-SHOWN_PROMPT_CHARS // 3 :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters not shown ...]\n{tail}"


def _fenced(text: str) -> str:
    # The fence must be longer than any backtick run inside the answer, or the answer ends it.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _markdown_table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
