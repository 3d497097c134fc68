"""Score replies under the policy (its adapter) and the reference (adapters off, or the frozen
reference adapter: :func:`lit_dpo.models.reference.as_reference`).

Two uses in ``lit-dpo compare``: the implicit DPO reward of a generated answer,
``beta * (log p_policy(answer | prompt) - log p_reference(answer | prompt))``, and the preference
metrics of the held-out split (DPO paper, section 5), under the keys validation logs (without its
``val/`` prefix; TRL's ``rewards/*`` names), computed by validation's own statistics and metrics
(:mod:`lit_dpo.train.metrics`). Replies are
tokenized by :mod:`lit_dpo.data.batches` and scored by the training's own forward
(:func:`lit_dpo.train.forward.batch_token_logps`), so the numbers agree with ``lit-dpo validate``.
Like training, it takes the fastest path that gives full logits' numbers for the model: the
output head on reply tokens only, and each pair's prompt run once (``scoring_path``); on the
held-out pairs of the quality study that was about 1.5 times faster than full logits.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from lit_dpo.data.batches import collate_pairs, encode_pair
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.errors import ConfigError
from lit_dpo.models.reference import as_reference
from lit_dpo.progress import track
from lit_dpo.sources import pad_token_id
from lit_dpo.train.forward import (
    DEFAULT_CHUNK_SIZE,
    batch_token_logps,
    check_hidden_state_scoring,
)
from lit_dpo.train.metrics import (
    computed,
    heldout_metric_set,
    pair_outcomes,
    pair_statistics,
    update_metrics,
)
from lit_dpo.train.pairs import num_pairs, split_pairs


def scoring_path(model: PeftModel) -> tuple[int | None, bool]:
    """``(chunk_size, share_prompt)`` of the fastest path that gives full logits' numbers here:
    packed pairs where the attention takes their mask, the chunked head where the head is plain,
    else full logits (an adapted head, rescaled logits)."""
    for chunk_size, share_prompt in ((DEFAULT_CHUNK_SIZE, True), (DEFAULT_CHUNK_SIZE, False)):
        try:
            check_hidden_state_scoring(model, share_prompt)
        except ConfigError:
            continue
        return chunk_size, share_prompt
    return None, False


def reply_logps(
    model: PeftModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each batch row's reply, under the policy and the reference.

    Args:
        model: the PEFT model; its active adapter is the policy, :func:`as_reference` the
            reference.
        batch: ``input_ids``, ``attention_mask``, ``labels``, each (N, T), from ``collate_pairs``.

    Returns:
        ``(policy_logps, reference_logps, counts)``, each (N,): counts are scored reply tokens.
    """
    device = next(model.parameters()).device
    batch = {key: value.to(device) for key, value in batch.items()}
    chunk_size, share_prompt = scoring_path(model)
    with torch.no_grad():
        policy = batch_token_logps(model, batch, chunk_size, share_prompt)
        with as_reference(model):
            reference = batch_token_logps(model, batch, chunk_size, share_prompt).sums()
    return policy.sums().cpu(), reference.cpu(), policy.counts().cpu()


def answer_rewards(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    answers: tuple[str, str],
    beta: float,
    max_length: int,
    max_prompt_length: int,
) -> tuple[float, float]:
    """Implicit DPO rewards of two answers to the same conversation.

    Each answer is scored as a training reply is: rendered with the chat template, followed by the
    template's end-of-turn, the prompt keeping its last ``max_prompt_length`` tokens.

    Returns:
        ``beta * (log p_policy - log p_reference)`` of each answer, in the order given.
    """
    # A pair is just two replies to one prompt here: batches' chosen/rejected slots carry them.
    pair = PreferencePair(messages, answers[0], answers[1])
    encoded = encode_pair(pair, tokenizer, max_length, max_prompt_length)
    policy, reference, _ = reply_logps(model, collate_pairs([encoded], pad_token_id(tokenizer)))
    rewards = beta * (policy - reference)
    return float(rewards[0]), float(rewards[1])


def dpo_pair_statistics(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, counts: torch.Tensor, beta: float
) -> dict[str, torch.Tensor]:
    """Validation's statistics of a batch (``train.metrics.pair_statistics``) with DPO's implicit
    rewards ``beta * (log p_policy - log p_reference)``; all inputs (2P,), chosen rows first."""
    rewards = beta * (policy_logps - reference_logps)
    return pair_statistics(policy_logps, reference_logps, counts, *split_pairs(rewards))


def preference_summary(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    chosen_counts: torch.Tensor,
    rejected_counts: torch.Tensor,
    beta: float,
) -> dict[str, float]:
    """Held-out preference metrics from per-pair summed log-probabilities (all tensors (P,)),
    by the metrics validation logs (:func:`lit_dpo.train.metrics.heldout_metric_set`).

    Accuracies count ties as wrong, as in training. Perplexity is per token over all chosen
    replies together: ``exp(-sum(log p) / sum(tokens))``.

    Returns:
        ``pairs``; ``logps_accuracy/{reference,policy}`` and ``logps_accuracy_per_token/...`` (share
        of pairs where the model gives the chosen reply the higher log-probability, summed or per
        token); ``rewards/accuracies`` and ``rewards/margins`` (implicit reward of chosen above
        rejected); ``perplexity_chosen/{reference,policy}``.

    Raises:
        ValueError: the inputs differ in shape.
    """
    tensors = (policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    shapes = {tuple(t.shape) for t in (*tensors, chosen_counts, rejected_counts)}
    if len(shapes) != 1:
        raise ValueError(f"per-pair tensors must share one shape (P,), got {sorted(shapes)}")
    metrics = heldout_metric_set()
    statistics = dpo_pair_statistics(
        torch.cat([policy_chosen, policy_rejected]),
        torch.cat([reference_chosen, reference_rejected]),
        torch.cat([chosen_counts, rejected_counts]),
        beta,
    )
    update_metrics(metrics, statistics)
    return {"pairs": float(policy_chosen.numel()), **computed(metrics)}


def heldout_metrics(
    model: PeftModel, batches: Iterable[dict[str, torch.Tensor]], beta: float
) -> dict[str, float]:
    """:func:`preference_summary` over batches of pairs (``collate_pairs``: chosen rows first):
    each batch updates the metrics validation updates, with the statistics it computes.

    Shows a progress bar with an ETA when the iterable has a length.
    """
    return heldout_evaluation(model, batches, beta)[0]


def heldout_evaluation(
    model: PeftModel, batches: Iterable[dict[str, torch.Tensor]], beta: float
) -> tuple[dict[str, float], dict[str, list[int]]]:
    """:func:`heldout_metrics`, and per pair (in batch order) what each accuracy averages
    (``train.metrics.pair_outcomes``: 1 right, 0 wrong), for intervals over pairs
    (``lit_dpo.stats.interval_summary``) and paired comparisons of two runs."""
    metrics = heldout_metric_set()
    pairs = 0
    outcomes: dict[str, list[int]] = {}
    for batch in track(batches, "scoring held-out pairs", unit="batches"):
        policy, reference, counts = reply_logps(model, batch)
        statistics = dpo_pair_statistics(policy, reference, counts, beta)
        update_metrics(metrics, statistics)
        pairs += num_pairs(policy)
        for key, correct in pair_outcomes(statistics).items():
            outcomes.setdefault(key, []).extend(correct.tolist())
    return {"pairs": float(pairs), **computed(metrics)}, outcomes
