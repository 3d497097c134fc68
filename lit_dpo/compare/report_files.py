"""Write a comparison's report files, with the human votes found beside them, and rewrite them.

``compare.html``, ``compare.md`` and ``compare.json`` go to one folder. When that folder holds
``human_votes.json`` (the blind A/B page's export: a JSON list of ``{"judge": "human:<name>",
"prompt_id", "category", "winner"}``), its votes join the other judges' verdicts, so the report
shows every judge side by side. :func:`refresh` rewrites the files from ``compare.json`` after
new votes, without answering or judging anything again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lit_dpo.compare.prompts import PromptCase
from lit_dpo.compare.report import (
    Answer,
    CompareReport,
    PromptResult,
    to_html,
    to_json,
    to_markdown,
)
from lit_dpo.compare.verdicts import HUMAN_VOTES_FILE, Verdict, load_votes
from lit_dpo.errors import DataError
from lit_dpo.files import clear_leftovers, write_texts_atomically

log = logging.getLogger(__name__)
REPORT_FILES = ("compare.html", "compare.md", "compare.json")


def add_human_votes(report: CompareReport, folder: Path) -> int:
    """Replace the report's human verdicts by those in ``folder/human_votes.json``, if any.

    Votes on prompts the report does not hold are left out, with a warning.

    Returns:
        How many human votes the report now holds.

    Raises:
        DataError: the votes file is malformed (names the file and item).
    """
    path = folder / HUMAN_VOTES_FILE
    report.verdicts = [v for v in report.verdicts if not v.judge.startswith("human:")]
    if not path.is_file():
        return 0
    known = {r.prompt_id for r in report.results}
    votes = load_votes(path)
    kept = [v for v in votes if v.prompt_id in known and v.judge.startswith("human:")]
    if len(kept) < len(votes):
        log.warning(
            "%s: %d of %d votes are not human votes on this report's prompts; left out",
            path,
            len(votes) - len(kept),
            len(votes),
        )
    report.verdicts += kept
    return len(kept)


def write_report(report: CompareReport, folder: str | Path) -> None:
    """Write the three report files to ``folder``, with its human votes included."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clear_leftovers([folder])  # reports a killed run left unfinished
    add_human_votes(report, folder)
    # as a set: a full disk keeps the previous report's three files, not some of each
    write_texts_atomically({
        folder / "compare.html": to_html(report),
        folder / "compare.md": to_markdown(report),
        folder / "compare.json": to_json(report),
    })


def load_report(path: str | Path) -> CompareReport:
    """A report back from its ``compare.json``.

    Raises:
        DataError: the file is missing or not a compare report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = [
            PromptResult(
                PromptCase(**r["case"]),
                reference=Answer(**r["reference"]),
                policy=Answer(**r["policy"]),
                prompt_id=r["prompt_id"],
            )
            for r in data["results"]
        ]
        return CompareReport(
            base_model=data["base_model"],
            adapter=data["adapter"],
            settings=data["settings"],
            results=results,
            heldout=data["heldout"],
            judge=data["judge"],
            heldout_intervals=data.get("heldout_intervals"),
            reference_adapter=data["reference_adapter"],
            verdicts=[Verdict(**v) for v in data.get("verdicts", [])],
            ai_judge=data.get("ai_judge"),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a compare.json of lit-dpo compare ({error})") from None


def refresh(folder: str | Path) -> CompareReport:
    """Rewrite ``folder``'s report files from its ``compare.json`` and ``human_votes.json``."""
    report = load_report(Path(folder) / "compare.json")
    write_report(report, folder)
    return report
