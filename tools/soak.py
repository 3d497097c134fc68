"""Soak test of ``lit-dpo serve``: many clients over loopback for a fixed time, then a SIGTERM.

    python tools/soak.py --short                  # ~30 s on a tiny random model (make test)
    python tools/soak.py --seconds 600            # the embedded SmolLM2, 4-bit, 10 minutes

The script builds a model and an adapter (a tiny random Llama in ``--short``; a seeded random
LoRA on ``--model`` otherwise), starts ``python -m lit_dpo serve`` on 127.0.0.1 only, and:

1. times one long greedy generation (``max_tokens`` = the server's limit), then opens the same
   request streamed, drops it after the first piece of text and times a 1-token request: if the
   dropped stream's generation were not cancelled, that request would wait for it;
2. runs ``--clients`` threads until the time is up (each loop also bounded in count), mixing
   chat completions and streams, streams dropped mid-way, bad JSON, prompts longer than the
   context, unknown models and ``n`` / ``stop`` / ``max_tokens`` edge values, each with the
   statuses the API documents for it;
3. sends the server SIGTERM near the end while the clients go on: from then a request must
   complete, get the documented 503, or be refused (the port or an idle connection closed).

It prints one summary block (requests by status, latency percentiles, tokens/s, the server's
resident memory at start and end, the checks) and exits 1 when a check fails. ``--json`` also
writes the report as JSON. Only the standard library and httpx talk to the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only: the soak never opens a port to the network
GENERATES = frozenset({200, 503})  # 503: the queue is full, or the server is shutting down
PROMPTS = ["What is the capital of France?", "Who wrote Hamlet?", "Name a primary colour."]
# asks for a reply longer than any --max_tokens_limit here, so greedy replies run to the limit
LONG_PROMPT = "Write a long, detailed essay about the history of the Roman Empire."
WORDS = "What is the capital of France ? Paris".split()


@dataclass
class Request:
    """One request of the mix and the statuses the API documents for it."""

    kind: str
    body: dict | str
    expected: frozenset[int]
    stream: bool = False
    drop: bool = False  # the client closes the stream after its first piece of text


@dataclass
class Result:
    kind: str
    status: int | None  # None: no HTTP answer (see ``error``)
    seconds: float
    after_sigterm: bool
    expected: bool
    tokens: int = 0
    stream_end: str = ""  # done | clean (closed without [DONE]) | broken | dropped
    error: str = ""


@dataclass
class Report:
    settings: dict
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    after_sigterm: dict[str, int] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    rss_mib: dict[str, float] = field(default_factory=dict)
    cancel: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    passed: bool = False


def chat(prompt: str, **fields) -> dict:
    return {"model": "policy", "messages": [{"role": "user", "content": prompt}], **fields}


def request_mix(limit: int) -> list[Request]:
    """The requests clients cycle through (each client from its own offset)."""
    ok, stream = frozenset(GENERATES), frozenset(GENERATES)
    oversized = chat(" ".join(WORDS * 2500), max_tokens=4)  # ~20k tokens: past any context here
    return [
        Request("chat", chat(PROMPTS[0], max_tokens=8, temperature=0), ok),
        Request("stream", chat(PROMPTS[1], max_tokens=12, stream=True,
                               stream_options={"include_usage": True}), stream, stream=True),
        Request("chat", chat(PROMPTS[2], max_tokens=6, seed=3, model="reference"), ok),
        Request("drop", chat(PROMPTS[0], max_tokens=limit, temperature=0, stream=True), stream,
                stream=True, drop=True),
        Request("bad_json", '{"model": "policy", "messages": [', frozenset({422})),
        Request("oversized", oversized, frozenset({400})),
        Request("unknown_model", chat(PROMPTS[0], model="gpt-4o"), frozenset({404})),
        Request("edge", chat(PROMPTS[1], n=2), frozenset({422})),
        Request("edge", chat(PROMPTS[1], n=1, max_tokens=1), ok),
        Request("edge", chat(PROMPTS[1], max_tokens=0), frozenset({422})),
        Request("edge", chat(PROMPTS[1], max_tokens=10**9, stop=["."], temperature=0), ok),
        Request("edge", chat(PROMPTS[1], stop=["a", "b", "c", "d", "e"]), frozenset({422})),
        Request("edge", chat(PROMPTS[1], stop=""), frozenset({422})),
        Request("edge", chat(PROMPTS[2], max_tokens=16, stop=[".", "?", "!", "\n"], stream=True),
                stream, stream=True),
        Request("edge", chat(PROMPTS[2], max_completion_tokens=1, stream=True), stream,
                stream=True),
        Request("edge", {"model": "policy", "messages": []}, frozenset({422})),
    ]


def send(client: httpx.Client, url: str, request: Request, sigterm: threading.Event) -> Result:
    """Send one request and classify what came back."""
    body = request.body if isinstance(request.body, str) else json.dumps(request.body)
    after = sigterm.is_set()
    start = time.perf_counter()
    status, tokens, end, error, failure = None, 0, "", "", None
    try:
        if not request.stream:
            response = client.post(url, content=body)
            status = response.status_code
            if status == 200:
                tokens = response.json()["usage"]["completion_tokens"]
        else:
            with client.stream("POST", url, content=body) as response:
                status = response.status_code
                if status != 200:
                    response.read()
                else:
                    tokens, end = read_stream(response, request.drop)
    except httpx.TransportError as transport_error:
        failure, error = transport_error, f"{type(transport_error).__name__}: {transport_error}"
        end = "broken" if status == 200 else end
    seconds = time.perf_counter() - start
    after = after or sigterm.is_set()  # in flight when SIGTERM came: part of the drain
    if status is None:
        # After SIGTERM uvicorn closes its port and its idle keep-alive connections (it never
        # drops one with a request in progress): a request then may find no listener, or its
        # connection closed before it was read. Not an answer, but not a failure either; a
        # timeout is (a server that hangs).
        expected = after and not isinstance(failure, httpx.TimeoutException)
    else:
        expected = status in request.expected and end != "broken"
    return Result(request.kind, status, seconds, after, expected, tokens, end, error)


def read_stream(response: httpx.Response, drop: bool) -> tuple[int, str]:
    """Read server-sent events: (completion tokens, how the stream ended)."""
    tokens, last = 0, ""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        last = line[len("data: ") :]
        if last == "[DONE]":
            return tokens, "done"
        event = json.loads(last)
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        choices = event.get("choices") or [{}]
        if drop and choices[0].get("delta", {}).get("content"):
            return tokens, "dropped"  # leaving the with-block closes the connection
    return tokens, "clean"


def client_loop(url: str, mix: list[Request], offset: int, until: float, stop: threading.Event,
                sigterm: threading.Event, max_requests: int, timeout: float) -> list[Result]:
    results = []
    with httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"}) as client:
        for i in range(max_requests):
            if time.monotonic() > until or stop.is_set():
                break
            result = send(client, url, mix[(offset + i) % len(mix)], sigterm)
            results.append(result)
            if result.status is None and result.after_sigterm:
                break  # refused: the server is going away
    return results


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS of /proc/<pid>/status) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def build_tiny_model(path: Path, context: int) -> Path:
    """A 2-layer Llama with random weights and a word-level ChatML tokenizer (no download).

    The end-of-turn token's embedding is zero, so greedy replies run to ``max_tokens``: the cancel
    check needs a generation that is long for sure.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    corpus = [*PROMPTS, " ".join(WORDS), "system user assistant Paris London Red Hamlet ."]
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=special))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                      bos_token="<|im_start|>", eos_token="<|im_end|>",
                                      pad_token="<|im_end|>")
    wrapped.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(wrapped), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        bos_token_id=wrapped.bos_token_id, eos_token_id=wrapped.eos_token_id,
        pad_token_id=wrapped.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[wrapped.eos_token_id] = 0
    model.save_pretrained(path)
    wrapped.save_pretrained(path)
    return path


