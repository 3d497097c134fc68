"""The AI judge over real HTTP.

The protocol against ``lit-dpo serve`` on the embedded SmolLM2 (its verdicts are noise; the
requests, both orders and the cache are real), and the failure paths against a small scripted
server on 127.0.0.1 (http.server in a thread) that answers what each test needs: an unparseable
verdict, a 503 and a 429 to retry, errors that do not go away, a key to check. A dead endpoint is a
free port nobody listens on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import make_adapter, torch_threads

from lit_dpo.cli import main
from lit_dpo.compare.ai_judge import MAX_TOKENS, AIJudge, JudgeError, Pair
from lit_dpo.compare.pairwise import DEFAULT_TEMPLATE

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = "{prompt}|{answer_a}|{answer_b}"
STARTUP_S = 180
PROMPTS = ["What is the capital of France?", "Name a primary colour."]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scripted:
    """What the scripted server saw, and how it answers: ``answer(question) -> (status, body,
    headers)``, where the body is the reply text of a 200 or the error message of anything else."""

    def __init__(self, answer: Callable[[str], tuple[int, str, dict]], models=("scripted",)):
        self.answer, self.models = answer, list(models)
        self.requests: list[dict] = []


@contextlib.contextmanager
def scripted_server(script: Scripted) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": m} for m in script.models]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append({"headers": dict(self.headers), "body": body})
            status, text, headers = script.answer(body["messages"][-1]["content"])
            if status == 200:
                message = {"role": "assistant", "content": text}
                reply = {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
                self._send(200, reply)
            else:
                self._send(status, {"error": {"message": text}}, headers)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def by_content(question: str) -> tuple[int, str, dict]:
    """A judge that reads: the answer "good" wins in either place; "same" answers pick A
    whatever they hold (position bias); "mumble" answers get a reply with no verdict."""
    _, answer_a, answer_b = question.split("|")
    if "mumble" in (answer_a, answer_b):
        return 200, "Hmm, both have merit.", {}
    if "same" in (answer_a, answer_b):
        return 200, "A", {}
    return 200, json.dumps({"winner": "A" if answer_a == "good" else "B"}), {}


PAIRS = [
    Pair("p1", "x", [{"role": "user", "content": "q1"}], policy="good", reference="bad"),
    Pair("p2", "x", [{"role": "user", "content": "q2"}], policy="same", reference="other"),
    Pair("p3", "y", [{"role": "user", "content": "q3"}], policy="mumble", reference="bad"),
]


def test_both_orders_flips_unparseable_and_cache(tmp_path):
    """p1: the policy's "good" wins in both orders; p2: "A" both times, so it flips with the
    position: a tie, inconsistent; p3: no verdict in either order: unparseable, left out.
    Consistency 1 of 2 parseable pairs. A second pass on the same cache asks nothing."""
    script = Scripted(by_content)
    with scripted_server(script) as url:
        judge = AIJudge(url, "scripted", TEMPLATE, tmp_path / "cache", concurrency=3)
        judge.check()
        run = judge.judge(PAIRS)
        assert len(script.requests) == 6
        asked = sorted(r["body"]["messages"][0]["content"] for r in script.requests)
        assert asked[:2] == ["q1|bad|good", "q1|good|bad"]  # both orders of p1
        assert {r["body"]["temperature"] for r in script.requests} == {0}
        assert [(p.prompt_id, p.winner, p.consistent) for p in run.pairs] == [
            ("p1", "policy", True),
            ("p2", "tie", False),
            ("p3", "unparseable", None),
        ]
        assert run.pairs[1].labels == {"policy_first": "policy", "reference_first": "reference"}
        assert [(v.judge, v.prompt_id, v.winner) for v in run.verdicts()] == [
            ("ai:scripted", "p1", "policy"),
            ("ai:scripted", "p2", "tie"),
        ]
        summary = run.summary()
        assert (summary["consistency_rate"], summary["unparseable"]) == (0.5, 1)
        assert (summary["requests"], summary["cache_hits"]) == (6, 0)
        assert summary["pair_replies"][2]["replies"]["policy_first"] == "Hmm, both have merit."

        again = AIJudge(url, "scripted", TEMPLATE, tmp_path / "cache").judge(PAIRS)
        assert len(script.requests) == 6, "the cached questions were asked again"
        assert (again.requests, again.cache_hits) == (0, 6)
        assert [p.winner for p in again.pairs] == [p.winner for p in run.pairs]
        # a new answer, another model or another template is a new question
        changed = [Pair("p1", "x", PAIRS[0].messages, policy="good!", reference="bad")]
        AIJudge(url, "scripted", TEMPLATE, tmp_path / "cache").judge(changed)
        AIJudge(url, "scripted", TEMPLATE + " ", tmp_path / "cache").judge(PAIRS[:1])
        assert len(script.requests) == 6 + 2 + 2


def test_the_reply_cap_is_sent_and_keys_the_cache(tmp_path):
    """The default cap (512 tokens) is what every request carried before it was a setting, so its
    cached verdicts stay valid; another cap asks again, since a cut reply may lose its verdict."""
    script = Scripted(by_content)
    with scripted_server(script) as url:
        AIJudge(url, "scripted", TEMPLATE, tmp_path).judge(PAIRS[:1])
        assert [r["body"]["max_tokens"] for r in script.requests] == [MAX_TOKENS] * 2 == [512] * 2
        run = AIJudge(url, "scripted", TEMPLATE, tmp_path, max_tokens=8).judge(PAIRS[:1])
        assert [r["body"]["max_tokens"] for r in script.requests[2:]] == [8, 8]
        assert (run.requests, run.cache_hits) == (2, 0)
        again = AIJudge(url, "scripted", TEMPLATE, tmp_path, max_tokens=8).judge(PAIRS[:1])
        assert (again.requests, again.cache_hits) == (0, 2)


def test_503_and_429_are_retried_with_backoff(tmp_path):
    replies = [
        (503, "the server is busy", {"Retry-After": "0"}),
        (429, "slow down", {}),
        (200, '{"winner": "A"}', {}),
        (200, '{"winner": "B"}', {}),
    ]
    script = Scripted(lambda _: replies.pop(0))
    with scripted_server(script) as url:
        judge = AIJudge(url, "scripted", TEMPLATE, tmp_path, concurrency=1, backoff_s=0.01)
        run = judge.judge(PAIRS[:1])
    assert len(script.requests) == 4 and replies == []
    assert (run.requests, run.retries) == (4, 2)
    assert run.pairs[0].winner == "policy" and run.pairs[0].consistent


def test_errors_that_stay_end_the_run_with_one_line(tmp_path):
    script = Scripted(lambda _: (500, "out of memory", {}))
    with scripted_server(script) as url:
        judge = AIJudge(
            url, "scripted", TEMPLATE, tmp_path, concurrency=1, retries=2, backoff_s=0.01
        )
        with pytest.raises(JudgeError) as error:
            judge.judge(PAIRS[:1])
        assert str(error.value) == (
            f"--judge_url {url}: the judge request failed after 3 tries (500: out of memory)"
        )
        assert len(script.requests) == 3  # the other order was never asked
        with pytest.raises(JudgeError, match="'nope': .* does not serve it; it serves: scripted"):
            AIJudge(url, "nope", TEMPLATE, tmp_path).check()
    # nothing listens there
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(JudgeError, match=re.escape(f"--judge_url {dead}: no judge server")):
        AIJudge(dead, "m", TEMPLATE, tmp_path).check()
    with pytest.raises(JudgeError, match="no judge server answers there"):
        AIJudge(dead, "m", TEMPLATE, tmp_path, retries=1, backoff_s=0.01).judge(PAIRS[:1])
    unauthorized = Scripted(lambda _: (401, "bad key", {}), models=())
    with scripted_server(unauthorized) as url:
        with pytest.raises(JudgeError, match="refused the request .401: bad key.; set LIT_DPO"):
            AIJudge(url, "m", TEMPLATE, tmp_path).judge(PAIRS[:1])


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


def compare_args(adapter: Path, root: Path, url: str, model: str, *extra: str) -> list[str]:
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return [
        "compare",
        f"--adapter={adapter}",
        f"--prompts={prompts}",
        "--edge_cases=false",
        "--val_size=0",
        "--max_new_tokens=6",
        "--max_length=96",
        f"--judge_url={url}",
        f"--judge_model={model}",
        f"--judge_cache={root / 'cache'}",
        f"--out={root / 'out'}",
        *extra,
    ]


def run_cli(args: list[str]) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), torch_threads(1):
        main(args)
    return stdout.getvalue()


def test_compare_cli_sends_the_key_and_never_writes_it(
    tiny_adapter, tmp_path, monkeypatch, capsys, caplog
):
    """The judge always answers A: each verdict flips with the order, so every pair is a tie and
    position consistency is 0. The key goes in the header of every request and nowhere else."""
    key = "sekrit-key-123"
    monkeypatch.setenv("LIT_DPO_JUDGE_API_KEY", key)
    script = Scripted(lambda _: (200, '{"winner": "A"}', {}))
    with scripted_server(script) as url:
        stdout = run_cli(compare_args(tiny_adapter, tmp_path, url, "scripted"))
        assert len(script.requests) == 4
        assert {r["headers"]["Authorization"] for r in script.requests} == {f"Bearer {key}"}
        # the shipped template, with the prompt and both answers in it
        question = script.requests[0]["body"]["messages"][0]["content"]
        assert question.startswith(DEFAULT_TEMPLATE.read_text()[:40]) and "[Answer B]" in question
        with pytest.raises(SystemExit) as exit_info:
            main(compare_args(tiny_adapter, tmp_path, url, "gpt-9"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--judge_model 'gpt-9': " in err and "it serves: scripted" in err
    assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]]
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert report["ai_judge"]["consistency_rate"] == 0.0
    assert [v["winner"] for v in report["verdicts"]] == ["tie", "tie"]
    assert "win rate of policy, ai:scripted (2 pairs)" in stdout
    assert "0.50 [" in stdout and "position consistency, ai:scripted" in stdout
    written = [p.read_text() for p in (tmp_path / "out").iterdir()]
    written += [p.read_text() for p in (tmp_path / "cache").iterdir()]
    for text in [*written, stdout, err, caplog.text]:
        assert key not in text


def test_compare_cli_fails_fast_on_a_dead_endpoint(tiny_adapter, tmp_path, capsys):
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(SystemExit) as exit_info:
        main(compare_args(tiny_adapter, tmp_path, dead, "m"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lit-dpo: error: --judge_url {dead}: no judge server answers there")
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(
            compare_args(
                tiny_adapter,
                tmp_path,
                dead,
                "m",
                "--judge_template=/no/such.txt",
                "--judge_concurrency=0",
                "--judge_max_tokens=0",
            )
        )
    err = capsys.readouterr().err
    assert "--judge_template /no/such.txt: no such file" in err and "--judge_concurrency" in err
    assert "--judge_max_tokens must be at least 1, got 0" in err


@contextlib.contextmanager
def served_smollm2(log: Path) -> Iterator[str]:
    """``lit-dpo serve`` of the embedded SmolLM2 on a free loopback port, replies capped."""
    from lit_dpo.sources import DEFAULT_MODEL, resolve_model

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "lit_dpo",
        "serve",
        "--adapter",
        resolve_model(DEFAULT_MODEL),
        "--quantization",
        "none",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max_tokens_limit",
        "12",
    ]
    environment = {k: v for k, v in os.environ.items() if k != "LIT_DPO_API_KEY"}
    environment.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server not up:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/health", timeout=2)
                break
            time.sleep(0.2)
        yield f"{url}/v1"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_compare_judged_by_lit_dpo_serve(tiny_adapter, tmp_path):
    """Two prompts, both orders each: 4 chat completions in the server's request log; the
    rerun answers all 4 from the cache and the log gains none."""
    log = tmp_path / "serve.log"
    posts = re.compile(r"POST /v1/chat/completions 200 ")
    with served_smollm2(log) as url:
        stdout = run_cli(compare_args(tiny_adapter, tmp_path, url, "policy"))
        first = json.loads((tmp_path / "out" / "compare.json").read_text())
        # the server logs a request once it has answered it
        deadline = time.monotonic() + 10
        while len(posts.findall(log.read_text())) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(posts.findall(log.read_text())) == 4, log.read_text()[-2000:]
        run_cli(compare_args(tiny_adapter, tmp_path, url, "policy"))
        second = json.loads((tmp_path / "out" / "compare.json").read_text())
        time.sleep(0.5)
        assert len(posts.findall(log.read_text())) == 4, "the rerun asked the server again"
        with pytest.raises(JudgeError, match="'nope': .* it serves: policy"):
            AIJudge(url, "nope", TEMPLATE, tmp_path).check()
    judged = first["ai_judge"]
    assert (judged["pairs"], judged["requests"], judged["cache_hits"]) == (2, 4, 0)
    assert (second["ai_judge"]["requests"], second["ai_judge"]["cache_hits"]) == (0, 4)
    for pair in judged["pair_replies"]:
        assert set(pair["replies"]) == {"policy_first", "reference_first"}
        assert all(isinstance(reply, str) for reply in pair["replies"].values())
    # whatever SmolLM2 said, each pair is counted once: a verdict or unparseable
    assert len(first["verdicts"]) + judged["unparseable"] == 2
    assert second["verdicts"] == first["verdicts"]
    assert "position consistency, ai:policy" in stdout


def test_a_judge_failing_mid_run_keeps_the_answers(tiny_adapter, tmp_path, capsys):
    """The endpoint lists the model but rejects every question: the report is written without
    the AI judge, then the run ends with the server's reason on one line."""
    script = Scripted(lambda _: (400, "the prompt is 9000 tokens but the context is 8192", {}))
    with scripted_server(script) as url:
        with pytest.raises(SystemExit) as exit_info:
            main(compare_args(tiny_adapter, tmp_path, url, "scripted", "--judge_concurrency=1"))
    assert exit_info.value.code == 2
    assert len(script.requests) == 1  # the first refusal stops the rest
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"lit-dpo: error: --judge_url {url}: the judge request failed (400: the prompt is 9000 "
        "tokens but the context is 8192)"
    )
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert len(report["results"]) == 2 and report["ai_judge"] is None
