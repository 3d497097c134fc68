"""Logits and labels -> per-sequence log-probabilities of the completion tokens (pure maths)."""

from __future__ import annotations

import torch

from lit_dpo.batches import IGNORE_INDEX


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the log-probabilities the model gives each scored label token.

    Position t's logits predict token t+1, so logits and labels are shifted by one. Log-probs are
    computed as ``logit[label] - logsumexp(logits)`` in fp32, which never materialises a second
    full-vocabulary tensor the way ``log_softmax(...).gather(...)`` does.

    Args:
        logits: (N, T, V) next-token logits.
        labels: (N, T) token ids, ``ignore_index`` where a token is not scored (prompt, padding).
        ignore_index: label value of unscored positions.

    Returns:
        ``(logps, counts)``: each (N,), the summed log-probability and the number of scored tokens.

    Raises:
        ValueError: the shapes of ``logits`` and ``labels`` disagree.
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits (N, T, V) and labels (N, T) disagree: {tuple(logits.shape)} vs "
            f"{tuple(labels.shape)}"
        )
    logits, labels = logits[:, :-1], labels[:, 1:]
    scored = labels != ignore_index
    safe_labels = labels.masked_fill(~scored, 0).unsqueeze(-1)
    picked = logits.gather(-1, safe_labels).squeeze(-1).float()
    token_logps = picked - torch.logsumexp(logits.float(), dim=-1)
    return (token_logps * scored).sum(-1), scored.sum(-1)