def build_adapter(model: str, path: Path) -> Path:
    """A LoRA adapter with seeded random B (policy != reference), saved with its tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_dpo.sources import resolve_model

    source = resolve_model(model)
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(source), lora)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01)
    peft_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    adapter: Path, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen, str]:
    port = args.port or free_port()
    command = [
        sys.executable, "-m", "lit_dpo", "serve", "--adapter", str(adapter), "--host", HOST,
        "--port", str(port), "--max_tokens_limit", str(args.max_tokens_limit),
        "--queue_size", str(args.queue_size), "--shutdown_timeout", str(args.shutdown_timeout),
    ]
    environment = {k: v for k, v in os.environ.items() if k != "LIT_DPO_API_KEY"}
    environment.setdefault("OMP_NUM_THREADS", "1")
    environment["HF_HUB_OFFLINE"] = "1"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + args.startup_timeout
    while True:
        if process.poll() is not None:
            sys.exit(f"soak: the server exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            process.kill()
            sys.exit(f"soak: the server was not up after {args.startup_timeout}s; see {log}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        time.sleep(0.2)


def cancel_check(url: str, limit: int, timeout: float) -> dict[str, float]:
    """Time a full long generation, then a 1-token request right after dropping the same stream.

    The generation is greedy, so the dropped stream would take as long as the full one.
    """
    long_body = chat(LONG_PROMPT, max_tokens=limit, temperature=0)
    with httpx.Client(timeout=timeout) as client:
        start = time.perf_counter()
        full = client.post(f"{url}/v1/chat/completions", json=long_body).json()
        long_s = time.perf_counter() - start
        with client.stream("POST", f"{url}/v1/chat/completions",
                           json={**long_body, "stream": True}) as response:
            read_stream(response, drop=True)
        start = time.perf_counter()
        short = client.post(f"{url}/v1/chat/completions", json=chat(PROMPTS[1], max_tokens=1))
        short_s = time.perf_counter() - start
    return {
        "long_tokens": full["usage"]["completion_tokens"],
        "long_s": round(long_s, 3),
        "after_drop_s": round(short_s, 3),
        "after_drop_status": short.status_code,
        "bound_s": round(long_s / 4, 3),
    }


def run(args: argparse.Namespace, work: Path) -> Report:
    if args.adapter:
        adapter = Path(args.adapter)
    else:
        model = args.model or str(build_tiny_model(work / "tiny-model", args.max_tokens_limit + 64))
        adapter = build_adapter(model, work / "adapter")
    log = work / "server.log"
    report = Report(settings={
        "model": args.adapter or args.model or "a tiny random Llama",
        "adapter": str(adapter), "clients": args.clients, "seconds": args.seconds,
        "max_tokens_limit": args.max_tokens_limit, "queue_size": args.queue_size,
        "shutdown_timeout": args.shutdown_timeout, "rss_growth_bound_mib": args.rss_growth_mb,
        "server_log": str(log),
    })
    process, url = start_server(adapter, args, log)
    try:
        report.cancel = cancel_check(url, args.max_tokens_limit, args.request_timeout)
        mix = request_mix(args.max_tokens_limit)
        # Warm up every path once before the first memory reading.
        warm = threading.Event()
        with httpx.Client(timeout=args.request_timeout,
                          headers={"Content-Type": "application/json"}) as client:
            warmups = [send(client, f"{url}/v1/chat/completions", r, warm) for r in mix]
        rss_start = rss_mib(process.pid)
        results = load(url, mix, process, args)
        report.rss_mib = {"start": round(rss_start, 1), "end": round(results[1], 1)}
        exit_code = process.wait(timeout=args.shutdown_timeout + 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    summarize(report, warmups + results[0], results[2], exit_code, log, args)
    return report


def load(url: str, mix: list[Request], process: subprocess.Popen,
         args: argparse.Namespace) -> tuple[list[Result], float, float]:
    """The clients, SIGTERM near the end; (results, server RSS just before SIGTERM, seconds)."""
    sigterm, stop = threading.Event(), threading.Event()
    start = time.monotonic()
    drain = max(3.0, 0.1 * args.seconds)
    threads, outputs = [], [[] for _ in range(args.clients)]
    for i in range(args.clients):
        def work(i: int = i) -> None:
            outputs[i] = client_loop(f"{url}/v1/chat/completions", mix, i * 5, start + args.seconds,
                                     stop, sigterm, args.max_requests, args.request_timeout)
        threads.append(threading.Thread(target=work, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, args.seconds - drain))
    rss_end = rss_mib(process.pid)
    seconds = time.monotonic() - start
    sigterm.set()
    process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=drain + args.shutdown_timeout)
    stop.set()  # the server is gone (or should be): no more requests
    for thread in threads:
        thread.join(args.request_timeout + 5)
    return [r for output in outputs for r in output], rss_end, seconds


def summarize(report: Report, results: list[Result], seconds: float, exit_code: int, log: Path,
              args: argparse.Namespace) -> None:
    report.requests = len(results)
    report.by_status = status_counts(results)
    report.after_sigterm = status_counts([r for r in results if r.after_sigterm])
    report.by_kind = dict(sorted(Counter(r.kind for r in results).items()))
    answered = [r.seconds for r in results if r.status and r.stream_end != "dropped"]
    report.latency_s = {f"p{q}": round(percentile(answered, q), 3) for q in (50, 95, 99)}
    tokens = sum(r.tokens for r in results if r.status == 200 and not r.after_sigterm)
    report.tokens_per_s = round(tokens / seconds, 1)
    growth = report.rss_mib["end"] - report.rss_mib["start"]
    report.rss_mib["growth"] = round(growth, 1)
    unexpected = [r for r in results if not r.expected]
    server_errors = [r for r in results if r.status and r.status >= 500 and r.status != 503]
    streams = [r for r in results if r.stream_end]
    log_text = log.read_text()
    cancel = report.cancel
    report.checks = {
        "no 5xx but the documented 503": not server_errors,
        "every answer has a documented status": not unexpected,
        "every stream ends with [DONE] or a clean close": all(
            r.stream_end in ("done", "clean", "dropped") for r in streams),
        "a dropped stream's generation is cancelled": cancel["after_drop_status"] == 200
        and cancel["long_tokens"] >= args.max_tokens_limit // 2
        and cancel["after_drop_s"] < cancel["bound_s"],
        "server memory growth within bound": growth <= args.rss_growth_mb,
        "server exits cleanly after SIGTERM": exit_code in (0, -signal.SIGTERM),
        "server log has no traceback": "Traceback" not in log_text,
    }
    for r in unexpected[:10]:
        report.problems.append(
            f"{r.kind}: status {r.status} stream {r.stream_end or '-'} {r.error}".strip())
    if cancel["long_tokens"] < args.max_tokens_limit // 2:
        report.problems.append(
            f"cancel check: the full greedy reply ended after {cancel['long_tokens']} tokens, "
            f"too short to tell a cancelled generation from a finished one")
    report.passed = all(report.checks.values())


def status_counts(results: list[Result]) -> dict[str, int]:
    """Results by HTTP status; a request with no answer counts as ``refused while stopping``
    after SIGTERM, else as ``transport error``."""
    names = (
        str(r.status) if r.status else "refused while stopping" if r.expected else "transport error"
        for r in results
    )
    return dict(sorted(Counter(names).items()))


def print_report(report: Report) -> None:
    s, c, m = report.settings, report.cancel, report.rss_mib
    lines = [
        f"soak: {s['clients']} clients for {s['seconds']:g} s on {s['model']} "
        f"(--max_tokens_limit {s['max_tokens_limit']}, --queue_size {s['queue_size']}, "
        f"--shutdown_timeout {s['shutdown_timeout']})",
        f"requests: {report.requests}  by status: "
        + ", ".join(f"{k}: {v}" for k, v in report.by_status.items()),
        "sent or in flight after SIGTERM: "
        + (", ".join(f"{k}: {v}" for k, v in report.after_sigterm.items()) or "none"),
        "by kind: " + ", ".join(f"{k}: {v}" for k, v in report.by_kind.items()),
        "latency s: " + "  ".join(f"{k} {v:.3f}" for k, v in report.latency_s.items()),
        f"tokens/s: {report.tokens_per_s:.1f} (completion tokens of 200 answers before SIGTERM)",
        f"server RSS MiB: start {m['start']:.1f}  end {m['end']:.1f}  growth {m['growth']:+.1f}"
        f" (bound {s['rss_growth_bound_mib']:g})",
        f"cancel: full greedy reply {c['long_tokens']} tokens in {c['long_s']:.2f} s; after "
        f"dropping it streamed, a 1-token request took {c['after_drop_s']:.3f} s "
        f"(bound {c['bound_s']:.2f} s)",
        "checks:",
        *(f"  {'PASS' if ok else 'FAIL'} {name}" for name, ok in report.checks.items()),
        *(f"  unexpected: {p}" for p in report.problems),
        f"soak: {'PASS' if report.passed else 'FAIL'}",
    ]
    print("\n".join(lines), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="about 30 s on a tiny random model the script builds (make test)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="how long the clients run (default 600; 15 with --short)")
    parser.add_argument("--clients", type=int, default=None,
                        help="concurrent clients (default 8; 4 with --short)")
    parser.add_argument("--model", default=None,
                        help="base to put a random adapter on (default: the embedded SmolLM2; "
                             "with --short a tiny random Llama)")
    parser.add_argument("--adapter", default=None,
                        help="serve this adapter or merged model folder instead of building one")
    parser.add_argument("--max_tokens_limit", type=int, default=None,
                        help="the server's --max_tokens_limit and the cancel check's reply length "
                             "(default 256; 160 with --short)")
    parser.add_argument("--queue_size", type=int, default=16, help="the server's --queue_size")
    parser.add_argument("--shutdown_timeout", type=int, default=None,
                        help="the server's --shutdown_timeout (default 30; 2 with --short, so "
                             "requests still running when it passes are cancelled)")
    parser.add_argument("--rss_growth_mb", type=float, default=100.0,
                        help="most the server's resident memory may grow, start to end (MiB)")
    parser.add_argument("--max_requests", type=int, default=100_000,
                        help="most requests one client sends")
    parser.add_argument("--request_timeout", type=float, default=600.0,
                        help="seconds a client waits for one answer")
    parser.add_argument("--startup_timeout", type=float, default=300.0,
                        help="seconds to wait for the server to load")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (15.0 if args.short else 600.0)
    args.clients = args.clients or (4 if args.short else 8)
    if args.shutdown_timeout is None:
        args.shutdown_timeout = 2 if args.short else 30
    args.max_tokens_limit = args.max_tokens_limit or (160 if args.short else 256)
    if not args.short and not args.adapter:
        args.model = args.model or "embedded:SmolLM2-135M-Instruct"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lit-dpo-soak-") as tmp:
        report = run(args, Path(tmp))
        log_path = Path(report.settings.pop("server_log"))  # gone with the temporary folder
        print_report(report)
        if not report.passed:
            log = log_path.read_text()
            print(f"the server log's end:\n{log[-3000:]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
