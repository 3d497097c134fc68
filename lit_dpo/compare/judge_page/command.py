"""``lit-dpo judge``: people vote, blind, between the reference's and the policy's answers.

It serves the prompts of a ``lit-dpo compare`` folder on a local page: each pair shows the two
answers side by side, in a random left/right order drawn for each judge and recorded, with no
hint which is which. Votes (left, right, tie, skip; undo) are saved in ``votes.sqlite`` beside the
report as they are cast, so a reload or a later session resumes; several judges vote under their
own names; ``/results`` shows the policy's win rate with its 95% Wilson interval per category and
overall, and Cohen's kappa between judges. After every vote ``human_votes.json`` is rewritten
beside ``compare.json`` for the compare report.

    lit-dpo judge --compare runs/compare                 # then open the printed URL
    lit-dpo judge --compare runs/compare --export votes.csv
"""

from __future__ import annotations

from pathlib import Path

from lit_dpo.compare.judge_page.app import JudgeServer
from lit_dpo.compare.judge_page.export import export_votes, write_human_votes
from lit_dpo.compare.judge_page.pairs import load_pairs
from lit_dpo.compare.judge_page.store import VOTES_FILE, VoteStore
from lit_dpo.errors import ConfigError


def judge(compare: str = "runs/compare", port: int = 8765, export: str | None = None) -> None:
    """Serve a blind A/B page where people vote between the reference's and the policy's answers.

    Args:
        compare: the folder ``lit-dpo compare --out`` wrote; the votes are kept there in
            ``votes.sqlite``, and ``human_votes.json`` is written there.
        port: port of the page on 127.0.0.1; 0 takes any free one (the URL is printed).
        export: write every vote so far to this file (``.csv`` or ``.json``) and exit instead
            of serving.

    Raises:
        ConfigError: a bad ``--port`` or ``--export``, or the port is taken.
        DataError: no compare report in ``--compare``, or its votes are on other answers.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 (any free port) to 65535, got {port}")
    if export is not None and Path(export).suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--export {export}: name a .csv or a .json file")
    folder = Path(compare)
    store = VoteStore(folder / VOTES_FILE, load_pairs(folder))
    votes = store.votes()
    write_human_votes(folder, votes)
    if export is not None:
        path = export_votes(export, votes)
        print(f"{len(votes)} votes written to {path}", flush=True)
        return
    try:
        server = JudgeServer(folder, store, port)
    except OSError as error:
        raise ConfigError(
            f"--port {port}: cannot listen on 127.0.0.1 ({error.strerror}); pick another port "
            "or 0 for any free one"
        ) from error
    print(
        f"judge page: {server.url} ({len(store.pairs)} pairs; results at {server.url}results; "
        f"votes in {store.path}); Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        votes = store.votes()
        path = write_human_votes(folder, votes)
        judges = len({vote.judge for vote in votes})
        print(f"\nvotes so far: {len(votes)}, by {judges} judges; {path}", flush=True)
