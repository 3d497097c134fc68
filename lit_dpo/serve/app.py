"""The HTTP app of ``lit-dpo serve``: an OpenAI-compatible API over the policy and its reference.

``POST /v1/chat/completions`` answers with ``model: policy`` (adapter on) or ``model: reference``
(adapter off, same weights), streamed as server-sent events when asked; ``GET /v1/models`` lists
both; ``GET /health`` says what is loaded and how busy it is. The 0.1 names ``aligned`` and
``base`` still work for one release: they are answered by ``policy`` and ``reference``, echoed in
the reply as OpenAI echoes the name asked for, not listed, and logged once as deprecated.
Generation runs one request at a time on :class:`lit_dpo.serve.worker.Worker`; the wire format is
:mod:`lit_dpo.serve.api`.

    lit-dpo serve --adapter runs/cpu/adapter
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "policy", "messages": [{"role": "user", "content": "Hi"}]}'
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers import TextIteratorStreamer

from lit_dpo.serve.api import (
    APIError,
    ChatRequest,
    Reply,
    cut_at_stop,
    describe_problems,
    final_part,
    sse,
    stop_list,
    template_messages,
    usage,
)
from lit_dpo.serve.worker import (
    DEPRECATED_NAMES,
    POLICY,
    REFERENCE,
    Cancelled,
    Completion,
    Job,
    ServedModel,
    Worker,
    sampling_kwargs,
)

log = logging.getLogger(__name__)

API_KEY_ENV = "LIT_DPO_API_KEY"


class RequireKey:
    """ASGI middleware answering 401 to any request without ``Authorization: Bearer <key>``."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = APIError(
                    401,
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                    f"with the key given to --api_key or ${API_KEY_ENV}",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestLog:
    """ASGI middleware logging each request once answered: status, latency, token counts.

    A streamed answer is logged after its last event. Handlers leave the counts in
    ``request.state.usage``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_watching_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_watching_status)
        finally:
            counts = scope.get("state", {}).get("usage", {})
            log.info(
                "%s %s %d %.3fs%s",
                scope["method"],
                scope["path"],
                status,
                time.perf_counter() - start,
                "".join(f" {k}={v}" for k, v in counts.items()),
            )


def create_app(
    served: ServedModel, worker: Worker, max_tokens_limit: int, api_key: str | None = None
) -> FastAPI:
    """The FastAPI app: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

    Args:
        served: the loaded model.
        worker: the generation thread; closed (work left over cancelled) when the app shuts down.
        max_tokens_limit: most tokens one reply may have, whatever the request asks.
        api_key: when set, every request must carry ``Authorization: Bearer <api_key>``.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has already let requests in flight finish, up to --shutdown-timeout.
        cancelled = worker.close()
        log.info("generation worker stopped; %d request(s) cancelled", cancelled)

    app = FastAPI(title="lit-dpo", lifespan=lifespan)
    if api_key:
        app.add_middleware(RequireKey, api_key=api_key)
    app.add_middleware(RequestLog)  # added last, so outermost: 401s are logged too
    created = int(time.time())
    warned: set[str] = set()  # deprecated model names already logged

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return APIError(error.status_code, str(error.detail), headers=error.headers).response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = describe_problems(error.errors())
        body = APIError(422, message, param=param).body()
        # FastAPI's own list too, for clients that read it.
        body["detail"] = jsonable_encoder(error.errors(), custom_encoder={Exception: str})
        return JSONResponse(body, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "models": list(served.names),
            "deprecated_names": {
                old: new for old, new in DEPRECATED_NAMES.items() if new in served.names
            },
            "busy": worker.busy,
            "queued": worker.queued,
            **served.source,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "lit-dpo"}
            for name in served.names
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        name = _served_name(body.model, served, warned)
        job = _job_for(body, name, served, max_tokens_limit)
        try:
            worker.submit(job)
        except queue.Full:
            raise APIError(
                503,
                f"the server is busy: {worker.queued} requests are already waiting; retry later",
                code="server_busy",
                headers={"Retry-After": "1"},
            ) from None
        except Cancelled as error:
            raise APIError(503, str(error), code="shutting_down") from None
        reply = Reply(body.model)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _events(job, reply, name, include_usage, request.state)
            return StreamingResponse(events, media_type="text/event-stream")
        completion = await _wait(job)
        request.state.usage = _log_fields(name, job, completion)
        counts = usage(completion.prompt_tokens, completion.completion_tokens)
        return reply.completion(completion.text, completion.finish_reason, counts)

    return app


