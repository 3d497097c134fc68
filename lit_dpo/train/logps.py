"""Logits or hidden states, labels -> per-sequence log-probabilities of completions (pure maths).

``sequence_logps`` scores full (N, T, V) logits. ``completion_logps`` starts from the last hidden
states instead and applies the output head only where a token is scored, a few hundred rows at a
time: a batch's full-vocabulary fp32 logits (N x T x 49,152 for SmolLM2, x 151,936 for Qwen2) are
never materialised, and prompt and padding positions cost no head matmul. TRL's ``fused_lm_head``
(``trl/trainer/utils.py``) and Liger's fused linear cross-entropy do the same on GPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_dpo.data.batches import IGNORE_INDEX


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


def token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probability of one target token per hidden state, through a frozen output head.

    Equal to ``log_softmax(hidden @ weight.T + bias)[target]`` row by row, but the (rows, V) logits
    exist for ``chunk_size`` rows at a time and are never kept for backward: the gradient with
    respect to the hidden state, ``weight[target] - softmax @ weight``, is (rows, H) and is worked
    out in the forward pass while the chunk's logits are at hand. That is why the head must be
    frozen (it always is under LoRA): its own gradient would need the logits again.

    Args:
        hidden: (M, H) hidden states, one per scored token.
        weight: (V, H) output head (``lm_head.weight``), frozen.
        targets: (M,) token ids to score.
        chunk_size: rows projected at once; memory is ``chunk_size * V`` fp32 values.
        bias: (V,) output head bias, if the head has one.

    Returns:
        (M,) fp32 log-probabilities.

    Raises:
        ValueError: mismatched shapes, a chunk size below 1, or a head that needs a gradient.
    """
    if (
        hidden.dim() != 2
        or targets.shape != hidden.shape[:1]
        or weight.shape[1:] != hidden.shape[1:]
    ):
        raise ValueError(
            f"hidden (M, H), targets (M,) and weight (V, H) disagree: {tuple(hidden.shape)}, "
            f"{tuple(targets.shape)}, {tuple(weight.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if torch.is_grad_enabled() and (
        weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        raise ValueError(
            "token_logps gives the output head no gradient, but its weight requires one; freeze "
            "the head or score full logits with sequence_logps"
        )
    return _FrozenHeadLogps.apply(hidden, weight, bias, targets, chunk_size)


def completion_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_size: int,
    bias: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sequence_logps(hidden @ weight.T + bias, labels)`` with the head applied only where scored.

    Position t's hidden state predicts label t+1; only positions whose label is scored (the
    completion, usually a third to a half of a padded batch) go through the output head, in
    chunks (see ``token_logps``).

    Args:
        hidden: (N, T, H) last hidden states (after the final norm).
        weight: (V, H) frozen output head.
        labels: (N, T) token ids, ``ignore_index`` where a token is not scored.
        chunk_size: scored positions projected at once.
        bias: (V,) output head bias, if any.
        ignore_index: label value of unscored positions.

    Returns:
        ``(logps, counts)``: each (N,), the summed log-probability and the number of scored tokens.

    Raises:
        ValueError: the shapes of ``hidden`` and ``labels`` disagree.
    """
    if hidden.dim() != 3 or hidden.shape[:2] != labels.shape:
        raise ValueError(
            f"hidden (N, T, H) and labels (N, T) disagree: {tuple(hidden.shape)} vs "
            f"{tuple(labels.shape)}"
        )
    n, t = labels.shape
    scored = labels[:, 1:] != ignore_index
    rows, steps = scored.nonzero(as_tuple=True)
    logps = gathered_logps(
        hidden.reshape(n * t, -1),
        weight,
        positions=rows * t + steps,
        targets=labels[:, 1:][scored],
        sequences=rows,
        num_sequences=n,
        chunk_size=chunk_size,
        bias=bias,
    )
    return logps, scored.sum(-1)


def gathered_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    positions: torch.Tensor,
    targets: torch.Tensor,
    sequences: torch.Tensor,
    num_sequences: int,
    chunk_size: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum per sequence the log-probabilities of ``targets`` predicted at ``positions``.

    The general form behind ``completion_logps`` and the packed pairs of ``lit_dpo.train.packing``,
    where the state that predicts a token is not always the one right before it.

    Args:
        hidden: (P, H) hidden states, flattened over batch and time.
        weight: (V, H) frozen output head.
        positions: (M,) row of ``hidden`` that predicts each scored token.
        targets: (M,) scored token ids.
        sequences: (M,) the sequence each scored token belongs to, in ``[0, num_sequences)``.
        num_sequences: number of sequences.
        chunk_size: scored tokens projected at once.
        bias: (V,) output head bias, if any.

    Returns:
        (num_sequences,) fp32 summed log-probabilities (0 for a sequence with nothing scored).
    """
    if not positions.shape == targets.shape == sequences.shape:
        raise ValueError(
            f"positions, targets and sequences must share one shape (M,), got "
            f"{tuple(positions.shape)}, {tuple(targets.shape)}, {tuple(sequences.shape)}"
        )
    per_token = token_logps(hidden[positions], weight, targets, chunk_size, bias)
    totals = torch.zeros(num_sequences, dtype=per_token.dtype, device=per_token.device)
    return totals.index_add(0, sequences, per_token)


class _FrozenHeadLogps(torch.autograd.Function):
    """The kernel of ``token_logps``: chunked log-softmax at targets, gradient to hidden only."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        needs_grad = ctx.needs_input_grad[0]
        logps = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        # d logp / d hidden = weight[target] - softmax(logits) @ weight: (M, H), small next to the
        # (M, V) logits that autograd would otherwise keep.
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            target = targets[rows]
            # The head's dtype, then fp32: what ``lm_head`` followed by ``sequence_logps`` computes.
            logits = F.linear(hidden[rows].to(weight.dtype), weight, bias).float()
            normaliser = logits.logsumexp(-1)
            logps[rows] = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - normaliser
            if needs_grad:
                probs = logits.sub_(normaliser.unsqueeze(-1)).exp_()
                expected = (probs.to(weight.dtype) @ weight).float()
                grad_hidden[rows] = (weight[target].float() - expected).to(hidden.dtype)
            del logits
        ctx.save_for_backward(grad_hidden)
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        (grad_hidden,) = ctx.saved_tensors
        return grad_logps.unsqueeze(-1).to(grad_hidden.dtype) * grad_hidden, None, None, None, None
