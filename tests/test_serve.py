"""lit-dpo serve over real HTTP: the server runs in a subprocess on a free loopback port.

The tiny random Llama answers in milliseconds, so these tests cover the API (OpenAI client,
streaming, errors, auth), the one-at-a-time worker (concurrent clients, full queue, shutdown) and
that ``policy`` / ``reference`` are the adapter on / off (and the deprecated ``aligned`` /
``base`` answer as them), in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import torch
from conftest import make_adapter, plain_peft_model

from lit_dpo.cli import main
from lit_dpo.serve.api import APIError, cut_at_stop, final_part
from lit_dpo.serve.app import _served_name
from lit_dpo.serve.worker import Cancelled, Job, Worker, load_served_model

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_TOKENS_LIMIT = 48
PROMPTS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "Is the sun a star?",
    "Name a primary colour.",
    "What is the largest ocean?",
    "How many legs has a spider?",
    "What freezes at 0 C?",
    "What is 2 + 2?",
]
STARTUP_S = 120  # imports and model load; generous because CI machines are shared
REQUEST_S = 60


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def post(self, body: dict | str, headers: dict | None = None) -> httpx.Response:
        content = body if isinstance(body, str) else json.dumps(body)
        headers = {"Content-Type": "application/json", **(headers or {})}
        return httpx.post(
            f"{self.url}/v1/chat/completions", content=content, headers=headers, timeout=REQUEST_S
        )

    def client(self, api_key: str = API_KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=REQUEST_S
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(log: Path, *args: str, env: dict | None = None) -> Iterator[Server]:
    """``python -m lit_dpo serve ARGS`` on 127.0.0.1, stopped with SIGTERM afterwards."""
    port = _free_port()
    command = [sys.executable, "-m", "lit_dpo", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # A key in the developer's own environment must not leak into servers meant to have none.
    environment = {k: v for k, v in os.environ.items() if k != "LIT_DPO_API_KEY"}
    # One thread: on a shared 2-core machine, torch's threads spin against other processes and a
    # token of the tiny model takes 100x longer.
    environment.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})})
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, *args], stdout=out, stderr=subprocess.STDOUT, env=environment
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_S}s:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{server.url}/health", timeout=2)
                break  # any answer, 401 included, means it is up
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_adapter(
        tiny_model_dir, tmp_path_factory.mktemp("serve") / "adapter", r=8, std=0.5, seed=1
    )


@pytest.fixture(scope="module")
def server(adapter_dir) -> Iterator[Server]:
    """The main server: API key from the environment, replies capped at MAX_TOKENS_LIMIT."""
    log = adapter_dir.parent / "server.log"
    limit = str(MAX_TOKENS_LIMIT)
    with running_server(
        log,
        "--adapter",
        str(adapter_dir),
        "--max_tokens_limit",
        limit,
        env={"LIT_DPO_API_KEY": API_KEY},
    ) as running:
        yield running


def chat(prompt: str, model: str = "policy", **fields) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
    return {**body, "max_tokens": 16, **fields}


def prompt_length(model_dir: Path, prompt: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def stream_text(response: httpx.Response) -> tuple[str, list[dict]]:
    """The streamed reply and its chunks, checking the SSE framing on the way."""
    events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events), events
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    return text, chunks


def test_stop_strings_are_cut_and_held_back():
    """'Paris.\\nUser: hi' with stop '\\nUser:' -> 'Paris.'; while streaming 'Paris.\\nUs' the tail
    '\\nUs' may begin the stop, so only 'Paris.' is final."""
    assert cut_at_stop("Paris.\nUser: hi", ["\nUser:"]) == ("Paris.", True)
    assert cut_at_stop("a b c", ["x", "b", "a b"]) == ("", True)  # earliest position wins
    assert cut_at_stop("Paris.", ["\nUser:"]) == ("Paris.", False)
    assert final_part("Paris.\nUs", ["\nUser:"]) == ("Paris.", False)
    assert final_part("Paris.\nUser: hi", ["\nUser:"]) == ("Paris.", True)
    assert final_part("Paris.", []) == ("Paris.", False)


def test_models_and_health(server):
    assert [m.id for m in server.client().models.list()] == ["policy", "reference"]
    health = httpx.get(f"{server.url}/health", headers=AUTH).json()
    assert health["status"] == "ok" and health["models"] == ["policy", "reference"]
    assert health["deprecated_names"] == {"aligned": "policy", "base": "reference"}
    assert health["quantization"] == "nf4" and health["adapter"].endswith("adapter")


def test_openai_client_answers_and_streams(server, tiny_model_dir):
    client = server.client()
    messages = [{"role": "user", "content": PROMPTS[1]}]
    answer = client.chat.completions.create(
        model="policy", messages=messages, max_tokens=12, temperature=0
    )
    text = answer.choices[0].message.content
    assert text and answer.choices[0].message.role == "assistant"
    assert answer.model == "policy" and answer.object == "chat.completion"
    assert answer.usage.prompt_tokens == prompt_length(tiny_model_dir, PROMPTS[1])
    assert answer.choices[0].finish_reason in ("stop", "length")
    if answer.choices[0].finish_reason == "length":
        assert answer.usage.completion_tokens == 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model="policy",
            messages=messages,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == (
        answer.choices[0].finish_reason
    )
    assert chunks[-1].choices == [] and chunks[-1].usage == answer.usage
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_is_server_sent_events_ending_with_done(server):
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=chat(PROMPTS[0], stream=True),
        headers=AUTH,
        timeout=REQUEST_S,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text, chunks = stream_text(response)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert text == server.post(chat(PROMPTS[0]), AUTH).json()["choices"][0]["message"]["content"]


def test_policy_is_adapter_on_and_reference_is_adapter_off(server, adapter_dir, tiny_model_dir):
    """Server answers equal in-process greedy generation with the adapter on / off."""
    from transformers import AutoTokenizer

    model = plain_peft_model(tiny_model_dir, adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def generate(prompt: str) -> str:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=16,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs (see running_server)
    try:
        for prompt in PROMPTS[:3]:
            policy = server.post(chat(prompt), AUTH).json()["choices"][0]["message"]["content"]
            reference_answer = server.post(chat(prompt, "reference"), AUTH).json()
            assert policy == generate(prompt)
            with model.disable_adapter():
                assert reference_answer["choices"][0]["message"]["content"] == generate(prompt)
            assert policy != reference_answer["choices"][0]["message"]["content"]
            assert reference_answer["model"] == "reference"
    finally:
        torch.set_num_threads(threads)


def test_deprecated_names_are_answered_by_policy_and_reference(server):
    """0.1's ``aligned`` and ``base``, for one release: answered by ``policy`` and ``reference``
    (same text, plain and streamed), the name asked for echoed as OpenAI echoes it, not listed,
    and logged as deprecated once per name however often it is used."""
    client = server.client()
    for old, new in (("aligned", "policy"), ("base", "reference")):
        expected = server.post(chat(PROMPTS[5], new), AUTH).json()["choices"][0]["message"]
        for _ in range(2):
            answer = server.post(chat(PROMPTS[5], old), AUTH)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == old
            assert answer.json()["choices"][0]["message"] == expected
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=chat(PROMPTS[5], old, stream=True),
            headers=AUTH,
            timeout=REQUEST_S,
        ) as response:
            text, chunks = stream_text(response)
        assert text == expected["content"] and {c["model"] for c in chunks} == {old}
        via_client = client.chat.completions.create(
            model=old, messages=chat(PROMPTS[5])["messages"], max_tokens=16, temperature=0
        )
        assert via_client.model == old and via_client.choices[0].message.content == text
    assert [m.id for m in client.models.list()] == ["policy", "reference"]

    warnings = {
        old: f"model {old!r} is a deprecated name for {new!r} and stops working in the next "
        f"release; ask for {new!r}"
        for old, new in (("aligned", "policy"), ("base", "reference"))
    }
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = server.log.read_text()
        if all(warning in log for warning in warnings.values()):
            break
        time.sleep(0.1)
    for old, warning in warnings.items():
        assert log.count(warning) == 1, (old, log[-2000:])


def test_stop_seed_and_token_limit(server):
    full = server.post(chat(PROMPTS[1], max_tokens=20), AUTH).json()["choices"][0]["message"]
    words = full["content"].split()
    stop = words[3]
    expected = full["content"][: full["content"].index(stop)]
    stopped = server.post(chat(PROMPTS[1], max_tokens=20, stop=[stop]), AUTH).json()
    assert stopped["choices"][0]["message"]["content"] == expected
    assert stopped["choices"][0]["finish_reason"] == "stop"
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=chat(PROMPTS[1], max_tokens=20, stop=stop, stream=True),
        headers=AUTH,
        timeout=REQUEST_S,
    ) as response:
        text, chunks = stream_text(response)
    assert text == expected and chunks[-1]["choices"][0]["finish_reason"] == "stop"

    capped = server.post(chat(PROMPTS[2], "policy", max_tokens=100_000), AUTH).json()
    assert 1 <= capped["usage"]["completion_tokens"] <= MAX_TOKENS_LIMIT

    def sampled(seed: int) -> str:
        body = chat(PROMPTS[3], temperature=1.0, top_p=0.95, seed=seed, max_tokens=12)
        return server.post(body, AUTH).json()["choices"][0]["message"]["content"]

    assert sampled(7) == sampled(7)
    assert len({sampled(7), sampled(8), sampled(9)}) > 1


def test_bad_requests_are_answered_with_what_is_wrong(server):
    malformed = server.post('{"model": "policy", "messages": [', AUTH)
    assert malformed.status_code == 422
    assert "not valid JSON" in malformed.json()["error"]["message"]

    wrong_types = server.post({"model": "policy", "messages": "hi", "max_tokens": "ten"}, AUTH)
    assert wrong_types.status_code == 422
    error = wrong_types.json()["error"]
    assert "messages" in error["message"] and "max_tokens" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert {tuple(d["loc"]) for d in wrong_types.json()["detail"]} >= {("body", "max_tokens")}

    for field, value in [("temperature", 3), ("stream", "yes"), ("n", 2), ("stop", "")]:
        response = server.post(chat(PROMPTS[0], **{field: value}), AUTH)
        assert response.status_code == 422, field
        assert field in response.json()["error"]["message"]
    robot = chat(PROMPTS[0])
    robot["messages"][0]["role"] = "robot"
    assert "messages.0.role" in server.post(robot, AUTH).json()["error"]["message"]

    too_long = server.post(chat("Hamlet " * 300), AUTH)
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert "256" in too_long.json()["error"]["message"]

    unknown = server.post(chat(PROMPTS[0], "gpt-4"), AUTH)
    assert unknown.status_code == 404
    assert "use one of: policy, reference" in unknown.json()["error"]["message"]
    assert unknown.json()["error"]["code"] == "model_not_found"

    with pytest.raises(openai.BadRequestError, match="context"):
        server.client().chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "Hamlet " * 300}]
        )


def test_api_key_is_required_on_every_request(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        assert server.post(chat(PROMPTS[0]), headers).status_code == 401
        for path in ("/v1/models", "/health"):
            response = httpx.get(f"{server.url}{path}", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="wrong").models.list()


def test_concurrent_clients_match_single_requests(server):
    """8 clients at once (half streaming, both models) get exactly their one-at-a-time answers."""
    requests = [
        chat(prompt, "policy" if i % 4 else "reference", stream=i % 2 == 1, max_tokens=24)
        for i, prompt in enumerate(PROMPTS)
    ]

    def ask(body: dict) -> str:
        if not body["stream"]:
            response = server.post(body, AUTH)
            assert response.status_code == 200, response.text
            return response.json()["choices"][0]["message"]["content"]
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=body,
            headers=AUTH,
            timeout=REQUEST_S,
        ) as response:
            assert response.status_code == 200
            return stream_text(response)[0]

    alone = [ask(body) for body in requests]
    start = threading.Barrier(len(requests))

    def ask_together(body: dict) -> str:
        start.wait(timeout=REQUEST_S)
        return ask(body)

    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(ask_together, requests))
    assert together == alone
    assert len({a for a, r in zip(alone, requests, strict=True) if r["model"] == "policy"}) > 1


def test_each_request_is_logged_with_latency_and_tokens(server):
    server.post(chat(PROMPTS[4], max_tokens=5), AUTH)
    pattern = re.compile(
        r"POST /v1/chat/completions 200 \d+\.\d{3}s model=policy prompt_tokens=\d+ "
        r"completion_tokens=\d+ finish=\w+ queued=\d+\.\d{3}s"
    )
    deadline = time.monotonic() + 10
    while not pattern.search(server.log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log.read_text()
    assert pattern.search(log), log[-2000:]
    assert re.search(r"GET /v1/models 401 \d+\.\d{3}s", log)


def test_full_queue_is_answered_503(adapter_dir, tmp_path):
    """Queue size 1: one request generates, one waits, the others are turned away at once."""
    with running_server(
        tmp_path / "busy.log",
        "--adapter",
        str(adapter_dir),
        "--queue_size",
        "1",
        "--max_tokens_limit",
        "240",
    ) as busy:
        slow = chat(PROMPTS[1], max_tokens=240)
        start = threading.Barrier(6)

        def ask(_: int) -> httpx.Response:
            start.wait(timeout=REQUEST_S)
            return busy.post(slow)

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(ask, range(6)))
        statuses = sorted(r.status_code for r in responses)
        # Exactly 2 succeed when all 6 arrive while the first generates (~0.5 s); the exact
        # bound is checked without timing in test_worker_queue_is_bounded_and_close_cancels.
        assert set(statuses) == {200, 503}, statuses
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.json()["error"]["code"] == "server_busy"
        assert refused.headers["retry-after"] == "1"
        assert busy.post(chat(PROMPTS[0])).status_code == 200  # free again afterwards


def test_shutdown_lets_the_request_in_flight_finish(adapter_dir, tmp_path):
    with running_server(
        tmp_path / "shutdown.log", "--adapter", str(adapter_dir), "--max_tokens_limit", "240"
    ) as server:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(server.post, chat(PROMPTS[1], max_tokens=240))
            deadline = time.monotonic() + REQUEST_S
            while not httpx.get(f"{server.url}/health").json()["busy"]:
                assert time.monotonic() < deadline and not answer.done(), "never started"
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            response = answer.result(timeout=REQUEST_S)
        assert response.status_code == 200
        assert response.json()["usage"]["completion_tokens"] > 0
        # uvicorn ends the process with the signal it got, after shutting down cleanly
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        log = server.log.read_text()
        assert "generation worker stopped; 0 request(s) cancelled" in log


def test_worker_queue_is_bounded_and_close_cancels(adapter_dir):
    """Queue size 1: one job runs, one waits, a third is refused; close cancels both."""
    served = load_served_model(adapter_dir, quantization="none")
    worker = Worker(served, queue_size=1)
    prompt = [served.tokenizer.bos_token_id] * 8

    def job(use_adapter: bool = True) -> Job:
        return Job(
            prompt, max_new_tokens=240, use_adapter=use_adapter, sampling={"do_sample": False}
        )

    running, waiting = job(), job(use_adapter=False)
    worker.submit(running)
    deadline = time.monotonic() + REQUEST_S
    while not worker.busy:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    worker.submit(waiting)
    with pytest.raises(queue.Full):
        worker.submit(job())
    assert worker.close() == 2
    assert isinstance(waiting.result.exception(timeout=REQUEST_S), Cancelled)
    assert running.result.result(timeout=REQUEST_S).completion_tokens < 240
    with pytest.raises(Cancelled):
        worker.submit(job())


def test_merged_model_folder_is_served_alone(tiny_model_dir):
    """A plain transformers folder (lit-dpo export) has no separate reference to serve."""
    served = load_served_model(tiny_model_dir, quantization="none")
    assert served.names == ("policy",) and served.context_length == 256
    assert served.source["model"] == str(tiny_model_dir)
    assert _served_name("aligned", served, set()) == "policy"
    for name in ("reference", "base"):
        with pytest.raises(APIError) as error:
            _served_name(name, served, set())
        assert error.value.status == 404
        assert error.value.message == (
            f"model {name!r} is not served; use one of: policy "
            "(a merged model folder has no reference)"
        )


def test_bad_options_fail_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--adapter", str(tmp_path / "missing"), "--queue_size", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "--queue_size 0" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "--max_tokens_limit" in capsys.readouterr().out


@pytest.mark.slow
def test_smollm2_answers_over_http(tmp_path):
    """The embedded SmolLM2 in 4-bit, with an untrained adapter, answers a factual question."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lit_dpo.sources import DEFAULT_MODEL, resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(DEFAULT_MODEL))
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    del base
    # no --model: the base comes from the adapter's adapter_config.json
    with running_server(tmp_path / "smollm2.log", "--adapter", str(tmp_path / "adapter")) as server:
        client = server.client(api_key="unused")
        start = time.perf_counter()
        answer = client.chat.completions.create(
            model="policy",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        latency = time.perf_counter() - start
    print(f"SmolLM2 nf4: {answer.usage.completion_tokens} tokens in {latency:.2f}s")
    assert "Paris" in answer.choices[0].message.content
