"""Preference rows -> (prompt messages, chosen reply, rejected reply), with the checks DPO needs.

Every format ends as the same pair: the prompt is every turn before the final assistant reply
(system messages and earlier turns kept as written), and the two candidate final replies. Formats
(``FORMATS``): UltraFeedback binarized, whose ``chosen`` and ``rejected`` are whole conversations
sharing all but the last turn (this also covers the implicit-prompt format); conversational, with
``prompt`` as messages and the replies as assistant messages; plain strings, read as a one-turn
chat; and Anthropic HH-RLHF transcripts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lit_dpo.errors import DataError, RowError

ROLES = ("system", "user", "assistant")
# columns lit-dpo adds to a user's rows (where each came from); never shown as theirs
INTERNAL_PREFIX = "_lit_dpo_"


def visible_columns(names) -> list[str]:
    """A row's or dataset's column names as the user wrote them: sorted, lit-dpo's own left out."""
    return sorted(name for name in names if not name.startswith(INTERNAL_PREFIX))


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the conversation so far and two candidate final replies."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str


FORMATS = ("ultrafeedback", "conversational", "plain", "hh-rlhf")
FORMAT_HELP = {
    "ultrafeedback": "'chosen'/'rejected' are whole conversations sharing every turn but the last "
    "(UltraFeedback binarized; also the implicit-prompt format, with or without a 'prompt' column)",
    "conversational": "'prompt' is a list of messages, 'chosen'/'rejected' the assistant messages",
    "plain": "'prompt', 'chosen', 'rejected' are strings",
    "hh-rlhf": "'chosen'/'rejected' are Anthropic HH transcripts ('\\n\\nHuman: ... "
    "\\n\\nAssistant: ...')",
}
HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def detect_format(row: dict[str, Any], source: str) -> str:
    """Name the format a row is in, from its columns and value types.

    Raises:
        DataError: no format fits; the message lists the columns found and the formats accepted.
    """
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):
        return "conversational" if isinstance(prompt, list) else "ultrafeedback"
    if isinstance(chosen, str) and isinstance(rejected, str):
        if isinstance(prompt, str):
            return "plain"
        if prompt is None and HH_TURN.search(chosen):
            return "hh-rlhf"
    accepted = "\n".join(f"  {name}: {text}" for name, text in FORMAT_HELP.items())
    raise DataError(
        f"{source}: no preference format fits the columns {visible_columns(row)}. Accepted "
        "formats:\n"
        f"{accepted}\nMap other column names with --data.columns "
        "'{prompt: question, chosen: good, rejected: bad}'."
    )


def extract_pair(
    row: dict[str, Any], where: str, format: str = "ultrafeedback"
) -> PreferencePair:
    """Split a row into prompt messages and the two final replies, checking it on the way.

    A row is malformed (``RowError``) when a field is missing or of the wrong type, a message has
    an unknown role or the turns are out of order, a reply is empty, both replies are the same,
    or a score is not a finite number.

    Args:
        row: one row in ``format``.
        where: names the row in errors, e.g. ``"train_prefs.jsonl row 12"``.
        format: one of ``FORMATS``.

    Raises:
        RowError: the row is malformed; the message names ``where`` and the field.
        DataError: ``format`` is unknown.
    """
    if not isinstance(row, Mapping):
        raise RowError(where, "a row must be a mapping of columns", f", got {type(row).__name__}")
    missing = [k for k in ("chosen", "rejected") if row.get(k) is None]
    if format in ("conversational", "plain") and row.get("prompt") is None:
        missing.insert(0, "prompt")
    if missing:
        raise RowError(
            where,
            f"missing {', '.join(map(repr, missing))}",
            f"; columns: {visible_columns(row)}",
        )
    if format == "plain":
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(row[field], str):
                raise RowError(where, f"{field!r} must be a string in the plain format")
        pair = PreferencePair(
            [{"role": "user", "content": row["prompt"]}], row["chosen"], row["rejected"]
        )
    elif format == "hh-rlhf":
        chosen_turns = _hh_messages(row["chosen"], where, "chosen")
        rejected_turns = _hh_messages(row["rejected"], where, "rejected")
        pair = _split_final_reply(chosen_turns, rejected_turns, where)
    elif format == "conversational":
        prompt = _messages(row["prompt"], where, "prompt", final_role=None)
        chosen_turns = prompt + _messages(row["chosen"], where, "chosen")
        rejected_turns = prompt + _messages(row["rejected"], where, "rejected")
        pair = _split_final_reply(chosen_turns, rejected_turns, where)
    elif format == "ultrafeedback":
        chosen_turns = _messages(row["chosen"], where, "chosen")
        rejected_turns = _messages(row["rejected"], where, "rejected")
        pair = _split_final_reply(chosen_turns, rejected_turns, where)
    else:
        raise DataError(f"unknown format {format!r}; choose one of {FORMATS}")
    _check_replies(pair, where)
    _check_scores(row, where)
    return pair


