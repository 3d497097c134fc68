"""A step of an unpaired objective (KTO): scored completions and KL rows -> loss and statistics.

A batch of B unpaired rows is 2B rows as a batch of pairs is (``data.unpaired``): the B
completions, then each one's KL row (its prompt with another row's completion). ``unpaired_step``
takes the policy's and reference's log-probs of all 2B, estimates KTO's KL baseline from the KL
rows (``losses.kto.kl_baseline``, no gradient) and applies the record's loss to the completions.
``paired_step`` scores held-out *pairs* with the same loss (chosen desirable, rejected
undesirable, the KL baseline training last reached), so a KTO run reports the implicit-reward and
log-prob accuracies of DPO runs and compares with them in one table. Pure: tensors in, tensors out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lit_dpo.train.logps import ScoredTokens, row_logps
from lit_dpo.train.losses import Objective, ObjectiveResult
from lit_dpo.train.losses.kto import UnpairedTerms, kl_baseline
from lit_dpo.train.metrics import step_statistics
from lit_dpo.train.pairs import split_pairs


def _sums(scored: ScoredTokens | torch.Tensor) -> torch.Tensor:
    return row_logps(scored, None) if isinstance(scored, ScoredTokens) else scored


def _losses(objective: Objective, terms: UnpairedTerms) -> torch.Tensor:
    (record,) = objective.records
    return objective.weights[0] * record.loss(objective, terms)


def unpaired_step(
    objective: Objective,
    policy: ScoredTokens | torch.Tensor,
    reference: ScoredTokens | torch.Tensor,
    labels: torch.Tensor,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Loss and statistics of an unpaired objective on B rows.

    Args:
        objective: one unpaired loss type (``kto``, ``apo_zero_unpaired``) and its settings.
        policy: the policy's scores of the 2B rows (completions, then their KL rows), or their
            (2B,) summed log-probs; the completions with gradient.
        reference: the same under the reference.
        labels: (B,) bool, true for a desirable completion.
        gather: stacks a () tensor from every rank (DDP), for the KL baseline; None on one.

    Returns:
        ``loss`` (with gradient), ``losses`` (B,), ``kl``, the TRL metrics by name (``rewards/
        chosen`` the desirable replies' rewards, ``rewards/rejected`` the undesirable ones'),
        ``count/desirable``, ``count/undesirable``, and ``rewards`` and ``labels`` (B,) for AUC.
    """
    policy_logps, policy_kl = split_pairs(_sums(policy))
    reference_logps, reference_kl = split_pairs(_sums(reference).to(policy_logps.dtype))
    labels = labels.to(torch.bool)
    if objective.needs_kl:
        kl = kl_baseline(policy_kl, reference_kl, gather)
    else:
        kl = torch.zeros((), device=policy_logps.device, dtype=policy_logps.dtype)
    losses = _losses(objective, UnpairedTerms(policy_logps, reference_logps, labels, kl))
    rewards = objective.beta * (policy_logps - reference_logps).detach()
    chosen, rejected = rewards[labels], rewards[~labels]
    stats = {
        "loss": losses.mean(),
        "losses": losses.detach(),
        "kl": kl.detach(),
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "logps/chosen": policy_logps.detach()[labels],
        "logps/rejected": policy_logps.detach()[~labels],
        "reference_logps/chosen": reference_logps[labels],
        "reference_logps/rejected": reference_logps[~labels],
        "count/desirable": labels.sum().to(rewards.dtype),
        "count/undesirable": (~labels).sum().to(rewards.dtype),
        "rewards": rewards,
        "labels": labels,
    }
    # TRL's margin: mean desirable reward minus mean undesirable, where the batch has both
    empty = rewards.new_zeros((0,))
    stats["rewards/margins"] = (
        (chosen.mean() - rejected.mean()).reshape(1) if len(chosen) and len(rejected) else empty
    )
    return stats


def paired_step(
    objective: Objective,
    policy: ScoredTokens,
    reference: ScoredTokens | torch.Tensor,
    kl: float,
) -> dict[str, torch.Tensor]:
    """An unpaired objective's statistics on B held-out pairs, under the names DPO logs.

    Each pair's chosen reply is scored as desirable and its rejected reply as undesirable, against
    ``kl`` (no KL rows are in a batch of pairs: the baseline training last estimated). A pair's
    loss is the mean of its two replies'.

    Returns:
        ``metrics.step_statistics``: loss, rewards, log-probs and per-token log-probs of policy
        and reference, so ``rewards/accuracies`` and ``logps_accuracy/*`` are DPO's.
    """
    policy_logps, counts = _sums(policy), policy.counts()
    reference_logps = _sums(reference).to(policy_logps.dtype)
    pairs = policy_logps.shape[0] // 2
    labels = torch.arange(2 * pairs, device=policy_logps.device) < pairs
    baseline = torch.tensor(kl, device=policy_logps.device, dtype=policy_logps.dtype)
    losses = _losses(objective, UnpairedTerms(policy_logps, reference_logps, labels, baseline))
    chosen_losses, rejected_losses = split_pairs(losses)
    rewards = objective.beta * (policy_logps - reference_logps).detach()
    chosen_rewards, rejected_rewards = split_pairs(rewards)
    result = ObjectiveResult(
        losses.mean(), ((chosen_losses + rejected_losses) / 2).detach(), chosen_rewards,
        rejected_rewards, {}
    )
    return step_statistics(result, policy_logps, reference_logps, counts)

