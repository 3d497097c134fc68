"""SIGTERM with more work than --shutdown_timeout allows: every request is answered 200 or 503.

uvicorn cancels the requests still running when its graceful shutdown times out, and a cancelled
request is answered 500 with no body; ``serve`` cancels the generation a little earlier, so the
waiting requests get the documented 503 ``shutting_down`` (found by tools/soak.py).
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import torch
from conftest import make_adapter
from test_serve import PROMPTS, REQUEST_S, chat, running_server
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_requests_past_the_shutdown_timeout_are_answered_503(tiny_model_dir, tmp_path):
    # The end-of-turn embedding zeroed: greedy replies never end early, so 6 replies of 240
    # tokens are far more work than the 1 s the server is given to finish.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.eos_token_id] = 0
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    adapter = make_adapter(tmp_path / "model", tmp_path / "adapter")
    args = ("--adapter", str(adapter), "--max_tokens_limit", "240", "--shutdown_timeout", "1")
    with running_server(tmp_path / "drain.log", *args) as server:
        body = chat(PROMPTS[0], max_tokens=240, temperature=0)
        with ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(server.post, body) for _ in range(6)]
            deadline = time.monotonic() + REQUEST_S
            while httpx.get(f"{server.url}/health").json()["queued"] < 3:
                assert time.monotonic() < deadline, "the requests never queued"
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            responses = [answer.result(timeout=REQUEST_S) for answer in answers]
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "shutting_down"
    log = (tmp_path / "drain.log").read_text()
    assert "Traceback" not in log and "in flight cancelled" in log, log[-2000:]
