"""An outside reward model as judge: score reference and policy answers, and a win rate with CI.

Any ``AutoModelForSequenceClassification`` works (e.g. a reward model trained on preferences). A
single-logit model's logit is the score; with several labels the score is the last label's logit
minus the first's (``good - bad`` for the usual two-label layout). The interval is Wilson's score
interval (:func:`lit_dpo.stats.wilson_interval`).
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lit_dpo.errors import ModelSourceError
from lit_dpo.progress import track
from lit_dpo.sources import check_weights, load_kwargs, resolve_model
from lit_dpo.stats import wilson_interval

__all__ = ["judge_scores", "judge_text", "load_judge", "wilson_interval", "win_rate"]

Messages = list[dict[str, str]]
# Cap on the judge's input; longer conversations keep their end, where the answer is.
MAX_JUDGE_TOKENS = 4096


def load_judge(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a sequence-classification model and its tokenizer from a hub id or a local folder.

    Raises:
        ModelSourceError: nothing loadable as a sequence-classification model is there, or only
            pickled weights when ``allow_pickle`` is off.
    """
    source = resolve_model(name)
    check_weights(source, allow_pickle, what="judge")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=dtype, **load_kwargs(allow_pickle, trust_remote_code=False)
        )
    except (OSError, ValueError) as error:
        raise ModelSourceError(
            f"--judge {name!r}: could not load a sequence-classification (reward) model: {error}"
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = "left"
    return model.to(device).eval(), tokenizer


def judge_text(tokenizer: PreTrainedTokenizerBase, messages: Messages, answer: str) -> str:
    """The conversation with the answer as its last turn, as the judge reads it."""
    conversation = [*messages, {"role": "assistant", "content": answer}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(conversation, tokenize=False)
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in conversation)


def judge_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[tuple[Messages, str]],
) -> list[float]:
    """Score each (conversation, answer); higher is better. Shows a progress bar with an ETA."""
    limit = min(
        tokenizer.model_max_length,
        getattr(model.config, "max_position_embeddings", None) or MAX_JUDGE_TOKENS,
        MAX_JUDGE_TOKENS,
    )
    device = next(model.parameters()).device
    scores = []
    for messages, answer in track(items, "judging", unit="answers"):
        encoded = tokenizer(
            judge_text(tokenizer, messages, answer),
            truncation=True,
            max_length=limit,
            # a chat template writes its own BOS; plain text gets the tokenizer's
            add_special_tokens=not tokenizer.chat_template,
            return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            logits = model(**encoded).logits[0].float()
        scores.append(float(logits[0] if logits.numel() == 1 else logits[-1] - logits[0]))
    return scores


def win_rate(policy_scores: list[float], reference_scores: list[float]) -> dict[str, float]:
    """How often the judge prefers the policy's answer to the reference's answer to one prompt.

    Ties count as half a win. Returns ``wins``, ``ties``, ``losses``, ``prompts``, ``win_rate``
    and its 95% Wilson interval ``ci_low``, ``ci_high``.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(policy_scores) != len(reference_scores) or not policy_scores:
        raise ValueError(
            f"need one reference score per policy score, got {len(policy_scores)} and "
            f"{len(reference_scores)}"
        )
    pairs = list(zip(policy_scores, reference_scores, strict=True))
    wins = sum(a > b for a, b in pairs)
    ties = sum(a == b for a, b in pairs)
    low, high = wilson_interval(wins + ties / 2, len(pairs))
    return {
        "wins": wins,
        "ties": ties,
        "losses": len(pairs) - wins - ties,
        "prompts": len(pairs),
        "win_rate": (wins + ties / 2) / len(pairs),
        "ci_low": low,
        "ci_high": high,
    }
