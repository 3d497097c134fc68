"""The pairs to judge: each prompt of a ``lit-dpo compare`` folder with its two answers.

``compare.json`` is ``dataclasses.asdict`` of :class:`lit_dpo.compare.report.CompareReport`: a
``results`` list whose entries hold ``case`` (``category``, ``messages``, ``expect``),
``reference`` and ``policy`` (each with its ``text``). A pair's ``prompt_id`` is its number in the
report (``"1"`` is the first prompt, as ``compare.md`` numbers its sections), unless the entry
carries its own ``prompt_id``. Its fingerprint (a hash of the conversation and both answers) lets
the vote store notice that ``compare`` was rerun into the same folder with other answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lit_dpo.errors import DataError

COMPARE_FILE = "compare.json"


@dataclass(frozen=True)
class Pair:
    """One prompt and the two answers a judge chooses between.

    Args:
        prompt_id: the prompt's id in the report (``"1"``, ``"2"``...).
        category: the prompt's category (``user``, ``medical``...).
        messages: the conversation the answers reply to.
        expect: what a good answer does, when the prompt says (edge cases); else ``""``.
        reference: the reference's answer.
        policy: the policy's answer.
    """

    prompt_id: str
    category: str
    messages: list[dict[str, str]]
    expect: str
    reference: str
    policy: str

    @property
    def fingerprint(self) -> str:
        """A hash of what is judged: the conversation and both answers."""
        content = json.dumps([self.messages, self.reference, self.policy], ensure_ascii=False)
        return hashlib.sha256(content.encode()).hexdigest()[:16]


def load_pairs(folder: str | Path) -> list[Pair]:
    """The pairs of ``folder/compare.json``, in the report's order.

    Raises:
        DataError: the file is missing, is not a compare report, or holds no answered prompt.
    """
    path = Path(folder) / COMPARE_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: --compare must be the folder `lit-dpo compare --out` wrote"
        )
    try:
        results = json.loads(path.read_text())["results"]
        pairs = [_pair(entry, number) for number, entry in enumerate(results, 1)]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path} is not a lit-dpo compare report ({type(error).__name__}: {error}); "
            "rerun `lit-dpo compare` to write it"
        ) from error
    if not pairs:
        raise DataError(
            f"{path} holds no answered prompts (compare ran with --edge_cases false and no "
            "--prompts); compare some prompts first"
        )
    ids = [pair.prompt_id for pair in pairs]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: prompt ids repeat ({ids}); each prompt needs its own")
    return pairs


def _pair(entry: dict, number: int) -> Pair:
    case = entry["case"]
    return Pair(
        prompt_id=str(entry.get("prompt_id", number)),
        category=str(case["category"]),
        messages=[{"role": m["role"], "content": m["content"]} for m in case["messages"]],
        expect=str(case.get("expect") or ""),
        reference=str(entry["reference"]["text"]),
        policy=str(entry["policy"]["text"]),
    )
