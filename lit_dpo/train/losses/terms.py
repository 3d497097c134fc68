"""The pieces objectives are built from, beyond the losses themselves (pure).

- ``sft_nll``: the negative log-likelihood of the chosen replies per token: the SFT term
  (``model.objective.sft_weight``, ``loss_type sft``) and the NLL of CPO and ORPO.
- ``ld_logps``: LD-DPO, Liu et al. 2024, https://arxiv.org/abs/2409.06411: a reply's log-prob
  with the tokens past the length it shares with the other reply of its pair down-weighted.
- ``wpo_weights``: WPO, Zhou et al. 2024, https://arxiv.org/abs/2406.11827, eq. 2: a per-pair
  weight, the likelihood of the pair under the policy, which makes off-policy pairs count less.
- ``f_divergence_scores``: f-DPO, Wang et al. 2023, https://arxiv.org/abs/2309.16240: the
  reward ``f'(pi / pi_ref)`` that replaces DPO's log-ratio under another f-divergence.
- ``running_mean``: BCO's reward shift, the mean of the per-step mean rewards so far.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from lit_dpo.train.pairs import split_pairs

FDivergence = Literal["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]


def sft_nll(chosen_logps: torch.Tensor, chosen_counts: torch.Tensor) -> torch.Tensor:
    """``-sum(log p of every chosen token) / (number of chosen tokens)``, over the whole batch.

    A token-level mean, as a causal LM's ``loss`` (and TRL's ``sft`` loss type, CPO's and ORPO's
    NLL) computes it: long replies weigh in proportion to their length. It is a mean over the
    micro-batch, so, as for any causal LM loss, gradient accumulation averages micro-batch means.

    Args:
        chosen_logps: (B,) summed log-prob of each chosen reply.
        chosen_counts: (B,) scored tokens of each chosen reply.

    Returns:
        () the mean NLL per chosen token.
    """
    if chosen_logps.shape != chosen_counts.shape:
        raise ValueError(
            f"chosen_logps and chosen_counts must share one shape (B,), got "
            f"{tuple(chosen_logps.shape)} and {tuple(chosen_counts.shape)}"
        )
    return -chosen_logps.sum() / chosen_counts.sum().clamp(min=1)


def completion_ranks(rows: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's position within its row's completion, and each row's token count.

    Args:
        rows: (M,) row of each scored token; a row's tokens in order (they need not be adjacent).
        num_rows: number of rows.

    Returns:
        ``(ranks, counts)``: (M,) 0-based position, (num_rows,) tokens per row.
    """
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=num_rows)
    starts = counts.cumsum(0) - counts
    ranks = torch.empty_like(rows)
    ranks[order] = torch.arange(len(rows), device=rows.device) - starts[rows[order]]
    return ranks, counts


def ld_logps(
    token_logps: torch.Tensor, rows: torch.Tensor, num_rows: int, alpha: float
) -> torch.Tensor:
    """LD-DPO's log-prob: ``sum_{t <= l} log p(y_t) + alpha sum_{t > l} log p(y_t)``.

    ``l`` is the length a pair's chosen and rejected replies share, ``min(|y_c|, |y_r|)``: the
    longer reply's tokens past it (the "verbose" part) count ``alpha`` times, so that DPO's
    preference for longer replies weakens. ``alpha`` = 1 is plain DPO; 0 ignores the tail.

    Args:
        token_logps: (M,) log-prob of each scored token.
        rows: (M,) its row: pair i's chosen reply is row i, its rejected row B + i (2B rows).
        num_rows: 2B.
        alpha: weight of the tail tokens, in [0, 1].

    Returns:
        (2B,) weighted sums.
    """
    if num_rows % 2:
        raise ValueError(f"expected chosen and rejected rows (2B), got {num_rows}")
    ranks, counts = completion_ranks(rows, num_rows)
    shared = torch.minimum(*split_pairs(counts)).repeat(2)
    weights = torch.where(ranks < shared[rows], 1.0, alpha).to(token_logps.dtype)
    totals = torch.zeros(num_rows, dtype=token_logps.dtype, device=token_logps.device)
    return totals.index_add(0, rows, token_logps * weights)


