"""Preference rows -> (prompt messages, chosen reply, rejected reply), with the checks DPO needs.

The row shape is that of ``HuggingFaceH4/ultrafeedback_binarized``: ``chosen`` and ``rejected`` are
whole conversations that share every turn but the last assistant reply. The prompt is every turn
before that reply, so system messages and earlier turns reach the model as the user wrote them.
Plain-string rows (``prompt``, ``chosen``, ``rejected`` as text) are read as a one-turn chat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lit_dpo.errors import DataError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the conversation so far and two candidate final replies."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str


def extract_pair(row: dict[str, Any], where: str) -> PreferencePair:
    """Split a row into prompt messages and the two final replies.

    Args:
        row: an UltraFeedback-shaped row, or one with plain-string ``prompt``, ``chosen`` and
            ``rejected``.
        where: names the row in errors, e.g. ``"train_prefs row 12"``.

    Raises:
        DataError: the row is malformed; the message names ``where`` and the field.
    """
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        missing = [k for k in ("chosen", "rejected") if row.get(k) is None]
        raise DataError(f"{where}: missing {', '.join(map(repr, missing))}; columns: {sorted(row)}")
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise DataError(f"{where}: plain-text chosen/rejected need a string 'prompt'")
        return PreferencePair([{"role": "user", "content": prompt}], chosen, rejected)
    chosen_turns = _messages(chosen, where, "chosen")
    rejected_turns = _messages(rejected, where, "rejected")
    if chosen_turns[:-1] != rejected_turns[:-1]:
        raise DataError(
            f"{where}: 'chosen' and 'rejected' must share every turn before the final reply"
        )
    if len(chosen_turns) < 2:
        raise DataError(f"{where}: a conversation needs at least one turn before the final reply")
    return PreferencePair(
        chosen_turns[:-1], chosen_turns[-1]["content"], rejected_turns[-1]["content"]
    )


def filter_reason(row: dict[str, Any], pair: PreferencePair) -> str | None:
    """Why a well-formed pair teaches DPO nothing (or noise), or None to keep it."""
    if not pair.chosen.strip() or not pair.rejected.strip():
        return "empty reply"
    if pair.chosen.strip() == pair.rejected.strip():
        return "identical replies"
    score_chosen, score_rejected = row.get("score_chosen"), row.get("score_rejected")
    if isinstance(score_chosen, (int, float)) and isinstance(score_rejected, (int, float)):
        if math.isnan(score_chosen) or math.isnan(score_rejected):
            return "NaN score"
        if score_chosen == score_rejected:
            return "tie"
    return None


def _messages(value: Any, where: str, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: {field!r} must be a non-empty list of messages")
    turns = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(
                f"{where}: {field}[{i}] must be a message with role one of {ROLES}, got {message!r}"
            )
        if not isinstance(message.get("content"), str):
            raise DataError(f"{where}: {field}[{i}].content must be a string")
        turns.append({"role": message["role"], "content": message["content"]})
    if turns[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message of {field!r} must be the assistant's reply")
    return turns
