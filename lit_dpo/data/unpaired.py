"""Unpaired feedback for KTO: (prompt, completion, label) rows, and pairs turned into them.

TRL's unpaired preference format: ``prompt`` (a string, or a list of messages), ``completion``
(a string, or a list holding the assistant's message) and ``label``, a boolean: true for a
desirable answer (thumbs up), false for an undesirable one (thumbs down). A paired dataset becomes
unpaired as TRL's ``unpair_preference_dataset`` makes it (``data.unpair``): each pair gives its
chosen reply as a desirable row and its rejected reply as an undesirable one.

KTO estimates its KL baseline from *mismatched* rows: the prompt of one example with the completion
of another. As TRL (``KTOTrainer._prepare_dataset``, whose KL completion is ``[completion_ids[-1]] +
completion_ids[:-1]`` over a block of rows), the counterpart of a row is the completion of the row
before it, fixed once when the split is prepared, so a reference log-prob computed for it once
(``model.efficiency.precompute_reference``) stays valid for every epoch. An encoded example then has
the shape of an encoded pair: ``chosen_ids`` holds its completion, ``rejected_ids`` its KL
counterpart under the same prompt, and ``label`` its feedback; batching, prompt sharing and the
reference table treat it as a pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets

from lit_dpo.data.pairs import _check_order, _messages, visible_columns
from lit_dpo.errors import RowError

UNPAIRED = "unpaired"
UNPAIRED_HELP = (
    "'prompt' (string or messages), 'completion' (string or the assistant's message) and "
    "'label' (true: desirable, false: undesirable), TRL's unpaired format for KTO"
)
# the columns an encoded unpaired split carries to the batches
ENCODED_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids", "label"]


@dataclass(frozen=True)
class UnpairedExample:
    """One answer with its feedback: the conversation so far, the reply, and whether it is
    desirable."""

    prompt: list[dict[str, str]]
    completion: str
    label: bool


def is_unpaired(row: Mapping[str, Any]) -> bool:
    """Whether a row is in the unpaired format: it has ``completion`` and ``label`` columns and
    no ``chosen``/``rejected`` pair."""
    return "completion" in row and "label" in row and "chosen" not in row


def extract_unpaired(row: Mapping[str, Any], where: str) -> UnpairedExample:
    """Check an unpaired row and split it into prompt messages, reply and label.

    A row is malformed (``RowError``) when ``prompt``, ``completion`` or ``label`` is missing,
    the label is not a boolean (1, "yes" and "true" are refused: a mistyped column should not
    train silently), the reply is empty, or a message list is malformed.

    Raises:
        RowError: the message names ``where`` and the field.
    """
    if not isinstance(row, Mapping):
        raise RowError(where, "a row must be a mapping of columns", f", got {type(row).__name__}")
    missing = [k for k in ("prompt", "completion", "label") if row.get(k) is None]
    if missing:
        raise RowError(
            where, f"missing {', '.join(map(repr, missing))}", f"; columns: {visible_columns(row)}"
        )
    label = row["label"]
    if not isinstance(label, bool):
        raise RowError(where, "'label' must be a boolean (true or false)", f", got {label!r:.40}")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    else:
        prompt = _messages(prompt, where, "prompt", final_role=None)
    completion = row["completion"]
    if isinstance(completion, list):
        turns = _messages(completion, where, "completion")
        if len(turns) != 1:
            raise RowError(where, "'completion' must hold the one assistant reply")
        completion = turns[0]["content"]
    elif not isinstance(completion, str):
        raise RowError(where, "'completion' must be a string or a list of messages")
    if not prompt or prompt[-1]["role"] == "assistant":
        raise RowError(where, "the prompt must end with a user turn")
    _check_order([*prompt, {"role": "assistant", "content": completion}], where)
    if not completion.strip():
        raise RowError(where, "empty reply")
    return UnpairedExample(prompt, completion, label)


def unpair_encoded(encoded: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Encoded pairs -> encoded unpaired rows, as TRL's ``unpair_preference_dataset``: each
    pair's chosen reply a desirable row, its rejected reply an undesirable one.

    The rows are shuffled (seeded) so that a pair's two replies do not sit side by side, where
    one would become the other's KL counterpart under its own prompt.

    Returns:
        columns ``prompt_ids``, ``completion_ids``, ``label``, ``prompt_tokens``,
        ``completion_tokens``, ``truncated``.
    """
    columns = encoded.with_format(None).to_dict()
    n = len(encoded)
    rows = {
        "prompt_ids": columns["prompt_ids"] * 2,
        "completion_ids": columns["chosen_ids"] + columns["rejected_ids"],
        "label": [True] * n + [False] * n,
        "prompt_tokens": columns["prompt_tokens"] * 2,
        "completion_tokens": columns["chosen_tokens"] + columns["rejected_tokens"],
        "truncated": columns["truncated"] * 2,
    }
    return datasets.Dataset.from_dict(rows).shuffle(seed=seed).flatten_indices()


def with_kl_completions(unpaired: datasets.Dataset, max_length: int) -> datasets.Dataset:
    """Give each unpaired row its KL counterpart: the completion of the row before it (the
    first row takes the last's), kept to the room its own prompt leaves in ``max_length``.

    Returns:
        columns ``prompt_ids``, ``chosen_ids`` (the completion), ``rejected_ids`` (the KL
        completion), ``label``, ``num_tokens`` (what the length sampler reads), and the token
        counts ``prompt_tokens``, ``chosen_tokens``, ``rejected_tokens`` as a pair's.
    """
    columns = unpaired.with_format(None).to_dict()
    prompts, completions = columns["prompt_ids"], columns["completion_ids"]
    shifted = completions[-1:] + completions[:-1]
    kl = [c[: max_length - len(p)] for p, c in zip(prompts, shifted, strict=True)]
    full = columns["completion_tokens"]
    return datasets.Dataset.from_dict(
        {
            "prompt_ids": prompts,
            "chosen_ids": completions,
            "rejected_ids": kl,
            "label": columns["label"],
            "num_tokens": [
                len(p) + len(c) + len(k) for p, c, k in zip(prompts, completions, kl, strict=True)
            ],
            "prompt_tokens": columns["prompt_tokens"],
            "chosen_tokens": full,
            "rejected_tokens": full[-1:] + full[:-1],
            "truncated": columns["truncated"],
        }
    )


def label_counts(labels: list[bool]) -> dict[str, Any]:
    """Desirable and undesirable counts and their ratio (None without undesirable rows)."""
    desirable = sum(1 for label in labels if label)
    undesirable = len(labels) - desirable
    return {
        "desirable": desirable,
        "undesirable": undesirable,
        "ratio": round(desirable / undesirable, 4) if undesirable else None,
    }
