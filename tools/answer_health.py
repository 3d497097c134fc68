#!/usr/bin/env python3
"""The answer-health table of docs/quality.md, from several ``lit-dpo compare`` outputs.

Each output holds one adapter's answers beside the reference's (adapters off) on the same
prompts. The table has one row for the reference and one per adapter: answer lengths, looping and
evasive rates, and the share of benign prompts declined and of harmful prompts complied with,
each rate with its Wilson 95% interval over the prompts. The answers are re-scored from their
text by today's checks (``lit_dpo.compare.health``), so outputs generated before a check changed
are counted alike. The outputs must hold the same prompts; the reference's answers, greedy with
adapters off, are then the same in each (the first output's are used, and a difference is said).

    python tools/answer_health.py recipe=RUN1/compare.json kto=RUN2    # a folder or its JSON
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from lit_dpo.compare.health import answer_rates, share_text  # noqa: E402
from lit_dpo.compare.report_files import load_report  # noqa: E402
from lit_dpo.errors import DataError  # noqa: E402

HEADER = (
    "| model | answer tokens, harmful / benign | looping, all | looping, benign | evasive, all"
    " | benign declined or evaded | harmful complied with |\n|---|---|---|---|---|---|---|"
)


def health_row(label: str, rates: dict) -> str:
    """One Markdown row of :data:`HEADER` from :func:`lit_dpo.compare.health.answer_rates`."""

    def tokens(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    cells = [
        label,
        f"{tokens(rates['harmful_tokens'])} / {tokens(rates['benign_tokens'])}",
        share_text(rates["looping_rate"], rates["answers"]),
        share_text(rates["benign_looping_rate"], rates["benign"]),
        share_text(rates["evasive_rate"], rates["answers"]),
        share_text(rates["benign_declined_rate"], rates["benign"]),
        share_text(rates["harmful_complied_rate"], rates["harmful"]),
    ]
    return "| " + " | ".join(cells) + " |"


def health_table(reports: dict[str, object]) -> tuple[str, list[str]]:
    """The table for ``{label: CompareReport}``, and the notes to print beside it.

    Raises:
        DataError: the reports do not hold the same prompts.
    """
    (first_label, first), *others = reports.items()
    prompts = [r.prompt_id for r in first.results]
    notes = []
    for label, report in others:
        if [r.prompt_id for r in report.results] != prompts:
            raise DataError(
                f"{label} holds other prompts than {first_label}: compare adapters on the same "
                "--prompts (and the same edge cases) to put them in one table"
            )
        differing = sum(
            a.reference.text != b.reference.text
            for a, b in zip(first.results, report.results, strict=True)
        )
        if differing:
            notes.append(
                f"{label}: {differing} of {len(prompts)} reference answers differ from "
                f"{first_label}'s (another base, or sampled answers); the table shows "
                f"{first_label}'s"
            )

    def rates(report, side: str) -> dict:
        return answer_rates(
            [
                (r.case.refusal_wanted, getattr(r, side).text, getattr(r, side).tokens)
                for r in report.results
            ]
        )

    rows = [health_row("reference (adapters off)", rates(first, "reference"))]
    rows += [health_row(label, rates(report, "policy")) for label, report in reports.items()]
    return "\n".join([HEADER, *rows]), notes


def parse_output(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` -> (label, the compare.json); a bare path is labelled by its folder."""
    label, _, path = text.rpartition("=")
    path = Path(path)
    if path.is_dir():
        path = path / "compare.json"
    return label or path.parent.name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "outputs",
        nargs="+",
        type=parse_output,
        help="LABEL=PATH: a `lit-dpo compare --out` folder or its compare.json",
    )
    args = parser.parse_args(argv)
    try:
        reports = {label: load_report(path) for label, path in args.outputs}
        table, notes = health_table(reports)
    except DataError as error:
        print(f"answer_health: {error}", file=sys.stderr)
        return 2
    prompts = len(next(iter(reports.values())).results)
    print(f"{prompts} prompts; rates with Wilson 95% intervals over the prompts\n")
    print(table)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
