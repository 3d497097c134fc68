"""An AI judge over any OpenAI-compatible chat endpoint (``POST {url}/chat/completions``).

For every (prompt, policy answer, reference answer) it asks the judge model the pairwise question
of :mod:`lit_dpo.compare.pairwise` twice, once in each order, at temperature 0, and combines the
two parsed verdicts into one. Requests run a few at a time (``concurrency``), each with a
timeout; 429 and 5xx answers, timeouts and dropped connections are retried with exponential
backoff (or the server's ``Retry-After``). Other failures stop the run with one line that says
what to fix: an endpoint nobody answers at, a model it does not serve, a key it refuses.

Replies are cached on disk, one JSON line per question, keyed by the judge model, the template,
the conversation and both answers in their order: a rerun, or a second adapter compared against
the same reference, asks only what was never asked. The API key comes from the environment
(``LIT_DPO_JUDGE_API_KEY``) and goes nowhere but the ``Authorization`` header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lit_dpo.compare.pairwise import (
    ORDERS,
    UNPARSEABLE,
    combine_orders,
    conversation_text,
    parse_verdict,
    render,
    side_of,
)
from lit_dpo.compare.verdicts import Verdict
from lit_dpo.errors import LitDPOError
from lit_dpo.progress import track

log = logging.getLogger(__name__)

API_KEY_ENV = "LIT_DPO_JUDGE_API_KEY"
DEFAULT_CACHE = "~/.cache/lit-dpo/judge"
CACHE_FILE = "verdicts.jsonl"
# Room for a short reasoning before the verdict; the template asks for the JSON alone.
MAX_TOKENS = 512
# Bump when what a cached reply means changes (the request's fields, the parser's input).
CACHE_VERSION = 1
MAX_BACKOFF_S = 60.0


class JudgeError(LitDPOError):
    """The judge endpoint cannot be used: down, unknown model, refused key, bad replies."""


@dataclass
class Pair:
    """What the judge compares: one prompt and the two models' answers."""

    prompt_id: str
    category: str
    messages: list[dict[str, str]]
    policy: str
    reference: str


@dataclass
class JudgedPair:
    """One pair's outcome: the reply and verdict of each order, and the combined verdict."""

    prompt_id: str
    category: str
    replies: dict[str, str]
    labels: dict[str, str]
    winner: str
    consistent: bool | None


@dataclass
class JudgeRun:
    """Everything one AI-judge pass produced, for the report."""

    model: str
    pairs: list[JudgedPair] = field(default_factory=list)
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0

    def verdicts(self) -> list[Verdict]:
        """The combined verdicts of the parseable pairs, in the common shape."""
        return [
            Verdict(f"ai:{self.model}", p.prompt_id, p.category, p.winner)
            for p in self.pairs
            if p.winner != UNPARSEABLE
        ]

    def summary(self) -> dict[str, object]:
        """Consistency, unparseable pairs, request counts, and each pair's replies and labels
        in both orders (``pair_replies``)."""
        parseable = [p for p in self.pairs if p.consistent is not None]
        consistent = sum(bool(p.consistent) for p in parseable)
        return {
            "judge": f"ai:{self.model}",
            "pairs": len(self.pairs),
            "consistent": consistent,
            "consistency_rate": consistent / len(parseable) if parseable else None,
            "unparseable": len(self.pairs) - len(parseable),
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "pair_replies": [dataclasses.asdict(p) for p in self.pairs],
        }


