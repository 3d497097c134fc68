"""The AI judge's pairwise question and its answer: the template, a robust verdict parser, and
one verdict from the two orders a pair is shown in.

The template (``templates/pairwise.txt``, or the user's ``--judge_template``) holds three
placeholders, ``{prompt}``, ``{answer_a}`` and ``{answer_b}``, filled in one pass so that an
answer containing the text ``{answer_b}`` stays as written. Each pair is asked twice, the policy's
answer first as A and then second, as MT-Bench does (Zheng et al. 2023,
https://arxiv.org/abs/2306.05685): a verdict that follows the position rather than the answer
flips, and a flipped verdict counts as a tie.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lit_dpo.errors import ConfigError

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "pairwise.txt"
PLACEHOLDERS = ("{prompt}", "{answer_a}", "{answer_b}")
UNPARSEABLE = "unparseable"
# The two orders a pair is shown in: which model's answer is A.
ORDERS = ("policy_first", "reference_first")

_PLACEHOLDER = re.compile(r"\{(prompt|answer_a|answer_b)\}")
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_STATED = re.compile(
    r"(?:winner|verdict|better answer|final answer|answer)\s*(?:is|:)\s*\**\s*"
    r"(?:answer\s+)?\[?\s*(A|B|tie)\b",
    re.IGNORECASE,
)
_IS_BETTER = re.compile(r"\b(?:answer|assistant)\s+(A|B)\s+is\s+(?:better|the better)", re.I)
_KEYS = ("winner", "verdict", "better", "choice", "answer")
_TIE_WORDS = {"tie", "draw", "equal", "both", "neither", "same"}


def load_template(path: str | Path | None = None) -> str:
    """The template's text: the shipped one, or the file at ``path``.

    Raises:
        ConfigError: the file is missing or lacks a placeholder (names the file and which).
    """
    path = Path(path) if path else DEFAULT_TEMPLATE
    if not path.is_file():
        raise ConfigError(f"--judge_template {path}: no such file")
    text = path.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ConfigError(
            f"--judge_template {path}: missing {', '.join(missing)}; the template needs "
            f"{', '.join(PLACEHOLDERS)} where the conversation and the two answers go"
        )
    return text


def conversation_text(messages: list[dict[str, str]]) -> str:
    """The conversation as the judge reads it: a lone user turn as is, else labelled turns."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def render(template: str, prompt: str, answer_a: str, answer_b: str) -> str:
    """The template with its placeholders filled, in one pass."""
    values = {"prompt": prompt, "answer_a": answer_a, "answer_b": answer_b}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def parse_verdict(reply: str) -> str:
    """``"A"``, ``"B"``, ``"tie"`` or ``"unparseable"`` from a judge's reply.

    Read, in order: a JSON object with a ``winner`` (or ``verdict``, ``better``, ``choice``,
    ``answer``) key; MT-Bench's ``[[A]]``; a reply that is only the label (``B``, ``**Tie**.``,
    ``Answer A``); a stated verdict (``Winner: B``, ``Answer A is better``). A reasoning model's
    ``<think>...</think>`` is dropped first. A reply naming both A and B the same way is
    unparseable rather than guessed.
    """
    text = _THINKING.sub("", reply).strip()
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(text) if char == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            for key in _KEYS:
                if key in value and (label := _label(str(value[key]))):
                    return label
    for pattern in (_BRACKETED, _STATED, _IS_BETTER):
        found = {_label(m) for m in pattern.findall(text)}
        if len(found) == 1 and None not in found:
            return found.pop()
        if found:
            return UNPARSEABLE
    return _label(text) or UNPARSEABLE


def _label(text: str) -> str | None:
    word = re.sub(r"^(answer|assistant|response)\s+", "", text.strip().strip("*.\"'`!: ").lower())
    if word in ("a", "b"):
        return word.upper()
    return "tie" if word in _TIE_WORDS else None


def side_of(label: str, order: str) -> str:
    """The model a parsed label names: ``policy``, ``reference``, ``tie`` or ``unparseable``."""
    if label in ("tie", UNPARSEABLE):
        return label
    policy_label = "A" if order == "policy_first" else "B"
    return "policy" if label == policy_label else "reference"


def combine_orders(policy_first: str, reference_first: str) -> tuple[str, bool | None]:
    """One verdict from the two orders' (``side_of``) verdicts, and whether they agree.

    Agreeing orders give their verdict; disagreeing ones (a flip with the position, or a side in
    one order and a tie in the other) give a tie. Either unparseable: the pair is unparseable and
    its consistency unknown (None).
    """
    if UNPARSEABLE in (policy_first, reference_first):
        return UNPARSEABLE, None
    if policy_first == reference_first:
        return policy_first, True
    return "tie", False
