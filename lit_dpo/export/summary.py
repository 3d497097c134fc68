"""What an export tells about the adapter's run: its facts and the model card's summary line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_dpo.reporting.model_card import merged_card
from lit_dpo.reporting.run_facts import base_model_facts, framework_versions, read_facts


def adapter_facts(adapter: str | Path, base: str) -> dict[str, Any]:
    """The adapter's run, as its card tells it; an adapter lit-dpo did not write has only its
    base to tell."""
    facts = read_facts(adapter) or {"base": base_model_facts(base)}
    facts.setdefault("versions", framework_versions())
    return facts


def card_summary(facts: dict[str, Any], out: str | Path, adapter: str | Path, dtype: str) -> str:
    """The merged model card's title and summary paragraph (the lines after its front matter,
    up to the first section), for places that hold a few lines: GGUF metadata, a Modelfile."""
    card = merged_card(facts, out, str(adapter), dtype)
    body = card.split("\n---\n", 1)[-1]
    paragraphs = [part.strip() for part in body.split("\n\n") if part.strip()]
    title = paragraphs[0].removeprefix("# ")
    return f"{title}\n{paragraphs[1]}" if len(paragraphs) > 1 else title
