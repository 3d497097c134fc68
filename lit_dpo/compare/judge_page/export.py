"""Votes out of the store: every vote as JSON or CSV, and ``human_votes.json`` for the report.

``human_votes.json`` (beside ``compare.json``) is what ``lit-dpo compare``'s report reads: a JSON
list of ``{"judge": "human:<name>", "prompt_id": ..., "category": ..., "winner": "policy" |
"reference" | "tie"}``, skips left out. The full export keeps every vote, skips included, with
the click (``left``...), which answer was on the left, and when.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from lit_dpo.compare.judge_page.store import Vote
from lit_dpo.files import write_text_atomically

HUMAN_VOTES_FILE = "human_votes.json"
FIELDS = [field.name for field in dataclasses.fields(Vote)]


def human_votes(votes: list[Vote]) -> list[dict[str, str]]:
    """The report's records of ``votes``: one per vote that is not a skip."""
    return [
        {
            "judge": f"human:{vote.judge}",
            "prompt_id": vote.prompt_id,
            "category": vote.category,
            "winner": vote.winner,
        }
        for vote in votes
        if vote.winner is not None
    ]


def write_human_votes(folder: str | Path, votes: list[Vote]) -> Path:
    """Write ``folder/human_votes.json`` (atomically: the report never reads half a file)."""
    text = json.dumps(human_votes(votes), indent=1, ensure_ascii=False) + "\n"
    return write_text_atomically(Path(folder) / HUMAN_VOTES_FILE, text)


def votes_json(votes: list[Vote]) -> str:
    """Every vote, skips included, as a JSON list of objects with the fields of :class:`Vote`."""
    return json.dumps([dataclasses.asdict(v) for v in votes], indent=1, ensure_ascii=False) + "\n"


def votes_csv(votes: list[Vote]) -> str:
    """Every vote as CSV with a header row; a skip's ``winner`` is empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
    writer.writeheader()
    for vote in votes:
        writer.writerow({**dataclasses.asdict(vote), "winner": vote.winner or ""})
    return buffer.getvalue()


def export_votes(path: str | Path, votes: list[Vote]) -> Path:
    """Write every vote to ``path``: CSV for a ``.csv`` name, else JSON.

    Raises:
        ValueError: the name ends in neither ``.csv`` nor ``.json``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--export {path}: name a .csv or a .json file")
    text = votes_csv(votes) if path.suffix.lower() == ".csv" else votes_json(votes)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, text)