@torch.no_grad()
def wpo_weights(
    token_logps: torch.Tensor, log_sum_sq: torch.Tensor, rows: torch.Tensor, num_rows: int
) -> torch.Tensor:
    """WPO's pair weight: ``w(y_c) w(y_r)``, ``w(y) = exp(mean_t [log p(y_t) - log sum_v p(v)^2])``.

    ``w(y)`` is how likely the policy is to generate ``y`` now, per token, relative to how peaked
    each step's distribution is (``sum_v p(v)^2`` is the probability of sampling the same token
    twice): pairs the policy would not write count less, which makes offline pairs act more like
    on-policy ones. A weight, so computed without gradient.

    Args:
        token_logps: (M,) log-prob of each scored token under the policy.
        log_sum_sq: (M,) ``log sum_v p(v)^2`` of the distribution that scored it.
        rows: (M,) its row (chosen rows first, then rejected).
        num_rows: 2B.

    Returns:
        (B,) weight of each pair, in (0, 1].
    """
    if not token_logps.shape == log_sum_sq.shape == rows.shape:
        raise ValueError(
            f"token_logps, log_sum_sq and rows must share one shape (M,), got "
            f"{tuple(token_logps.shape)}, {tuple(log_sum_sq.shape)}, {tuple(rows.shape)}"
        )
    aligned = (token_logps - log_sum_sq).float()
    totals = torch.zeros(num_rows, device=aligned.device).index_add(0, rows, aligned)
    counts = torch.bincount(rows, minlength=num_rows).clamp(min=1)
    chosen, rejected = split_pairs(torch.exp(totals / counts))
    return chosen * rejected


def f_divergence_scores(
    logratios: torch.Tensor, divergence: FDivergence = "reverse_kl", alpha: float = 0.5
) -> torch.Tensor:
    """A reply's score ``f'(u)``, ``u = pi(y|x) / pi_ref(y|x)``, under the f-divergence ``f``.

    f-DPO replaces DPO's reward ``beta log u`` by ``beta f'(u)`` (their Table 1); only the
    chosen-minus-rejected difference enters a loss, so constants in ``f'`` do not matter.

    - reverse_kl (DPO): ``log u``
    - forward_kl: ``1 - 1 / u``
    - js_divergence: ``log(2u / (1 + u)) = log 2 + log sigmoid(log u)``
    - alpha_divergence: ``(1 - u^-alpha) / alpha``, alpha in (0, 1); reverse KL as alpha -> 0,
      forward KL at alpha = 1. TRL 1.16 computes ``(u^(alpha - 1) - 1) / (alpha - 1)``, the
      paper's formula at ``1 - alpha``: the two agree at the default 0.5 only
      (tests/test_objectives_trl.py). The exponent is clamped at 80 so fp32 does not overflow.

    Args:
        logratios: log-ratios ``log u``, any shape.
        divergence: the f-divergence.
        alpha: the alpha-divergence's coefficient.
    """
    if divergence == "reverse_kl":
        return logratios
    if divergence == "forward_kl":
        return 1 - torch.exp(-logratios)
    if divergence == "js_divergence":
        return math.log(2) + F.logsigmoid(logratios)
    if divergence == "alpha_divergence":
        exponent = torch.clamp(-alpha * logratios.float(), max=80.0)
        # -expm1: 1 - exp(.) without cancellation when alpha * log u is small
        return (-torch.expm1(exponent) / alpha).to(logratios.dtype)
    raise ValueError(f"unknown f-divergence {divergence!r}")


def running_mean(mean: float, count: int, value: float) -> tuple[float, int]:
    """The mean of ``count`` values, updated with one more: ``(mean + (value - mean) / (n + 1))``.

    Returns:
        ``(new_mean, count + 1)``.
    """
    count += 1
    return mean + (value - mean) / count, count
