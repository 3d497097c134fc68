"""Votes of human judges, kept in SQLite beside the compare report as they are cast.

For each judge and pair, the side shown on the left is drawn at random the first time the pair is
shown and recorded (table ``layouts``), so the page never needs to know which answer is whose: a
vote says ``left``, ``right``, ``tie`` or ``skip``, and the store turns it into a winner
(``policy``, ``reference``, ``tie``; none for a skip) from the recorded layout. Undo deletes the
judge's last vote and keeps the layout, so the pair comes back as it was shown. Every call opens
its own connection in one transaction: the HTTP server's threads, a reload and a second
``lit-dpo judge`` on the same folder all see one consistent state, and a second session resumes
where the first stopped.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lit_dpo.compare.judge_page.pairs import Pair
from lit_dpo.errors import DataError

VOTES_FILE = "votes.sqlite"
SIDES = ("policy", "reference")
CHOICES = ("left", "right", "tie", "skip")
# letters and digits of any script, spaces and . _ ' -: a name that reads well in a table and a
# file name, without quoting trouble in CSV or HTML
JUDGE_NAME = re.compile(r"\w[\w .'-]{0,39}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    prompt_id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS layouts (
    judge TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    left_side TEXT NOT NULL CHECK (left_side IN ('policy', 'reference')),
    PRIMARY KEY (judge, prompt_id)
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    judge TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'skip')),
    left_side TEXT NOT NULL CHECK (left_side IN ('policy', 'reference')),
    winner TEXT CHECK (winner IN ('policy', 'reference', 'tie')),
    cast_at TEXT NOT NULL,
    UNIQUE (judge, prompt_id)
);
"""


class VoteError(ValueError):
    """A vote or name the store refuses; the message says why, for the page to show."""


class VoteConflict(VoteError):
    """A vote on a pair already voted on, or never shown: the page is out of date."""


@dataclass(frozen=True)
class Shown:
    """A pair as one judge sees it: which side's answer is on the left."""

    pair: Pair
    left_side: str

    @property
    def left(self) -> str:
        return getattr(self.pair, self.left_side)

    @property
    def right(self) -> str:
        return getattr(self.pair, other_side(self.left_side))


@dataclass(frozen=True)
class Vote:
    """One stored vote.

    Args:
        judge: the judge's name as typed (without ``human:``).
        prompt_id: the pair's prompt id.
        category: the pair's category.
        choice: ``left``, ``right``, ``tie`` or ``skip``, as clicked.
        left_side: which answer was on the left (``policy`` or ``reference``).
        winner: ``policy``, ``reference`` or ``tie``; None for a skip.
        cast_at: when, UTC, ISO 8601.
    """

    judge: str
    prompt_id: str
    category: str
    choice: str
    left_side: str
    winner: str | None
    cast_at: str