def _served_name(asked: str, served: ServedModel, warned: set[str]) -> str:
    """The served model a request's ``model`` names, warning once per deprecated name used.

    Raises:
        APIError: 404, no served model has that name.
    """
    name = DEPRECATED_NAMES.get(asked, asked)
    if name not in served.names:
        raise APIError(
            404,
            f"model {asked!r} is not served; use one of: {', '.join(served.names)}"
            + ("" if REFERENCE in served.names else " (a merged model folder has no reference)"),
            code="model_not_found",
            param="model",
        )
    if name != asked and asked not in warned:
        warned.add(asked)
        log.warning(
            "model %r is a deprecated name for %r and stops working in the next release; "
            "ask for %r",
            asked,
            name,
            name,
        )
    return name


def _job_for(body: ChatRequest, name: str, served: ServedModel, max_tokens_limit: int) -> Job:
    """Make a request for the served model ``name`` a Job (APIError when it can't)."""
    tokenizer = served.tokenizer
    try:
        text = tokenizer.apply_chat_template(
            template_messages(body.messages), tokenize=False, add_generation_prompt=True
        )
    except Exception as error:  # the template's own checks, e.g. roles that must alternate
        raise APIError(
            400, f"the chat template rejects these messages: {error}", param="messages"
        ) from error
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    room = served.context_length - len(prompt_ids)
    if room < 1:
        raise APIError(
            400,
            f"the prompt is {len(prompt_ids)} tokens but the model's context is "
            f"{served.context_length} tokens (prompt and reply together); shorten the messages",
            code="context_length_exceeded",
            param="messages",
        )
    asked = body.max_completion_tokens or body.max_tokens or max_tokens_limit
    temperature = 1.0 if body.temperature is None else body.temperature
    streamer = None
    if body.stream:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    return Job(
        prompt_ids=prompt_ids,
        max_new_tokens=min(asked, max_tokens_limit, room),
        use_adapter=name == POLICY,
        sampling=sampling_kwargs(temperature, 1.0 if body.top_p is None else body.top_p),
        seed=body.seed,
        stops=stop_list(body.stop),
        streamer=streamer,
    )


async def _wait(job: Job) -> Completion:
    try:
        return await asyncio.wrap_future(job.result)
    except asyncio.CancelledError:  # the server gave up on this request: stop generating it
        job.cancelled.set()
        raise
    except Cancelled as error:
        raise APIError(503, str(error), code="shutting_down") from None
    except Exception as error:
        raise APIError(500, f"generation failed: {error}") from error


def _log_fields(model: str, job: Job, completion: Completion) -> dict[str, Any]:
    waited = (job.started_at or job.queued_at) - job.queued_at
    return {
        "model": model,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "finish": completion.finish_reason,
        "queued": f"{waited:.3f}s",
    }


async def _events(
    job: Job, reply: Reply, name: str, include_usage: bool, state: Any
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``.

    ``reply`` echoes the model name asked for; the log says ``name``, the model that answered.
    """
    try:
        yield reply.chunk({"role": "assistant", "content": ""})
        pieces, text, sent, stopped = iter(job.streamer), "", 0, False
        while not stopped:
            # The streamer blocks until the worker decodes the next piece: wait in a thread.
            piece = await anyio.to_thread.run_sync(next, pieces, None, abandon_on_cancel=True)
            if piece is None:
                break
            text += piece
            final, stopped = final_part(text, job.stops)
            if len(final) > sent:
                yield reply.chunk({"content": final[sent:]})
                sent = len(final)
        if stopped:
            job.cancelled.set()  # the reply is complete: spare the worker the rest
        completion = await _wait(job)
        rest = cut_at_stop(text, job.stops)[0][sent:]  # the tail held back for a possible stop
        if rest:
            yield reply.chunk({"content": rest})
        yield reply.chunk({}, "stop" if stopped else completion.finish_reason)
        if include_usage:
            yield reply.usage_chunk(usage(completion.prompt_tokens, completion.completion_tokens))
        state.usage = {**_log_fields(name, job, completion), "stream": True}
        yield sse("[DONE]")
    except APIError as error:
        # The status line is sent already: report in the stream, as OpenAI does, then end it.
        yield sse(error.body())
        yield sse("[DONE]")
    finally:
        job.cancelled.set()  # a client that left mid-stream stops the generation