class VerdictCache:
    """Replies on disk, one JSON line per question; appended as they arrive, so an interrupted
    run keeps what it paid for."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder).expanduser() / CACHE_FILE
        self.replies: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.replies[entry["key"]] = entry["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill: that question is asked again

    def add(self, key: str, reply: str) -> None:
        with self._lock:
            self.replies[key] = reply
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n")


def cache_key(
    model: str,
    template: str,
    prompt: str,
    answer_a: str,
    answer_b: str,
    max_tokens: int = MAX_TOKENS,
) -> str:
    """The cache key of one question: judge model, template, conversation, answers A and B, and
    the reply's length cap where it is not the default (a cut reply may lose its verdict; keys
    written before the cap was a setting stay valid)."""
    fields = [CACHE_VERSION, model, template, prompt, answer_a, answer_b]
    if max_tokens != MAX_TOKENS:
        fields.append(max_tokens)
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


class AIJudge:
    """Ask a chat model which answer is better, over HTTP.

    Args:
        url: the endpoint's base URL, as the OpenAI client takes it (``http://host:8000/v1``).
        model: the model name the endpoint serves.
        template: the pairwise template's text (:func:`lit_dpo.compare.pairwise.load_template`).
        cache: folder of the verdict cache.
        concurrency: requests in flight at once.
        timeout_s: seconds before one request is given up (and retried).
        retries: further tries of a request answered 429 or 5xx, or timed out.
        backoff_s: wait before the first retry; doubled each time, capped at 60 s.
        max_tokens: the longest reply asked for; a judge that answers with the verdict alone
            needs a few tokens, and a small model that rambles spends the whole cap on each
            question.
        api_key: sent as a bearer token; by default ``$LIT_DPO_JUDGE_API_KEY``, else none.
    """

    def __init__(
        self,
        url: str,
        model: str,
        template: str,
        cache: str | Path = DEFAULT_CACHE,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        retries: int = 5,
        backoff_s: float = 1.0,
        max_tokens: int = MAX_TOKENS,
        api_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/chat/completions")
        self.model, self.template, self.max_tokens = model, template, max_tokens
        self.cache = VerdictCache(cache)
        self.concurrency, self.retries, self.backoff_s = concurrency, retries, backoff_s
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self._lock = threading.Lock()
        self._run = JudgeRun(model)
        # set on the first failure that retrying does not fix: the other questions are not asked
        self._stopped = threading.Event()

    def close(self) -> None:
        self._client.close()

    def check(self) -> None:
        """Fail early, before any model loads: the endpoint answers and serves the model.

        ``GET {url}/models`` lists the served models on OpenAI-compatible servers; where it is
        missing (404, 405) the first judge request finds out instead.

        Raises:
            JudgeError: nothing answers at the URL, the key is refused, or the model is not
                among those listed.
        """
        try:
            response = self._client.get(f"{self.url}/models")
        except httpx.TransportError as error:
            raise JudgeError(self._unreachable(error)) from None
        if response.status_code in (401, 403):
            raise JudgeError(self._refused(response))
        if response.status_code != 200:
            return
        try:
            served = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if self.model not in served:
            raise JudgeError(
                f"--judge_model {self.model!r}: {self.url} does not serve it; it serves: "
                f"{', '.join(served) or 'nothing'}"
            )

    def judge(self, pairs: list[Pair]) -> JudgeRun:
        """Judge every pair in both orders; cached questions are not asked again.

        Raises:
            JudgeError: the endpoint failed in a way retrying does not fix.
        """
        run = self._run = JudgeRun(self.model)
        self._stopped.clear()
        questions: dict[str, str] = {}  # cache key -> rendered question
        keys: list[dict[str, str]] = []
        for pair in pairs:
            prompt = conversation_text(pair.messages)
            answers = {
                "policy_first": (pair.policy, pair.reference),
                "reference_first": (pair.reference, pair.policy),
            }
            keys.append({})
            for order in ORDERS:
                key = cache_key(self.model, self.template, prompt, *answers[order], self.max_tokens)
                keys[-1][order] = key
                if key in self.cache.replies:
                    run.cache_hits += 1
                else:
                    questions[key] = render(self.template, prompt, *answers[order])
        if questions:
            self._ask_all(questions)
        for pair, pair_keys in zip(pairs, keys, strict=True):
            replies = {order: self.cache.replies[pair_keys[order]] for order in ORDERS}
            labels = {order: side_of(parse_verdict(replies[order]), order) for order in ORDERS}
            winner, consistent = combine_orders(labels["policy_first"], labels["reference_first"])
            run.pairs.append(
                JudgedPair(pair.prompt_id, pair.category, replies, labels, winner, consistent)
            )
        return run

    def _ask_all(self, questions: dict[str, str]) -> None:
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self._ask, text): key for key, text in questions.items()}
            what = f"judging with {self.model}"
            for future in track(as_completed(futures), what, len(futures), "questions"):
                # the first failure raises here; the finally drops the questions not yet asked
                self.cache.add(futures[future], future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _ask(self, question: str) -> str:
        """One question's reply text, retried on 429, 5xx and transport failures."""
        if self._stopped.is_set():
            raise JudgeError("not asked: an earlier judge request failed")
        try:
            return self._ask_with_retries(question)
        except JudgeError:
            self._stopped.set()
            raise

    def _ask_with_retries(self, question: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        url = f"{self.url}/chat/completions"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as error:
                if last:
                    raise JudgeError(self._unreachable(error)) from None
                self._wait(attempt, None, f"{type(error).__name__}")
                continue
            with self._lock:
                self._run.requests += 1
            status = response.status_code
            if status == 200:
                return self._reply_text(response)
            if (status == 429 or status >= 500) and not last:
                self._wait(attempt, response.headers.get("Retry-After"), str(status))
                continue
            raise JudgeError(self._failed(response, attempt + 1))
        raise AssertionError("unreachable")  # the loop returns or raises on its last try

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
        if retry_after is not None:
            try:
                delay = min(max(float(retry_after), 0.0), MAX_BACKOFF_S)
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        with self._lock:
            self._run.retries += 1
        log.info("judge endpoint answered %s; retrying in %.1fs", why, delay)
        time.sleep(delay)

    def _reply_text(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(
                f"--judge_url {self.url}: the reply is not an OpenAI chat completion: "
                f"{response.text[:200]!r}"
            ) from None
        return content if isinstance(content, str) else ""

    def _unreachable(self, error: Exception) -> str:
        return (
            f"--judge_url {self.url}: no judge server answers there ({type(error).__name__}: "
            f"{error}); start it, or fix the URL (the base URL, ending in /v1)"
        )

    def _refused(self, response: httpx.Response) -> str:
        return (
            f"--judge_url {self.url} refused the request ({response.status_code}: "
            f"{_server_message(response)}); set {API_KEY_ENV} to a key it accepts"
        )

    def _failed(self, response: httpx.Response, tries: int) -> str:
        status = response.status_code
        if status in (401, 403):
            return self._refused(response)
        if status == 404:
            return (
                f"--judge_model {self.model!r}: {self.url} does not serve it, or has no "
                f"/chat/completions (404: {_server_message(response)})"
            )
        after = f" after {tries} tries" if tries > 1 else ""
        return (
            f"--judge_url {self.url}: the judge request failed{after} ({status}: "
            f"{_server_message(response)})"
        )


def _server_message(response: httpx.Response) -> str:
    """The error message an OpenAI-style server put in its body, else the body's start."""
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300] or response.reason_phrase
