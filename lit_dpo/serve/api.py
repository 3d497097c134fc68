"""The OpenAI chat completions wire format, as far as ``lit-dpo serve`` speaks it.

Requests are validated by pydantic (a wrong type is a 422 naming the field); replies, stream
chunks and errors are built here as plain dicts, in the shapes the ``openai`` client parses:
https://platform.openai.com/docs/api-reference/chat. Nothing here touches a model or a socket.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

FinishReason = Literal["stop", "length"]


class _Strict(BaseModel):
    # Strict: "max_tokens": "10" is a client bug worth a 422, not a value to guess at. Fields
    # lit-dpo does not implement (tools, logprobs...) are ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]


class StreamOptions(_Strict):
    include_usage: bool = False


StopString = Annotated[str, Field(min_length=1)]


class ChatRequest(_Strict):
    """``POST /v1/chat/completions``: the fields that change the answer."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)  # one answer per request


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI messages -> the role/content dicts chat templates take.

    Text parts are joined; ``developer`` (OpenAI's newer name for ``system``) becomes ``system``,
    the role chat templates know.
    """
    return [
        {
            "role": "system" if m.role == "developer" else m.role,
            "content": m.content
            if isinstance(m.content, str)
            else "".join(part.text for part in m.content),
        }
        for m in messages
    ]


def stop_list(stop: str | list[str] | None) -> list[str]:
    """``stop`` as OpenAI takes it (one string, a list, or nothing) -> a list."""
    return [stop] if isinstance(stop, str) else list(stop or [])


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether there was one (OpenAI drops the stop)."""
    positions = [i for stop in stops if (i := text.find(stop)) >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


def final_part(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The part of a reply still being generated that is safe to send, and whether it stopped.

    Without a stop string yet, a tail that may be the start of one (``"\\nUs"`` for
    ``"\\nUser:"``) is held back: the next token may complete it, and sent text can't be recalled.
    """
    text, stopped = cut_at_stop(text, stops)
    if stopped:
        return text, True
    held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return text[: len(text) - held], False


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(payload: dict | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


@dataclass(frozen=True)
class Reply:
    """The response objects of one completion: the answer, or its stream of chunks.

    Args:
        model: the model name the request asked for, echoed back.
    """

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def completion(self, text: str, finish_reason: FinishReason, counts: dict[str, int]) -> dict:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish_reason}
        return {**self._head("chat.completion"), "choices": [choice], "usage": counts}

    def chunk(self, delta: dict[str, str], finish_reason: FinishReason | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return sse({**self._head("chat.completion.chunk"), "choices": [choice]})

    def usage_chunk(self, counts: dict[str, int]) -> str:
        """The last chunk before ``[DONE]`` when ``stream_options.include_usage`` is set."""
        return sse({**self._head("chat.completion.chunk"), "choices": [], "usage": counts})

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def describe_problems(problems: Sequence[dict]) -> tuple[str, str | None]:
    """pydantic's validation errors -> one message naming every field, and the first field.

    ``[{"loc": ("body", "messages", 0, "role"), "msg": "Input should be ..."}]`` ->
    ``"messages.0.role: Input should be ..."``.
    """
    parts, fields = [], []
    for problem in problems:
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "")
            parts.append(f"the body is not valid JSON at character {problem['loc'][-1]}: {reason}")
            continue
        where = ".".join(str(p) for p in problem["loc"] if p != "body") or "body"
        fields.append(where)
        parts.append(f"{where}: {problem['msg']}")
    return "invalid request: " + "; ".join(parts), fields[0] if fields else None
