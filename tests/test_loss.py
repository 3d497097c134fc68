"""DPO losses against numbers worked by hand.

Worked example used throughout: policy log-probs chosen -1, rejected -3; reference -2 and -2.
The log-ratio margin is h = (-1 - -3) - (-2 - -2) = 2.

- sigmoid, beta 0.5: beta h = 1, loss = -log sigmoid(1) = log(1 + e^-1) = 0.3132617
- cDPO, beta 0.5, label_smoothing 0.1: 0.9 * 0.3132617 + 0.1 * -log sigmoid(-1)
  = 0.9 * 0.3132617 + 0.1 * 1.3132617 = 0.4132617
- IPO, beta 0.5: (h - 1 / (2 * 0.5))^2 = (2 - 1)^2 = 1
- hinge, beta 0.25: relu(1 - 0.25 * 2) = 0.5; beta 0.5: relu(1 - 1) = 0
- rewards, beta 0.5: chosen 0.5 * (-1 - -2) = 0.5, rejected 0.5 * (-3 - -2) = -0.5
"""

from __future__ import annotations

import pytest
import torch

from lit_dpo.train.loss import dpo_loss

POLICY_CHOSEN = torch.tensor([-1.0])
POLICY_REJECTED = torch.tensor([-3.0])
REFERENCE_CHOSEN = torch.tensor([-2.0])
REFERENCE_REJECTED = torch.tensor([-2.0])


def _loss(**kwargs):
    return dpo_loss(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"beta": 0.5, "loss_type": "sigmoid"}, 0.3132617),
        ({"beta": 0.5, "loss_type": "sigmoid", "label_smoothing": 0.1}, 0.4132617),
        ({"beta": 0.5, "loss_type": "ipo"}, 1.0),
        ({"beta": 0.25, "loss_type": "hinge"}, 0.5),
        ({"beta": 0.5, "loss_type": "hinge"}, 0.0),
    ],
)
def test_loss_matches_hand_computed(kwargs, expected):
    losses, _, _ = _loss(**kwargs)
    assert losses.item() == pytest.approx(expected, abs=1e-6)


def test_rewards_are_beta_scaled_log_ratios():
    _, chosen_rewards, rejected_rewards = _loss(beta=0.5)
    assert chosen_rewards.item() == pytest.approx(0.5)
    assert rejected_rewards.item() == pytest.approx(-0.5)
    assert not chosen_rewards.requires_grad


def test_policy_equal_to_reference_gives_log_two():
    same = torch.tensor([-4.0, -7.5])
    losses, chosen_rewards, _ = dpo_loss(same, same - 1, same, same - 1, beta=0.1)
    assert torch.allclose(losses, torch.full((2,), 0.6931472))
    assert torch.equal(chosen_rewards, torch.zeros(2))


def test_gradient_pushes_chosen_up_and_rejected_down():
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    losses, _, _ = dpo_loss(chosen, rejected, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.1)
    losses.sum().backward()
    # d/dh -log sigmoid(beta h) at h = 0 is -beta / 2
    assert chosen.grad.item() == pytest.approx(-0.05)
    assert rejected.grad.item() == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0.0}, "beta must be positive"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"loss_type": "kto"}, "unknown loss_type"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _loss(**kwargs)


def test_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        dpo_loss(torch.zeros(2), torch.zeros(1), torch.zeros(1), torch.zeros(1))
