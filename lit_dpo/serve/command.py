"""``lit-dpo serve``: load the adapter on its base, then answer HTTP requests until stopped.

    lit-dpo serve --adapter runs/cpu/adapter                # http://127.0.0.1:8000
    lit-dpo serve --adapter runs/cpu/merged --port 8080     # a merged model (lit-dpo export)
    lit-dpo serve --adapter runs/dpo/adapter --reference_adapter runs/sft/adapter
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

import torch
import uvicorn

from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import check_adapter, pair_problems
from lit_dpo.models.inference import reference_adapter_for
from lit_dpo.models.policy import DType, Quantization
from lit_dpo.serve.app import API_KEY_ENV, create_app
from lit_dpo.serve.worker import Worker, is_merged_model, load_served_model

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(
    adapter: str,
    model: str | None = None,
    reference_adapter: str | None = None,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    device: str | None = None,
    allow_pickle: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_tokens_limit: int = 512,
    queue_size: int = 16,
    shutdown_timeout: int = 30,
) -> None:
    """Serve the policy (the adapter) and its reference (adapters off, or the reference adapter
    it was trained against) over an OpenAI-compatible HTTP API: POST /v1/chat/completions,
    GET /v1/models, GET /health.

    Args:
        adapter: a saved PEFT adapter folder (``runs/cpu/adapter``), or a merged model folder
            (``lit-dpo export``), which is served alone as the policy.
        model: the base: hub id, local folder or ``embedded:SmolLM2-135M-Instruct``; by default
            the base recorded in the adapter's ``adapter_config.json``.
        reference_adapter: the frozen adapter served as ``reference`` (an SFT adapter the policy
            was trained against); by default the one the adapter folder records in
            ``lit_dpo_reference.json``, else none: ``reference`` is the base, adapters off.
        quantization: ``nf4``: the 4-bit base of training; ``none``: full precision.
        compute_dtype: dtype of the 4-bit matmuls and of the other weights.
        device: where the weights go; by default cuda when there is one, else cpu.
        allow_pickle: also load weights stored as pickles (``.bin``); only for files you trust.
        host: address to listen on; ``0.0.0.0`` opens the server to the network.
        port: port to listen on.
        api_key: require ``Authorization: Bearer <key>`` on every request; by default
            ``$LIT_DPO_API_KEY``, else no key.
        max_tokens_limit: most tokens in one reply, whatever ``max_tokens`` a request asks for.
        queue_size: requests that may wait behind the one generating; more are answered 503.
        shutdown_timeout: on Ctrl+C or SIGTERM, seconds to let requests in flight finish before
            cancelling them.

    Raises:
        ConfigError: every problem with the options, before any model loads.
    """
    # No default in the signature: --help and --print_config must never show a key from the
    # environment.
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    problems = _problems(Path(adapter), model, allow_pickle, port, max_tokens_limit, queue_size)
    if not problems and not is_merged_model(Path(adapter)):
        reference_adapter, reference_problems = reference_adapter_for(
            adapter, reference_adapter, allow_pickle
        )
        problems += reference_problems
        if reference_adapter is not None and not reference_problems:
            options = ("--adapter", "--reference_adapter")
            problems += pair_problems(adapter, reference_adapter, options)
    elif reference_adapter is not None and is_merged_model(Path(adapter)):
        problems.append(
            f"--reference_adapter {reference_adapter}: --adapter {adapter} is a merged model, "
            "served alone as the policy; serve the adapter folder to have a reference"
        )
    if shutdown_timeout < 0:
        problems.append(f"--shutdown_timeout {shutdown_timeout}: must be >= 0")
    if problems:
        raise ConfigError("\n".join(problems))
    if host not in LOOPBACK_HOSTS and not api_key:
        log.warning(
            "listening on %s without --api_key: anyone who reaches it can use the model", host
        )
    start = time.perf_counter()
    served = load_served_model(
        Path(adapter),
        model,
        quantization,
        compute_dtype,
        device,
        allow_pickle,
        Path(reference_adapter) if reference_adapter is not None else None,
    )
    log.info(
        "loaded %s in %.1fs; serving %s",
        served.source,
        time.perf_counter() - start,
        ", ".join(served.names),
    )
    worker = Worker(served, queue_size)
    app = create_app(served, worker, max_tokens_limit, api_key)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # RequestLog writes one line per request, with token counts
        timeout_graceful_shutdown=shutdown_timeout,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C after shutting down
        _DrainingServer(config, worker).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, ending generation just before its graceful shutdown runs out.

    When ``timeout_graceful_shutdown`` passes, uvicorn cancels the requests still running, and a
    cancelled request is answered 500 with no body. A little before that, the worker's jobs are
    cancelled instead: the waiting ones are answered the documented 503 ``shutting_down`` and the
    generating one completes with the text it has.
    """

    def __init__(self, config: uvicorn.Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker

    async def shutdown(self, sockets: list | None = None) -> None:
        timeout = self.config.timeout_graceful_shutdown or 0
        # a quarter of the time, at most 1 s, for the cancelled requests to be answered
        cancel_at = timeout - min(1.0, timeout / 4)
        timer = asyncio.get_running_loop().call_later(cancel_at, self._cancel_generation)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    def _cancel_generation(self) -> None:
        cancelled = self.worker.cancel_all()
        if cancelled:
            log.warning("shutdown timeout near: %d request(s) in flight cancelled", cancelled)


def _problems(
    adapter: Path,
    model: str | None,
    allow_pickle: bool,
    port: int,
    max_tokens_limit: int,
    queue_size: int,
) -> list[str]:
    problems = []
    if is_merged_model(adapter):
        if model is not None:
            problems.append(
                f"--model {model}: --adapter {adapter} is a merged model with its own weights; "
                "leave --model out"
            )
    else:
        problems += check_adapter(adapter, allow_pickle)
    if not 0 <= port <= 65535:
        problems.append(f"--port {port}: must be between 0 and 65535")
    for option, value in (("max_tokens_limit", max_tokens_limit), ("queue_size", queue_size)):
        if value < 1:
            problems.append(f"--{option} {value}: must be >= 1")
    return problems
