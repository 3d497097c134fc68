"""The results page: win rates per judge and category, and agreement between judges (HTML).

Rendering is pure (numbers in, text out) and every name is escaped. Cells carry ``data-`` names
(``data-judge``, ``data-category``, ``data-key``) so a script or a test can read the numbers.
"""

from __future__ import annotations

import html
from collections import Counter

from lit_dpo.compare.judge_page.export import human_votes
from lit_dpo.compare.judge_page.results import agreement, win_rates
from lit_dpo.compare.judge_page.store import Vote

STYLESHEET = "/static/judge.css"


def results_html(votes: list[Vote], pairs: int) -> str:
    """The results page of ``votes`` on a comparison of ``pairs`` prompts."""
    e = html.escape
    records = human_votes(votes)
    body = [
        "<h1>Human judges: results</h1>",
        "<p>Win rate of the policy over the reference: ties count half a win; the interval is "
        "95% (Wilson). Skipped pairs are left out. <a href='/'>Judge more pairs</a> · export: "
        "<a href='/votes.csv'>CSV</a>, <a href='/votes.json'>JSON</a></p>",
        _judges_table(votes, pairs),
    ]
    if not records:
        body.append("<p>No votes yet.</p>")
    for group in win_rates(records):
        judge = group["judge"]
        body.append(f"<h2>{e(judge)}</h2>")
        if judge == "all judges":
            body.append(
                "<p>Every judge's vote pooled: votes of two judges on one prompt are not "
                "independent, so this interval is narrower than it should be.</p>"
            )
        rows = [("overall", group["overall"]), *group["categories"].items()]
        body.append(_win_rate_table(judge, rows))
    pairs_of_judges = agreement(records)
    if pairs_of_judges:
        body += [
            "<h2>Agreement between judges</h2>",
            "<p>Cohen's kappa on the prompts both judges voted on (policy, reference or tie): "
            "1 is full agreement, 0 what chance gives.</p>",
            _agreement_table(pairs_of_judges),
        ]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>lit-dpo judge: results</title><link rel=stylesheet href='{STYLESHEET}'>"
        "</head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def _judges_table(votes: list[Vote], pairs: int) -> str:
    cast = Counter(v.judge for v in votes)
    skipped = Counter(v.judge for v in votes if v.winner is None)
    rows = "".join(
        f"<tr data-judge='{html.escape('human:' + judge)}'><th scope=row>{html.escape(judge)}</th>"
        f"<td data-key=judged>{cast[judge]} of {pairs}</td>"
        f"<td data-key=skipped>{skipped[judge]}</td></tr>"
        for judge in sorted(cast)
    )
    return (
        "<table><caption>Judges</caption><thead><tr><th scope=col>judge</th>"
        "<th scope=col>pairs judged</th><th scope=col>skipped</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _win_rate_table(judge: str, rows: list[tuple[str, dict | None]]) -> str:
    e = html.escape
    header = ("category", "votes", "policy wins", "ties", "reference wins", "win rate", "95% CI")
    cells = []
    for category, t in rows:
        if t is None:
            values = [("votes", "0"), ("wins", ""), ("ties", ""), ("losses", "")]
            values += [("win_rate", "–"), ("interval", "–")]
        else:
            values = [
                ("votes", f"{t['votes']}"),
                ("wins", f"{t['wins']}"),
                ("ties", f"{t['ties']}"),
                ("losses", f"{t['losses']}"),
                ("win_rate", f"{t['win_rate']:.2f}"),
                ("interval", f"[{t['ci_low']:.2f}, {t['ci_high']:.2f}]"),
            ]
        cells.append(
            f"<tr data-category='{e(category)}'><th scope=row>{e(category)}</th>"
            + "".join(f"<td data-key={key}>{value}</td>" for key, value in values)
            + "</tr>"
        )
    head = "".join(f"<th scope=col>{h}</th>" for h in header)
    return (
        f"<table data-judge='{e(judge)}'><caption>policy vs reference, by category</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(cells)}</tbody></table>"
    )


def _agreement_table(rows: list[dict]) -> str:
    e = html.escape
    body = []
    for row in rows:
        a, b = row["judges"]
        kappa = (
            "undefined (one same verdict throughout)"
            if row["kappa"] is None
            else f"{row['kappa']:.2f}"
        )
        body.append(
            f"<tr data-judges='{e(a)} | {e(b)}'><th scope=row>{e(a)} and {e(b)}</th>"
            f"<td data-key=prompts>{row['prompts']}</td>"
            f"<td data-key=agreement>{row['agreement']:.2f}</td>"
            f"<td data-key=kappa>{kappa}</td></tr>"
        )
    return (
        "<table><caption>Agreement</caption><thead><tr><th scope=col>judges</th>"
        "<th scope=col>shared prompts</th><th scope=col>agreement</th>"
        f"<th scope=col>Cohen's kappa</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
