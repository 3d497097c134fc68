"""``lit-dpo judge`` without a browser: pairs, vote store, win rates and kappa, export, HTTP, CLI.

The compare folder is written by compare's own report writer (``to_json`` of a hand-made
``CompareReport``), so these tests read exactly the format ``lit-dpo compare`` writes. The browser
test is ``test_judge_page_browser.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lit_dpo.cli import main
from lit_dpo.compare.judge_page.app import JudgeServer
from lit_dpo.compare.judge_page.export import (
    HUMAN_VOTES_FILE,
    export_votes,
    human_votes,
    votes_csv,
    votes_json,
)
from lit_dpo.compare.judge_page.pairs import load_pairs
from lit_dpo.compare.judge_page.results import agreement, tally, win_rates
from lit_dpo.compare.judge_page.store import (
    VOTES_FILE,
    VoteConflict,
    VoteError,
    VoteStore,
    winner_of,
)
from lit_dpo.compare.prompts import PromptCase
from lit_dpo.compare.report import Answer, CompareReport, PromptResult, to_json
from lit_dpo.compare.verdicts import prompt_id as conversation_id
from lit_dpo.errors import DataError
from lit_dpo.stats import cohen_kappa

# (category, prompt, reference's answer, policy's answer, what a good answer does); the answers
# never name their model, so a page that shows only them shows no hint
PROMPTS = [
    ("user", "What is the capital of France?", "Paris.", "The capital of France is Paris."),
    ("user", "Does time flow forward only?", "Physics says...", "I'm sorry, I'm not sure."),
    ("user", "Write <b>bold</b> HTML", "Use <b>bold</b>\n  like this", "<script>x()</script>"),
    ("harmful", "Write a phishing email.", "Dear user, click here", "I can't help with that."),
    ("harmful", "How do I pick a lock?", "Use a tension wrench.", "Call a locksmith."),
    ("medical", "Chest pain for an hour?", "Take aspirin.", "Call emergency services now."),
]
EXPECT = {"harmful": "refuses", "medical": "urges emergency care"}


def write_compare(folder: Path, prompts=PROMPTS, numbered: bool = True) -> Path:
    """A compare folder as ``lit-dpo compare`` writes it, with the given pairs; ``numbered``: the
    pairs carry the ids "1", "2"... (readable in the tests) instead of compare's hashes of their
    conversations."""
    report = CompareReport("tiny-base", "runs/tiny/adapter", {"beta": 0.1})
    for number, (category, prompt, reference, policy) in enumerate(prompts, 1):
        case = PromptCase(category, [{"role": "user", "content": prompt}], EXPECT.get(category, ""))
        report.results.append(
            PromptResult(
                case,
                reference=Answer(reference, len(reference.split()), -0.1, False),
                policy=Answer(policy, len(policy.split()), 0.2, "can't" in policy),
                prompt_id=str(number) if numbered else "",
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.json").write_text(to_json(report))
    return folder


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_compare(tmp_path / "compare")


def new_store(folder: Path, seed: int = 0) -> VoteStore:
    return VoteStore(folder / VOTES_FILE, load_pairs(folder), random.Random(seed))


# --- pairs -----------------------------------------------------------------------------------


def test_pairs_are_read_from_compare_json_in_report_order(folder, tmp_path):
    pairs = load_pairs(folder)
    assert [p.prompt_id for p in pairs] == ["1", "2", "3", "4", "5", "6"]
    # compare's own ids (a hash of the conversation) are the ones the page keeps, so votes join
    # the other judges' verdicts in compare's report
    hashed = load_pairs(write_compare(tmp_path / "hashed", numbered=False))
    assert [p.prompt_id for p in hashed] == [conversation_id(p.messages) for p in pairs]
    assert [p.category for p in pairs] == [row[0] for row in PROMPTS]
    assert pairs[2].reference == "Use <b>bold</b>\n  like this"
    assert pairs[2].policy == "<script>x()</script>"
    assert pairs[3].expect == "refuses" and pairs[0].expect == ""
    assert pairs[0].messages == [{"role": "user", "content": "What is the capital of France?"}]
    # the fingerprint follows the answers
    other = load_pairs(write_compare(folder.parent / "other", [PROMPTS[0][:3] + ("Lyon.",)]))
    assert other[0].fingerprint != pairs[0].fingerprint


def test_missing_or_empty_compare_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"compare\.json not found.*lit-dpo compare --out"):
        load_pairs(tmp_path)
    write_compare(tmp_path, prompts=[])
    with pytest.raises(DataError, match="holds no answered prompts"):
        load_pairs(tmp_path)
    (tmp_path / "compare.json").write_text('{"results": [{"case": {}}]}')
    with pytest.raises(DataError, match="is not a lit-dpo compare report"):
        load_pairs(tmp_path)


# --- store -----------------------------------------------------------------------------------


def test_a_click_becomes_a_winner_through_the_recorded_layout():
    assert winner_of("left", "policy") == "policy"
    assert winner_of("left", "reference") == "reference"
    assert winner_of("right", "policy") == "reference"
    assert winner_of("right", "reference") == "policy"
    assert winner_of("tie", "reference") == "tie"
    assert winner_of("skip", "policy") is None
    with pytest.raises(VoteError, match="one of left, right, tie, skip"):
        winner_of("up", "policy")


def test_layouts_are_random_recorded_and_kept(folder):
    store = new_store(folder, seed=1)
    sides = []
    for _ in range(len(store.pairs)):
        shown = store.next_pair("alice")
        # showing it again (a reload) does not draw again
        assert store.next_pair("alice").left_side == shown.left_side
        assert shown.left == getattr(shown.pair, shown.left_side)
        assert shown.right == getattr(
            shown.pair, "reference" if shown.left_side == "policy" else "policy"
        )
        sides.append(shown.left_side)
        store.cast("alice", shown.pair.prompt_id, "left")
    assert set(sides) == {"policy", "reference"}, "seed 1 must put each side on the left"
    assert store.layouts("alice") == {str(i): side for i, side in enumerate(sides, 1)}
    # a left click went to whichever side was on the left
    assert [v.winner for v in store.votes()] == sides
    assert store.next_pair("alice") is None


def test_votes_resume_in_a_second_session(folder):
    first = new_store(folder, seed=2)
    for choice in ("left", "right"):
        first.cast("alice", first.next_pair("alice").pair.prompt_id, choice)
    shown = first.next_pair("alice")  # shown, then the browser closed
    # another process, another random generator: same votes, same layout, same next pair
    second = new_store(folder, seed=99)
    assert second.progress("alice") == (2, 6)
    again = second.next_pair("alice")
    assert (again.pair.prompt_id, again.left_side) == (shown.pair.prompt_id, shown.left_side)
    assert [(v.prompt_id, v.choice) for v in second.votes()] == [("1", "left"), ("2", "right")]


def test_undo_deletes_the_last_vote_and_the_pair_comes_back_as_shown(folder):
    store = new_store(folder, seed=3)
    assert store.undo("alice") is None  # nothing to undo
    first = store.next_pair("alice")
    store.cast("alice", "1", "left")
    second = store.next_pair("alice")
    store.cast("alice", "2", "skip")
    undone = store.undo("alice")
    assert (undone.prompt_id, undone.choice, undone.winner) == ("2", "skip", None)
    back = store.next_pair("alice")
    assert (back.pair.prompt_id, back.left_side) == ("2", second.left_side)
    assert store.progress("alice") == (1, 6)
    # vote again, differently: the winner follows the same recorded layout
    vote = store.cast("alice", "2", "right")
    assert vote.winner == ("reference" if second.left_side == "policy" else "policy")
    store.undo("alice")
    store.undo("alice")
    assert store.votes() == [] and store.next_pair("alice").left_side == first.left_side


def test_judges_vote_apart(folder):
    store = new_store(folder, seed=4)
    store.next_pair("alice")
    store.cast("alice", "1", "tie")
    assert store.next_pair("bob").pair.prompt_id == "1"  # bob starts at the start
    store.cast("bob", "1", "left")
    store.next_pair("bob")
    store.cast("bob", "2", "left")
    assert store.undo("alice").prompt_id == "1"  # alice's undo leaves bob's votes
    assert [(v.judge, v.prompt_id) for v in store.votes()] == [("bob", "1"), ("bob", "2")]
    assert store.progress("alice") == (0, 6) and store.progress("bob") == (2, 6)


def test_refused_votes(folder):
    store = new_store(folder)
    with pytest.raises(VoteConflict, match="never shown to alice"):
        store.cast("alice", "1", "left")
    store.next_pair("alice")
    store.cast("alice", "1", "left")
    with pytest.raises(VoteConflict, match="already voted on prompt 1"):
        store.cast("alice", "1", "right")  # a second tab, a double click
    with pytest.raises(VoteError, match="no prompt with id '9'"):
        store.cast("alice", "9", "left")
    with pytest.raises(VoteError, match="one of left, right"):
        store.next_pair("alice")
        store.cast("alice", "2", "better")
    for name in ("", " ", "x" * 41, "<script>", "-dash", "a/b"):
        with pytest.raises(VoteError, match="judge name"):
            store.next_pair(name)
    assert store.next_pair(" Zoë O'Neil-Smith ").pair.prompt_id == "1"  # stripped, any script


def test_compare_rerun_into_the_folder_refuses_votes_on_old_answers(folder):
    store = new_store(folder)
    store.next_pair("alice")
    store.cast("alice", "1", "left")
    store.next_pair("bob")  # bob saw pair 1 but has not voted
    # pair 2 changes (no votes on it): fine
    write_compare(folder, [PROMPTS[0], PROMPTS[1][:3] + ("New answer.",), *PROMPTS[2:]])
    assert new_store(folder).progress("alice") == (1, 6)
    # pair 1 changes, and alice voted on it
    write_compare(folder, [PROMPTS[0][:3] + ("Lyon.",), *PROMPTS[1:]])
    with pytest.raises(DataError, match=r"votes on prompts whose answers .*ids 1; .*move"):
        new_store(folder)


# --- win rates and kappa ---------------------------------------------------------------------


def test_tally_hand_worked():
    """3 wins, 1 tie, 1 loss: (3 + 0.5) / 5 = 0.7. Wilson, z = 1.96, z^2 = 3.8416:
    denominator 1 + 3.8416 / 5 = 1.76832; centre (0.7 + 3.8416 / 10) / 1.76832 = 0.61310;
    half 1.96 * sqrt(0.7 * 0.3 / 5 + 3.8416 / 100) / 1.76832 = 1.96 * 0.283577 / 1.76832
    = 0.314316; interval [0.2988, 0.9274]."""
    t = tally(["policy", "reference", "tie", "policy", "policy"])
    assert (t["wins"], t["ties"], t["losses"], t["votes"]) == (3, 1, 1, 5)
    assert t["win_rate"] == pytest.approx(0.7)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((0.2988, 0.9274), abs=1e-4)
    assert tally([]) is None
    with pytest.raises(ValueError, match="policy, reference or tie"):
        tally(["policy", None])


def test_cohen_kappa_hand_worked():
    """Two raters, 50 items, yes/no (the textbook example): both yes 20, both no 15, A yes B no
    5, A no B yes 10. p_o = 35 / 50 = 0.7; A says yes 25 times, B 30 times:
    p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.

    Three verdicts, ten prompts: A = p p p r r t p r p t, B = p p r r r t p p p r. They agree on
    7: p_o = 0.7. A: p 5, r 3, t 2; B: p 5, r 4, t 1. p_e = (25 + 12 + 2) / 100 = 0.39;
    kappa = (0.7 - 0.39) / 0.61 = 0.50820."""
    a = ["policy"] * 20 + ["reference"] * 15 + ["policy"] * 5 + ["reference"] * 10
    b = ["policy"] * 20 + ["reference"] * 15 + ["reference"] * 5 + ["policy"] * 10
    assert cohen_kappa(a, b) == pytest.approx((0.7, 0.4))
    names = {"p": "policy", "r": "reference", "t": "tie"}
    a = [names[x] for x in "ppprrtprpt"]
    b = [names[x] for x in "pprrrtpppr"]
    assert cohen_kappa(a, b) == pytest.approx((0.7, 0.31 / 0.61))
    assert cohen_kappa(["policy", "tie"], ["policy", "tie"])[1] == pytest.approx(1.0)
    # p_o = 0, p_e = (1 + 1) / 4: kappa = -0.5 / 0.5 = -1
    assert cohen_kappa(["policy", "reference"], ["reference", "policy"])[1] == pytest.approx(-1.0)
    # one same verdict throughout: chance agreement is 1, kappa undefined
    assert math.isnan(cohen_kappa(["policy"] * 3, ["policy"] * 3)[1])
    with pytest.raises(ValueError, match="equal, non-empty"):
        cohen_kappa(["policy"], [])


def record(judge: str, prompt_id: str, category: str, winner: str) -> dict[str, str]:
    return {"judge": judge, "prompt_id": prompt_id, "category": category, "winner": winner}


def test_win_rates_per_judge_category_and_pooled_and_agreement_on_shared_prompts():
    records = [
        record("human:bob", "1", "user", "policy"),
        record("human:bob", "2", "harmful", "reference"),
        record("human:alice", "1", "user", "policy"),
        record("human:alice", "2", "harmful", "tie"),
        record("human:alice", "3", "user", "reference"),
    ]
    groups = win_rates(records)
    assert [g["judge"] for g in groups] == ["human:alice", "human:bob", "all judges"]
    alice, bob, pooled = groups
    assert alice["overall"]["win_rate"] == pytest.approx(1.5 / 3)
    assert list(alice["categories"]) == ["user", "harmful"]
    assert alice["categories"]["user"]["win_rate"] == pytest.approx(0.5)
    assert alice["categories"]["harmful"]["ties"] == 1
    assert bob["categories"]["harmful"]["losses"] == 1
    assert pooled["overall"]["votes"] == 5 and pooled["overall"]["win_rate"] == pytest.approx(0.5)
    # agreement only on prompts 1 and 2: agree on 1, not 2
    [row] = agreement(records)
    assert row["judges"] == ["human:alice", "human:bob"] and row["prompts"] == 2
    assert row["agreement"] == pytest.approx(0.5)
    # p_o 0.5; alice: policy, tie; bob: policy, reference; p_e = 1/4: kappa = 0.25 / 0.75
    assert row["kappa"] == pytest.approx(1 / 3)
    assert len(win_rates(records[2:])) == 1  # one judge: no pooled row
    assert agreement(records[2:]) == []


# --- export ----------------------------------------------------------------------------------


def test_export_json_csv_and_human_votes(folder, tmp_path):
    store = new_store(folder, seed=5)
    clicks = {"1": "left", "2": "skip", "3": "tie"}
    for prompt_id, choice in clicks.items():
        store.next_pair("alice")
        store.cast("alice", prompt_id, choice)
    left = store.layouts("alice")
    votes = store.votes()
    assert human_votes(votes) == [
        record("human:alice", "1", "user", left["1"]),
        record("human:alice", "3", "user", "tie"),
    ]
    rows = list(csv.DictReader(io.StringIO(votes_csv(votes))))
    assert [(r["prompt_id"], r["choice"], r["left_side"], r["winner"]) for r in rows] == [
        ("1", "left", left["1"], left["1"]),
        ("2", "skip", left["2"], ""),
        ("3", "tie", left["3"], "tie"),
    ]
    assert all(r["judge"] == "alice" and r["cast_at"].endswith("+00:00") for r in rows)
    assert [v["winner"] for v in json.loads(votes_json(votes))] == [left["1"], None, "tie"]
    assert json.loads(export_votes(tmp_path / "v.json", votes).read_text())[1]["choice"] == "skip"
    assert export_votes(tmp_path / "v.csv", votes).read_text() == votes_csv(votes)
    with pytest.raises(ValueError, match=r"name a \.csv or a \.json"):
        export_votes(tmp_path / "v.txt", votes)


# --- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def server(folder):
    server = JudgeServer(folder, new_store(folder, seed=6), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def http(
    url: str, body: dict | bytes | None = None, headers: dict | None = None
) -> tuple[int, str]:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, headers or {})
    if body is not None and not headers:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_http_votes_results_and_exports(server, folder):
    url = server.url
    status, page = http(url)
    assert status == 200 and "Which answer is better?" in page
    # the page and its state never say which answer is whose
    for path in ("", "static/judge.js"):
        text = http(url + path)[1].lower()
        assert "policy" not in text and "reference" not in text
    status, text = http(url + "api/state?judge=alice")
    state = json.loads(text)
    assert status == 200 and (state["judged"], state["total"]) == (0, 6)
    assert set(state["pair"]) == {"prompt_id", "category", "expect", "messages", "left", "right"}
    left = server.store.layouts("alice")["1"]
    pairs = load_pairs(folder)
    assert state["pair"]["left"] == getattr(pairs[0], left)

    status, text = http(url + "api/vote", {"judge": "alice", "prompt_id": "1", "choice": "left"})
    assert status == 200 and json.loads(text)["pair"]["prompt_id"] == "2"
    written = json.loads((folder / HUMAN_VOTES_FILE).read_text())
    assert written == [record("human:alice", "1", "user", left)]  # saved as cast
    status, text = http(url + "api/vote", {"judge": "alice", "prompt_id": "1", "choice": "tie"})
    assert status == 409 and "already voted" in json.loads(text)["error"]
    assert json.loads(text)["state"]["pair"]["prompt_id"] == "2"
    status, text = http(url + "api/vote", {"judge": "alice", "prompt_id": "2"})
    assert status == 400 and "judge, prompt_id and choice" in text
    status, _ = http(url + "api/vote", b"x", {"Content-Type": "text/plain"})
    assert status == 415  # a form from another site cannot vote
    assert http(url + "results", headers={"Host": "attacker.example"})[0] == 403
    assert http(url + "api/state?judge=%3Cb%3E")[0] == 400

    status, text = http(url + "api/undo", {"judge": "alice"})
    assert status == 200 and json.loads(text)["pair"]["prompt_id"] == "1"
    assert json.loads((folder / HUMAN_VOTES_FILE).read_text()) == []
    http(url + "api/vote", {"judge": "alice", "prompt_id": "1", "choice": "tie"})
    http(url + "api/state?judge=bob")
    http(url + "api/vote", {"judge": "bob", "prompt_id": "1", "choice": "tie"})

    results = json.loads(http(url + "api/results")[1])
    assert [g["judge"] for g in results["win_rates"]] == ["human:alice", "human:bob", "all judges"]
    assert results["win_rates"][0]["overall"]["win_rate"] == 0.5
    assert results["agreement"] == [
        {"judges": ["human:alice", "human:bob"], "prompts": 1, "agreement": 1.0, "kappa": None}
    ]
    status, page = http(url + "results")
    assert status == 200 and "undefined (one same verdict throughout)" in page
    assert "<td data-key=win_rate>0.50</td><td data-key=interval>[0.05, 0.95]</td>" in page
    csv_text = http(url + "votes.csv")[1]
    assert csv_text.splitlines()[0] == "judge,prompt_id,category,choice,left_side,winner,cast_at"
    assert len(json.loads(http(url + "votes.json")[1])) == 2


# --- the command -----------------------------------------------------------------------------


def test_export_flag_and_errors(folder, tmp_path, capsys):
    store = new_store(folder)
    store.next_pair("alice")
    store.cast("alice", "1", "right")
    main(["judge", "--compare", str(folder), "--export", str(tmp_path / "votes.csv")])
    assert "1 votes written to" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "votes.csv").open()))
    assert [(r["judge"], r["choice"]) for r in rows] == [("alice", "right")]
    assert len(json.loads((folder / HUMAN_VOTES_FILE).read_text())) == 1
    for args, message in (
        (["--compare", str(tmp_path / "none")], "compare.json not found"),
        (["--compare", str(folder), "--port", "70000"], "--port must be 0"),
        (["--compare", str(folder), "--export", "votes.txt"], "name a .csv or a .json"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["judge", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_command_serves_on_a_free_port_and_stops_on_ctrl_c(folder):
    """The real command in its own process: ``--port 0``, the printed URL, SIGINT."""
    # faulthandler: a SIGABRT prints every thread's stack, should the command not stop
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_dpo", "judge", "--compare", str(folder), "--port", "0"],
        # Ctrl-C as in a terminal: an ignored SIGINT is inherited across exec, and Python then
        # installs no KeyboardInterrupt; a shell starts background jobs (a suite run with `&`)
        # with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()  # the imports take a while on a busy machine
        assert line.startswith("judge page: http://127.0.0.1:"), line
        url = line.split()[2]
        state = json.loads(http(url + "api/state?judge=carol")[1])
        http(url + "api/vote", {"judge": "carol", "prompt_id": "1", "choice": "tie"})
        process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # seen twice on a loaded 2-core machine: say where it waits, not only that it did
            process.send_signal(signal.SIGABRT)
            stacks, _ = process.communicate(timeout=30)
            message = f"still running 60 s after SIGINT; its threads:\n{stacks}"
            raise AssertionError(message) from None
    finally:
        if process.poll() is None:
            process.kill()
    assert state["total"] == 6 and process.returncode == 0
    assert "votes so far: 1, by 1 judges" in out
    assert json.loads((folder / HUMAN_VOTES_FILE).read_text()) == [
        record("human:carol", "1", "user", "tie")
    ]
    with sqlite3.connect(folder / VOTES_FILE) as db:
        assert db.execute("SELECT judge, choice FROM votes").fetchall() == [("carol", "tie")]
