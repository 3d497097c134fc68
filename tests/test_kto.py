"""KTO and unpaired APO-zero as pure functions: hand-worked numbers, TRL's own loss code on the same
tensors, and where TRL departs from the paper.

Hand-worked case (beta 0.1): two completions, policy log-probs (-1, -2), reference (-2, -1), the
first desirable, the second not; their KL rows have policy log-probs (-3, -5), reference (-4, -5).

- KL baseline z0 = max(0, mean(-3 - -4, -5 - -5)) = mean(1, 0) = 0.5.
- desirable: r = -1 - -2 = 1; loss = 1 - sigmoid(0.1 * (1 - 0.5)) = 1 - sigmoid(0.05)
  = 1 - 0.5124973965 = 0.4875026035.
- undesirable: r = -2 - -1 = -1; loss = 1 - sigmoid(0.1 * (0.5 - -1)) = 1 - sigmoid(0.15)
  = 1 - 0.5374298453 = 0.4625701547.
- mean 0.4750363791; with desirable_weight 2: (0.9750052070 + 0.4625701547) / 2 = 0.7187876809.
- apo_zero_unpaired: desirable 1 - sigmoid(0.1) = 0.4750208125; undesirable sigmoid(-0.1), the
  same 0.4750208125.
- rewards beta * r: (0.1, -0.1).
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lit_dpo.train.losses.kto import apo_zero_unpaired, kl_baseline, kto, weight_warning

POLICY = torch.tensor([-1.0, -2.0], dtype=torch.float64)
REFERENCE = torch.tensor([-2.0, -1.0], dtype=torch.float64)
LABELS = torch.tensor([True, False])
POLICY_KL = torch.tensor([-3.0, -5.0], dtype=torch.float64)
REFERENCE_KL = torch.tensor([-4.0, -5.0], dtype=torch.float64)


def test_kto_by_hand():
    kl = kl_baseline(POLICY_KL, REFERENCE_KL)
    assert kl.item() == pytest.approx(0.5)
    losses, rewards = kto(POLICY, REFERENCE, LABELS, kl, beta=0.1)
    assert losses.tolist() == pytest.approx([0.4875026035, 0.4625701547], abs=1e-9)
    assert losses.mean().item() == pytest.approx(0.4750363791, abs=1e-9)
    assert rewards.tolist() == pytest.approx([0.1, -0.1])
    weighted, _ = kto(POLICY, REFERENCE, LABELS, kl, beta=0.1, desirable_weight=2.0)
    assert weighted.mean().item() == pytest.approx(0.7187876809, abs=1e-9)


def test_apo_zero_unpaired_by_hand():
    losses, _ = apo_zero_unpaired(POLICY, REFERENCE, LABELS, None, beta=0.1)
    assert losses.tolist() == pytest.approx([0.4750208125, 0.4750208125], abs=1e-9)


def test_kl_baseline_is_detached_clamped_and_averaged_over_ranks():
    policy = torch.tensor([-5.0, -5.0], requires_grad=True)
    # this rank's mean log-ratio is -1: clamped to 0 on one process
    assert kl_baseline(policy, torch.tensor([-4.0, -4.0])).item() == 0.0
    # with another rank at +3, the ranks' means are averaged first, then clamped: (-1 + 3) / 2
    # = 1 (clamping each rank first would give 1.5)
    other = torch.tensor(3.0)
    kl = kl_baseline(policy, torch.tensor([-4.0, -4.0]), gather=lambda t: torch.stack([t, other]))
    assert kl.item() == 1.0 and not kl.requires_grad


def test_gradient_flows_through_the_completion_not_the_baseline():
    policy = POLICY.clone().requires_grad_()
    policy_kl = POLICY_KL.clone().requires_grad_()
    losses, _ = kto(policy, REFERENCE, LABELS, kl_baseline(policy_kl, REFERENCE_KL), beta=0.1)
    losses.mean().backward()
    assert policy.grad is not None and policy_kl.grad is None
    # a desirable completion's loss falls as its log-prob rises, an undesirable one's rises
    assert policy.grad[0] < 0 < policy.grad[1]


# --- TRL's own code ------------------------------------------------------------------------------


def trl_loss(loss_type, policy, reference, labels, policy_kl, reference_kl, beta, weights):
    """Run TRL 1.16's ``KTOTrainer._compute_loss`` itself on given log-probs.

    A stand-in model returns per-token log-probs whose first column holds each sequence's summed
    log-prob (the rest zero), so TRL's sum over positions gives back exactly the numbers given;
    the reference log-probs come in as precomputed (``ref_logps``, ``ref_KL_logps``). Everything
    from there to the loss, KL baseline and metrics is TRL's code.
    """
    from trl.trainer.kto_trainer import KTOTrainer

    width = 4
    input_ids = torch.zeros((len(labels), width), dtype=torch.long)
    kl_input_ids = torch.ones((len(labels), width), dtype=torch.long)

    def model(input_ids, **kwargs):
        sums = policy_kl if bool(input_ids[0, 0] == 1) else policy
        log_probs = torch.zeros((len(sums), width - 1), dtype=sums.dtype)
        log_probs[:, 0] = sums
        zeros = torch.zeros_like(log_probs)
        return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros)

    accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda t: t.reshape(-1)
    )
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=accelerator,
        calculate_KL=loss_type == "kto",
        loss_type=loss_type,
        beta=beta,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
        precompute_ref_logps=True,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    trainer._compute_kl_logps = lambda m, b: KTOTrainer._compute_kl_logps(trainer, m, b)
    mask = torch.ones_like(input_ids)
    batch = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "completion_mask": mask,
        "KL_input_ids": kl_input_ids,
        "KL_attention_mask": mask,
        "KL_completion_mask": mask,
        "label": labels,
        "ref_logps": reference,
        "ref_KL_logps": reference_kl,
    }
    loss = KTOTrainer._compute_loss(trainer, model, batch, return_outputs=False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_trl_on_the_same_tensors(loss_type, weights, seed):
    generator = torch.Generator().manual_seed(seed)
    size = 6
    policy = -10 * torch.rand(size, generator=generator, dtype=torch.float64)
    reference = policy + torch.randn(size, generator=generator, dtype=torch.float64)
    policy_kl = -10 * torch.rand(size, generator=generator, dtype=torch.float64)
    reference_kl = policy_kl + torch.randn(size, generator=generator, dtype=torch.float64) - 0.3
    labels = torch.rand(size, generator=generator) < 0.6
    expected, metrics = trl_loss(
        loss_type, policy, reference, labels, policy_kl, reference_kl, 0.3, weights
    )
    function = {"kto": kto, "apo_zero_unpaired": apo_zero_unpaired}[loss_type]
    kl = kl_baseline(policy_kl, reference_kl)
    losses, rewards = function(
        policy, reference, labels, kl, 0.3, desirable_weight=weights[0],
        undesirable_weight=weights[1],
    )
    assert losses.mean().item() == pytest.approx(expected.item(), rel=1e-12)
    if loss_type == "kto":
        assert metrics["kl"][-1] == pytest.approx(kl.item(), rel=1e-12)
    if labels.any():
        assert metrics["rewards/chosen"][-1] == pytest.approx(rewards[labels].mean().item())
    if not labels.all():
        assert metrics["rewards/rejected"][-1] == pytest.approx(rewards[~labels].mean().item())


def test_hand_worked_case_in_trl():
    loss, metrics = trl_loss("kto", POLICY, REFERENCE, LABELS, POLICY_KL, REFERENCE_KL, 0.1,
                             (1.0, 1.0))
    assert loss.item() == pytest.approx(0.4750363791, abs=1e-7)
    assert metrics["kl"] == [pytest.approx(0.5)]


# --- the weight warning: TRL's bounds, kto_trainer.py lines 1160-1185 ----------------------------


def test_weight_warning_with_trl_bounds():
    # 300 desirable, 100 undesirable at equal weights: ratio 3. TRL's bounds: desirable_weight in
    # [round(100/300, 2), round(100/300 * 1.33, 2)] = [0.33, 0.44]; undesirable_weight in
    # [round(300/100 / 1.33, 2), round(300/100, 2)] = [2.26, 3.0]
    message = weight_warning(300, 100, 1.0, 1.0)
    assert message is not None
    assert "weighted ratio of 3" in message
    assert "model.objective.desirable_weight in [0.33, 0.44]" in message
    assert "model.objective.undesirable_weight in [2.26, 3]" in message
    # either weight moved into its band silences it
    assert weight_warning(300, 100, 0.4, 1.0) is None
    assert weight_warning(300, 100, 1.0, 2.5) is None
    # the KTO paper's imbalanced experiment: a tenth of the desirable answers kept, and
    # desirable_weight raised to bring lambda_D n_D / (lambda_U n_U) into [1, 4/3]
    assert weight_warning(100, 1000, 1.0, 1.0) is not None
    assert weight_warning(100, 1000, 11.0, 1.0) is None


def test_trl_departs_from_the_paper_on_equal_counts():
    """The paper's Eq. (8) bounds the weighted ratio lambda_D n_D / (lambda_U n_U) to [1, 4/3]
    whatever the counts; TRL checks only when the counts differ, so equal counts with
    desirable_weight 2 (a weighted ratio of 2) go unwarned there, and here, as TRL."""
    assert weight_warning(500, 500, 2.0, 1.0) is None
    assert weight_warning(500, 501, 2.0, 1.0) is not None


def test_the_docs_show_the_warning_as_printed():
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert weight_warning(100, 1000, 1.0, 1.0) in docs


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_starts_well_inside_the_health_range(loss_type):
    """Policy = reference: every reward 0 and the KL baseline 0, so each reply's loss is
    1 - sigmoid(0) = 1/2 of its weight; the alarm's range is 0 to 0.8 of the larger weight."""
    from lit_dpo.callbacks.health import default_loss_range

    low, high = default_loss_range({"loss_type": loss_type, "desirable_weight": 2.0})
    assert (low, high) == (0.0, 1.6)
    logps = torch.tensor([-3.0, -7.0, -5.0], dtype=torch.float64)
    labels = torch.tensor([True, False, True])
    function = {"kto": kto, "apo_zero_unpaired": apo_zero_unpaired}[loss_type]
    losses, _ = function(logps, logps, labels, kl_baseline(logps, logps), 0.1, 2.0, 1.0)
    assert losses.tolist() == [1.0, 0.5, 1.0]
    assert losses.mean().item() <= high - 0.1 * high