def other_side(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


def winner_of(choice: str, left_side: str) -> str | None:
    """The winning side of a click, given which side was on the left (None for a skip).

    Raises:
        VoteError: unknown choice or side.
    """
    if choice not in CHOICES or left_side not in SIDES:
        raise VoteError(f"a vote is one of {', '.join(CHOICES)}; got {choice!r}")
    if choice == "skip":
        return None
    if choice == "tie":
        return "tie"
    return left_side if choice == "left" else other_side(left_side)


def check_judge_name(name: str) -> str:
    """The name, stripped, if it is usable.

    Raises:
        VoteError: empty, too long or with characters outside letters, digits, spaces, . _ ' -.
    """
    name = (name or "").strip()
    if not JUDGE_NAME.fullmatch(name):
        raise VoteError(
            f"judge name {name!r}: use 1 to 40 letters, digits, spaces or . _ ' - "
            "(starting with a letter or digit)"
        )
    return name


class VoteStore:
    """The votes of every judge on the pairs of one comparison.

    Args:
        path: the SQLite file (created if missing).
        pairs: the pairs, in the order judges see them.
        rng: draws the left side of each newly shown pair (tests pass a seeded one).

    Raises:
        DataError: the file holds votes on a pair whose prompt or answers have changed since
            (``compare`` rerun into the same folder), or on a pair that is gone.
    """

    def __init__(
        self, path: str | Path, pairs: list[Pair], rng: random.Random | None = None
    ) -> None:
        self.path = Path(path)
        self.pairs = list(pairs)
        self.by_id = {pair.prompt_id: pair for pair in self.pairs}
        self.rng = rng or random.SystemRandom()
        # SQLite serializes writers across processes; the lock keeps this process's threads from
        # waiting on each other's busy timeouts
        self._lock = threading.Lock()
        # executescript commits on its own, so the schema goes before the first transaction
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()
        with self._transaction() as db:
            self._sync_pairs(db)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()

    def _sync_pairs(self, db: sqlite3.Connection) -> None:
        stored = dict(db.execute("SELECT prompt_id, fingerprint FROM pairs"))
        voted = {row[0] for row in db.execute("SELECT DISTINCT prompt_id FROM votes")}
        changed = sorted(
            prompt_id
            for prompt_id, fingerprint in stored.items()
            if prompt_id in voted
            and (prompt_id not in self.by_id or self.by_id[prompt_id].fingerprint != fingerprint)
        )
        if changed:
            raise DataError(
                f"{self.path} holds votes on prompts whose answers are no longer in compare.json "
                f"(ids {', '.join(changed)}; compare was rerun into the same folder?): move "
                f"{self.path.name} away to start afresh, or compare into another --out"
            )
        # pairs without votes may change freely; their old layouts go with them
        for prompt_id, fingerprint in stored.items():
            if prompt_id not in self.by_id or self.by_id[prompt_id].fingerprint != fingerprint:
                db.execute("DELETE FROM pairs WHERE prompt_id = ?", (prompt_id,))
                db.execute("DELETE FROM layouts WHERE prompt_id = ?", (prompt_id,))
        db.executemany(
            "INSERT OR IGNORE INTO pairs VALUES (?, ?, ?)",
            [(p.prompt_id, p.category, p.fingerprint) for p in self.pairs],
        )

    def next_pair(self, judge: str) -> Shown | None:
        """The first pair ``judge`` has not voted on (its layout drawn and recorded the first
        time), or None when every pair has a vote."""
        judge = check_judge_name(judge)
        with self._transaction() as db:
            voted = {
                row[0]
                for row in db.execute("SELECT prompt_id FROM votes WHERE judge = ?", (judge,))
            }
            pair = next((p for p in self.pairs if p.prompt_id not in voted), None)
            if pair is None:
                return None
            return Shown(pair, self._layout(db, judge, pair.prompt_id, create=True))

    def _layout(
        self, db: sqlite3.Connection, judge: str, prompt_id: str, create: bool
    ) -> str | None:
        if create:
            db.execute(
                "INSERT OR IGNORE INTO layouts VALUES (?, ?, ?)",
                (judge, prompt_id, self.rng.choice(SIDES)),
            )
        row = db.execute(
            "SELECT left_side FROM layouts WHERE judge = ? AND prompt_id = ?", (judge, prompt_id)
        ).fetchone()
        return row[0] if row else None

    def cast(self, judge: str, prompt_id: str, choice: str) -> Vote:
        """Record ``judge``'s vote on a pair that was shown to them.

        Raises:
            VoteError: bad name or choice, unknown pair, a pair never shown to this judge, or one
                they already voted on (another tab, a double click).
        """
        judge = check_judge_name(judge)
        if prompt_id not in self.by_id:
            raise VoteError(f"no prompt with id {prompt_id!r} in this comparison")
        with self._transaction() as db:
            left_side = self._layout(db, judge, prompt_id, create=False)
            if left_side is None:
                raise VoteConflict(
                    f"prompt {prompt_id} was never shown to {judge}; reload the page"
                )
            vote = Vote(
                judge,
                prompt_id,
                self.by_id[prompt_id].category,
                choice,
                left_side,
                winner_of(choice, left_side),
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            try:
                db.execute(
                    "INSERT INTO votes (judge, prompt_id, choice, left_side, winner, cast_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (judge, prompt_id, choice, left_side, vote.winner, vote.cast_at),
                )
            except sqlite3.IntegrityError as error:
                raise VoteConflict(
                    f"{judge} already voted on prompt {prompt_id}; reload the page"
                ) from error
        return vote

    def undo(self, judge: str) -> Vote | None:
        """Delete ``judge``'s last vote (a skip included) and return it; None if they have none.

        The pair's layout stays, so it is shown again with the same answer on the left.
        """
        judge = check_judge_name(judge)
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, prompt_id FROM votes WHERE judge = ? ORDER BY id DESC LIMIT 1",
                (judge,),
            ).fetchone()
            if row is None:
                return None
            vote = self._votes(db, "WHERE v.id = ?", (row[0],))[0]
            db.execute("DELETE FROM votes WHERE id = ?", (row[0],))
        return vote

    def progress(self, judge: str) -> tuple[int, int]:
        """(pairs ``judge`` has voted on, skips included; pairs in all)."""
        judge = check_judge_name(judge)
        with self._transaction() as db:
            (done,) = db.execute("SELECT COUNT(*) FROM votes WHERE judge = ?", (judge,)).fetchone()
        return done, len(self.pairs)

    def votes(self) -> list[Vote]:
        """Every vote, by judge (alphabetically) and in the order of the pairs."""
        with self._transaction() as db:
            votes = self._votes(db, "", ())
        order = {pair.prompt_id: i for i, pair in enumerate(self.pairs)}
        return sorted(votes, key=lambda v: (v.judge, order.get(v.prompt_id, len(order))))

    def layouts(self, judge: str) -> dict[str, str]:
        """``{prompt_id: left_side}`` of every pair shown to ``judge``."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT prompt_id, left_side FROM layouts WHERE judge = ?", (judge,)
            ).fetchall()
        return dict(rows)

    @staticmethod
    def _votes(db: sqlite3.Connection, where: str, arguments: tuple) -> list[Vote]:
        rows = db.execute(
            "SELECT v.judge, v.prompt_id, p.category, v.choice, v.left_side, v.winner, v.cast_at "
            f"FROM votes v JOIN pairs p USING (prompt_id) {where} ORDER BY v.id",
            arguments,
        ).fetchall()
        return [Vote(*row) for row in rows]
