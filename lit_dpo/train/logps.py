"""Logits or hidden states, labels -> per-sequence log-probabilities of completions (pure maths).

``sequence_tokens`` scores full (N, T, V) logits. ``completion_tokens`` starts from the last hidden
states instead and applies the output head only where a token is scored, a few hundred rows at a
time: a batch's full-vocabulary fp32 logits (N x T x 49,152 for SmolLM2, x 151,936 for Qwen2) are
never materialised, and prompt and padding positions cost no head matmul. TRL's ``fused_lm_head``
(``trl/trainer/utils.py``) and Liger's fused linear cross-entropy do the same on GPUs.

Objectives that need more than a sum per sequence (LD-DPO's length split, the WPO weights of
``lit_dpo.train.losses``) start from ``ScoredTokens``: one entry per scored token, optionally with
``log sum_v p(v)^2`` of the distribution that scored it, computed in the same pass without
gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lit_dpo.data.batches import IGNORE_INDEX
from lit_dpo.train.losses.terms import ld_logps


@dataclass
class ScoredTokens:
    """The scored (completion) tokens of N sequences, one entry per token.

    Attributes:
        logps: (M,) fp32 log-probability of each token (with gradient where the model has one).
        rows: (M,) the sequence each token belongs to, in ``[0, num_rows)``; a sequence's tokens
            are in order (``losses.terms.ld_logps`` relies on it).
        num_rows: N.
        log_sum_sq: (M,) ``log sum_v p(v)^2`` of the distribution that scored each token, without
            gradient (WPO's weights), when asked for; else None.
    """

    logps: torch.Tensor
    rows: torch.Tensor
    num_rows: int
    log_sum_sq: torch.Tensor | None = None

    def sums(self) -> torch.Tensor:
        """(N,) summed log-probability of each sequence (0 where nothing is scored)."""
        totals = torch.zeros(self.num_rows, dtype=self.logps.dtype, device=self.logps.device)
        return totals.index_add(0, self.rows, self.logps)

    def counts(self) -> torch.Tensor:
        """(N,) scored tokens of each sequence."""
        return torch.bincount(self.rows, minlength=self.num_rows)


def row_logps(tokens: ScoredTokens, ld_alpha: float | None = None) -> torch.Tensor:
    """(N,) summed log-probs per row; with ``ld_alpha``, LD-DPO's (``losses.terms.ld_logps``)."""
    if ld_alpha is None:
        return tokens.sums()
    return ld_logps(tokens.logps, tokens.rows, tokens.num_rows, ld_alpha)


def sequence_tokens(
    logits: torch.Tensor,
    labels: torch.Tensor,
    log_sum_sq: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> ScoredTokens:
    """The log-probability of each scored label token of full (N, T, V) logits.

    Position t's logits predict token t+1, so logits and labels are shifted by one. A token's
    log-prob is ``logit[label] - logsumexp(logits)`` in fp32 at the scored positions only, which
    never materialises a second full-vocabulary tensor as ``log_softmax(...).gather(...)`` would.

    Args:
        logits: (N, T, V) next-token logits.
        labels: (N, T) token ids, ``ignore_index`` where a token is not scored.
        log_sum_sq: also return ``log sum_v p(v)^2`` at each scored token (no gradient).
        ignore_index: label value of unscored positions.

    Raises:
        ValueError: the shapes of ``logits`` and ``labels`` disagree.
    """
    _check_logits(logits, labels)
    logits, labels = logits[:, :-1], labels[:, 1:]
    scored = labels != ignore_index
    rows, steps = scored.nonzero(as_tuple=True)
    picked = logits[rows, steps]  # (M, V): the scored positions only
    normaliser = torch.logsumexp(picked.float(), dim=-1)
    logps = picked.gather(-1, labels[rows, steps].unsqueeze(-1)).squeeze(-1).float() - normaliser
    sum_sq = None
    if log_sum_sq:
        with torch.no_grad():
            sum_sq = torch.logsumexp(2 * picked.float(), dim=-1) - 2 * normaliser
    return ScoredTokens(logps, rows, labels.shape[0], sum_sq)


def completion_tokens(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_size: int,
    bias: torch.Tensor | None = None,
    log_sum_sq: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> ScoredTokens:
    """``sequence_tokens(hidden @ weight.T + bias, labels)``, the head applied only where scored.

    Position t's hidden state predicts label t+1; only positions whose label is scored (the
    completion, usually a third to a half of a padded batch) go through the output head, in
    chunks (see ``_head_logps``).

    Args:
        hidden: (N, T, H) last hidden states (after the final norm).
        weight: (V, H) frozen output head.
        labels: (N, T) token ids, ``ignore_index`` where a token is not scored.
        chunk_size: scored positions projected at once.
        bias: (V,) output head bias, if any.
        log_sum_sq: also compute ``log sum_v p(v)^2`` at each scored token (no gradient).
        ignore_index: label value of unscored positions.

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
    return gathered_tokens(
        hidden.reshape(n * t, -1),
        weight,
        positions=rows * t + steps,
        targets=labels[:, 1:][scored],
        sequences=rows,
        num_sequences=n,
        chunk_size=chunk_size,
        bias=bias,
        log_sum_sq=log_sum_sq,
    )


def gathered_tokens(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    positions: torch.Tensor,
    targets: torch.Tensor,
    sequences: torch.Tensor,
    num_sequences: int,
    chunk_size: int,
    bias: torch.Tensor | None = None,
    log_sum_sq: bool = False,
) -> ScoredTokens:
    """The log-probabilities of ``targets`` predicted at ``positions``, by sequence.

    The general form behind ``completion_tokens`` and the packed pairs of
    ``lit_dpo.train.packing``, where the state that predicts a token is not always the one right
    before it.

    Args:
        hidden: (P, H) hidden states, flattened over batch and time.
        weight: (V, H) frozen output head.
        positions: (M,) row of ``hidden`` that predicts each scored token.
        targets: (M,) scored token ids.
        sequences: (M,) the sequence each scored token belongs to, in ``[0, num_sequences)``,
            each sequence's tokens in order.
        num_sequences: number of sequences.
        chunk_size: scored tokens projected at once.
        bias: (V,) output head bias, if any.
        log_sum_sq: also compute ``log sum_v p(v)^2`` at each scored token (no gradient).
    """
    if not positions.shape == targets.shape == sequences.shape:
        raise ValueError(
            f"positions, targets and sequences must share one shape (M,), got "
            f"{tuple(positions.shape)}, {tuple(targets.shape)}, {tuple(sequences.shape)}"
        )
    logps, sum_sq = _head_logps(hidden[positions], weight, targets, chunk_size, bias, log_sum_sq)
    return ScoredTokens(logps, sequences, num_sequences, sum_sq)


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits (N, T, V) and labels (N, T) disagree: {tuple(logits.shape)} vs "
            f"{tuple(labels.shape)}"
        )


def _head_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    bias: torch.Tensor | None = None,
    log_sum_sq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of one target token per hidden state, through a frozen output head, and
    ``log sum_v p(v)^2`` per row when ``log_sum_sq`` (else None).

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
        log_sum_sq: also compute ``log sum_v p(v)^2`` (no gradient).

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
            "scoring hidden states gives the output head no gradient, but its weight requires "
            "one; freeze the head or score full logits with sequence_tokens"
        )
    logps, sum_sq = _FrozenHeadLogps.apply(hidden, weight, bias, targets, chunk_size, log_sum_sq)
    return logps, sum_sq if log_sum_sq else None


class _FrozenHeadLogps(torch.autograd.Function):
    """The kernel of ``_head_logps``: chunked log-softmax at targets, gradient to hidden only.

    With ``log_sum_sq`` it also returns ``log sum_v p(v)^2 = logsumexp(2 z) - 2 logsumexp(z)``
    per row from the same chunk of logits ``z`` (one more reduction over the vocabulary), as a
    constant: no gradient flows through it. Without, that output is empty.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, log_sum_sq):
        needs_grad = ctx.needs_input_grad[0]
        logps = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        sum_sq = torch.empty(hidden.shape[0] if log_sum_sq else 0, device=hidden.device)
        # d logp / d hidden = weight[target] - softmax(logits) @ weight: (M, H), small next to the
        # (M, V) logits that autograd would otherwise keep.
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            target = targets[rows]
            # the head's dtype, then fp32: what ``lm_head`` then ``sequence_tokens`` computes
            logits = F.linear(hidden[rows].to(weight.dtype), weight, bias).float()
            normaliser = logits.logsumexp(-1)
            logps[rows] = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - normaliser
            if log_sum_sq:
                sum_sq[rows] = (2 * logits).logsumexp(-1) - 2 * normaliser
            if needs_grad:
                probs = logits.sub_(normaliser.unsqueeze(-1)).exp_()
                expected = (probs.to(weight.dtype) @ weight).float()
                grad_hidden[rows] = (weight[target].float() - expected).to(hidden.dtype)
            del logits
        ctx.save_for_backward(grad_hidden)
        ctx.mark_non_differentiable(sum_sq)
        return logps, sum_sq

    @staticmethod
    def backward(ctx, grad_logps, grad_sum_sq):
        (grad_hidden,) = ctx.saved_tensors
        grad = grad_logps.unsqueeze(-1).to(grad_hidden.dtype) * grad_hidden
        return grad, None, None, None, None, None