def _split_final_reply(
    chosen_turns: list[dict[str, str]], rejected_turns: list[dict[str, str]], where: str
) -> PreferencePair:
    if chosen_turns[:-1] != rejected_turns[:-1]:
        raise RowError(
            where, "'chosen' and 'rejected' must share every turn before the final reply"
        )
    if len(chosen_turns) < 2:
        raise RowError(where, "a conversation needs at least one turn before the final reply")
    _check_order(chosen_turns, where)
    return PreferencePair(
        chosen_turns[:-1], chosen_turns[-1]["content"], rejected_turns[-1]["content"]
    )


def _check_order(turns: list[dict[str, str]], where: str) -> None:
    """An optional system message, then user and assistant turns taking turns, user first."""
    roles = [t["role"] for t in turns]
    if "system" in roles[1:]:
        raise RowError(where, "a system message may only come first")
    chat = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(chat):
        expected = ("user", "assistant")[i % 2]
        if role != expected:
            raise RowError(
                where,
                "turns out of order: user and assistant must alternate, user first",
                f" (turn {i + (len(roles) - len(chat))} is {role!r})",
            )


def _check_replies(pair: PreferencePair, where: str) -> None:
    if not pair.chosen.strip() or not pair.rejected.strip():
        raise RowError(where, "empty reply")
    if pair.chosen.strip() == pair.rejected.strip():
        raise RowError(where, "'chosen' and 'rejected' replies are identical")


def _check_scores(row: dict[str, Any], where: str) -> None:
    for field in ("score_chosen", "score_rejected"):
        score = row.get(field)
        if score is None:
            continue
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise RowError(where, f"{field!r} must be a number", f", got {score!r}")
        if not math.isfinite(score):
            raise RowError(where, f"{field!r} is not a finite number", f" ({score})")


def filter_reason(row: dict[str, Any], pair: PreferencePair) -> str | None:
    """Why a well-formed pair teaches DPO nothing, or None to keep it: both replies scored the
    same (a tie)."""
    score_chosen, score_rejected = row.get("score_chosen"), row.get("score_rejected")
    if score_chosen is not None and score_chosen == score_rejected:
        return "tie"
    return None


def _messages(
    value: Any, where: str, field: str, final_role: str | None = "assistant"
) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(where, f"{field!r} must be a non-empty list of messages")
    turns = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RowError(
                where,
                f"{field} holds a message without a role in {ROLES}",
                f" ({field}[{i}] is {message!r:.80})",
            )
        if not isinstance(message.get("content"), str):
            raise RowError(where, f"{field} holds a message whose content is not a string",
                           f" ({field}[{i}])")
        turns.append({"role": message["role"], "content": message["content"]})
    if final_role and turns[-1]["role"] != final_role:
        raise RowError(where, f"the last message of {field!r} must be the assistant's reply")
    return turns


def _hh_messages(text: Any, where: str, field: str) -> list[dict[str, str]]:
    if not isinstance(text, str):
        raise RowError(where, f"{field!r} must be a transcript string in the hh-rlhf format")
    parts = HH_TURN.split(text)
    # split() gives [preamble, role, content, role, content, ...]
    if len(parts) < 3 or parts[0].strip():
        raise RowError(where, f"{field!r} does not start with '\\n\\nHuman: '")
    turns = [
        {"role": HH_ROLES[role], "content": content.strip()}
        for role, content in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if turns[-1]["role"] != "assistant":
        raise RowError(where, f"{field!r} must end with an 'Assistant:' turn")
    return turns
