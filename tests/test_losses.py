"""Every objective of ``lit_dpo.train.losses`` against numbers worked by hand.

Worked example used throughout (one pair): policy log-probs chosen -1 (2 tokens), rejected -3 (4
tokens); reference -2 and -2. Log-ratios: chosen x_c = +1, rejected x_r = -1; margin h = 2.
Per-token: chosen -1/2, rejected -3/4; the per-token log-ratio margin is 1/2 - (-1/4) = 0.75.
Notation: ls(z) = log sigmoid(z) = -log(1 + e^-z); ls(1) = -0.3132617, ls(-1) = -1.3132617,
ls(0.5) = -0.4740770, ls(-0.5) = -0.9740770; sigmoid(0.5) = 0.6224593, sigmoid(1) = 0.7310586.

Margin losses, beta 0.5 unless said (beta h = 1):
- sigmoid: -ls(1) = 0.3132617; cDPO, e = 0.1: 0.9 * 0.3132617 + 0.1 * 1.3132617 = 0.4132617
- hinge, beta 0.25: relu(1 - 0.5) = 0.5; beta 0.5: relu(1 - 1) = 0
- ipo (margin h): (2 - 1 / (2 * 0.5))^2 = 1; on the per-token margin: (0.75 - 1)^2 = 0.0625
- sigmoid_norm: -ls(0.5 * 0.75) = log(1 + e^-0.375) = 0.5231233
- robust, e = 0.1: (0.9 * 0.3132617 - 0.1 * 1.3132617) / 0.8 = 0.15060936 / 0.8 = 0.1882617
- exo_pair, e = 0.1: sigmoid(1) (ls(1) - log 0.9) + sigmoid(-1) (ls(-1) - log 0.1)
  = 0.7310586 * (-0.2079012) + 0.2689414 * 0.9893234 = 0.1140821
- discopop, tau 1: w = sigmoid(1); -ls(1) (1 - w) + e^-1 w = 0.3132617 * 0.2689414 + 0.3678794 *
  0.7310586 = 0.0842491 + 0.2689414 = 0.3531905
- aot, beta 1, two pairs: policy margins [2, -1], reference margins [0, 1] -> sorted [-1, 2] and
  [0, 1] -> delta [-1, 1] -> [-ls(-1), -ls(1)] = [1.3132617, 0.3132617] (pair by pair it would be
  delta [2, -2])
- aot_unpaired, beta 0.5: chosen log-ratios [1, -2], rejected [0, 3] -> sorted [-2, 1], [0, 3]
  -> delta [-2, -2] -> -ls(-1) = 1.3132617 each

Anchored losses, beta 0.5 (rewards r_c = 0.5, r_r = -0.5):
- nca_pair: -ls(0.5) - 0.5 ls(-0.5) - 0.5 ls(0.5) = 0.4740770 + 0.4870385 + 0.2370385 = 1.1981540
- bco_pair: delta 0: -ls(0.5) - ls(0.5) = 0.9481540; delta 0.25: -ls(0.25) - ls(0.75) = 0.9628104
- sppo_hard: targets +-1/(2 beta) = +-1: (1 - 1)^2 + (-1 + 1)^2 = 0; beta 0.25 (targets +-2): 2
- apo_zero: 1 - sigmoid(0.5) + sigmoid(-0.5) = 2 * 0.3775407 = 0.7550813
- apo_down: sigmoid(0.5) + 1 - sigmoid(0.5 - (-0.5)) = 0.6224593 + 1 - 0.7310586 = 0.8914008

Reference-free, chosen NLL per token 0.5 (-1 over 2 tokens):
- simpo, beta 2, gamma 0.5: -ls(2 * (-0.5 + 0.75) - 0.5) = -ls(0) = log 2 = 0.6931472
- cpo, beta 0.5, alpha 1: -ls(0.5 * 2) + 0.5 = 0.8132617
- orpo, beta 0.1: log odds = (-0.5 + 0.75) - (log(1 - e^-0.5) - log(1 - e^-0.75))
  = 0.25 - (-0.9327521 + 0.6393327) = 0.5433987; loss 0.5 - 0.1 ls(0.5433987) = 0.5457913

Terms:
- sft_nll: chosen sums [-1, -5] over [2, 3] tokens: 6 / 5 = 1.2 (per token, not (0.5 + 5/3) / 2)
- ld_logps: chosen tokens [-0.5, -0.5], rejected [-1, -1, -0.5, -0.5]; shared length 2;
  alpha 0.5: chosen -1, rejected -2 + 0.5 * (-1) = -2.5
- wpo_weights: chosen tokens p = 0.5 under (0.5, 0.5): sum p^2 = 0.5, w = exp(log 0.5 - log 0.5)
  = 1; rejected token p = 0.25 under (0.25, 0.75): sum p^2 = 0.625, w = 0.25 / 0.625 = 0.4;
  pair weight 0.4
- f-divergence scores at u = 2: reverse KL log 2; forward KL 1 - 1/2 = 0.5; JS log(4/3) =
  0.2876821; alpha 0.5: (1 - 2^-0.5) / 0.5 = 0.5857864
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from lit_dpo.train.losses import LOSS_TYPES, Objective, objective_loss
from lit_dpo.train.losses.anchored import (
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    nca_pair_loss,
    sppo_hard_loss,
)
from lit_dpo.train.losses.margin import (
    aot_loss,
    aot_unpaired_loss,
    discopop_loss,
    exo_pair_loss,
    hinge_loss,
    ipo_loss,
    robust_loss,
    sigmoid_loss,
)
from lit_dpo.train.losses.reference_free import cpo_loss, orpo_log_odds, orpo_loss, simpo_loss
from lit_dpo.train.losses.terms import (
    completion_ranks,
    f_divergence_scores,
    ld_logps,
    running_mean,
    sft_nll,
    wpo_weights,
)

MARGIN = torch.tensor([2.0])
X_C, X_R = torch.tensor([1.0]), torch.tensor([-1.0])  # log-ratios of chosen and rejected
MEAN_C, MEAN_R = torch.tensor([-0.5]), torch.tensor([-0.75])  # per-token mean log-probs
POLICY = torch.tensor([-1.0, -3.0])  # chosen row, rejected row
REFERENCE = torch.tensor([-2.0, -2.0])
COUNTS = torch.tensor([2, 4])
NLL = torch.tensor(0.5)


def _value(tensor: torch.Tensor) -> list[float]:
    return tensor.tolist()


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        pytest.param(lambda: sigmoid_loss(MARGIN, 0.5), 0.3132617, id="sigmoid"),
        pytest.param(lambda: sigmoid_loss(MARGIN, 0.5, label_smoothing=0.1), 0.4132617, id="cdpo"),
        pytest.param(lambda: hinge_loss(MARGIN, 0.25), 0.5, id="hinge"),
        pytest.param(lambda: hinge_loss(MARGIN, 0.5), 0.0, id="hinge-zero"),
        pytest.param(lambda: ipo_loss(MARGIN, 0.5), 1.0, id="ipo"),
        pytest.param(lambda: ipo_loss(torch.tensor([0.75]), 0.5), 0.0625, id="ipo-per-token"),
        pytest.param(lambda: robust_loss(MARGIN, 0.5, 0.1), 0.1882617, id="robust"),
        pytest.param(lambda: exo_pair_loss(MARGIN, 0.5, 0.1), 0.1140821, id="exo_pair"),
        pytest.param(lambda: discopop_loss(MARGIN, 0.5, tau=1.0), 0.3531905, id="discopop"),
        pytest.param(lambda: nca_pair_loss(X_C, X_R, 0.5), 1.1981540, id="nca_pair"),
        pytest.param(lambda: bco_pair_loss(X_C, X_R, 0.5), 0.9481540, id="bco_pair"),
        pytest.param(
            lambda: bco_pair_loss(X_C, X_R, 0.5, delta=0.25), 0.9628104, id="bco_pair-shifted"
        ),
        pytest.param(lambda: sppo_hard_loss(X_C, X_R, 0.5), 0.0, id="sppo_hard"),
        pytest.param(lambda: sppo_hard_loss(X_C, X_R, 0.25), 2.0, id="sppo_hard-beta"),
        pytest.param(lambda: apo_zero_loss(X_C, X_R, 0.5), 0.7550813, id="apo_zero"),
        pytest.param(lambda: apo_down_loss(X_C, X_R, 0.5), 0.8914008, id="apo_down"),
        pytest.param(lambda: simpo_loss(MEAN_C, MEAN_R, 2.0, 0.5), math.log(2), id="simpo"),
        pytest.param(
            lambda: cpo_loss(POLICY[:1], POLICY[1:], NLL, 0.5, alpha=1.0), 0.8132617, id="cpo"
        ),
        pytest.param(lambda: orpo_log_odds(MEAN_C, MEAN_R), 0.5433987, id="orpo-log-odds"),
        pytest.param(lambda: orpo_loss(MEAN_C, MEAN_R, NLL, 0.1), 0.5457913, id="orpo"),
    ],
)
def test_loss_matches_hand_computed(loss, expected):
    assert _value(loss()) == pytest.approx([expected], abs=1e-6)


def test_aot_compares_sorted_margins_not_pairs():
    got = aot_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0]), beta=1.0)
    assert _value(got) == pytest.approx([1.3132617, 0.3132617], abs=1e-6)
    got = aot_unpaired_loss(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 3.0]), beta=0.5)
    assert _value(got) == pytest.approx([1.3132617, 1.3132617], abs=1e-6)


@pytest.mark.parametrize(
    ("loss_type", "settings", "expected"),
    [
        ("sigmoid", {"beta": 0.5}, 0.3132617),
        ("ipo", {"beta": 0.5}, 0.0625),  # on per-token log-ratios
        ("sigmoid_norm", {"beta": 0.5}, 0.5231233),
        ("apo_down", {"beta": 0.5}, 0.8914008),
        ("sft", {}, 0.5),
        ("simpo", {"beta": 2.0, "simpo_gamma": 0.5}, math.log(2)),
        ("cpo", {"beta": 0.5}, 0.8132617),
        ("orpo", {"beta": 0.1}, 0.5457913),
    ],
)
def test_objective_feeds_each_loss_what_its_paper_uses(loss_type, settings, expected):
    objective = Objective(loss_types=(loss_type,), **settings)
    reference = REFERENCE if objective.needs_reference else None
    result = objective_loss(objective, POLICY, reference, COUNTS, NLL)
    assert result.loss.item() == pytest.approx(expected, abs=1e-6)


def test_objective_sums_weighted_losses_with_wpo_weights_and_an_sft_term():
    """sigmoid 0.3132617 * 1 + apo_zero 0.7550813 * 0.5 = 0.6908024, times WPO's 0.4 =
    0.2763210, plus sft_weight 0.2 * NLL 0.5 = 0.3763210 (the SFT term is not WPO-weighted)."""
    objective = Objective(
        loss_types=("sigmoid", "apo_zero"), loss_weights=(1.0, 0.5), beta=0.5, sft_weight=0.2
    )
    result = objective_loss(
        objective, POLICY, REFERENCE, COUNTS, NLL, pair_weights=torch.tensor([0.4])
    )
    assert result.loss.item() == pytest.approx(0.3763210, abs=1e-6)
    assert result.losses.tolist() == pytest.approx([0.3763210], abs=1e-6)
    assert result.extras["sft_loss"].item() == 0.5


def test_rewards_follow_each_objective():
    """DPO family: beta * log-ratio (0.5 * 1, 0.5 * -1); SimPO and ORPO: beta * mean log-prob
    (2 * -0.5, 2 * -0.75); CPO: beta * summed log-prob (0.5 * -1, 0.5 * -3); sft: none."""
    cases = {
        "sigmoid": (0.5, [0.5], [-0.5]),
        "simpo": (2.0, [-1.0], [-1.5]),
        "orpo": (2.0, [-1.0], [-1.5]),
        "cpo": (0.5, [-0.5], [-1.5]),
    }
    for loss_type, (beta, chosen, rejected) in cases.items():
        objective = Objective(loss_types=(loss_type,), beta=beta)
        result = objective_loss(objective, POLICY, REFERENCE, COUNTS, NLL)
        assert result.chosen_rewards.tolist() == pytest.approx(chosen), loss_type
        assert result.rejected_rewards.tolist() == pytest.approx(rejected), loss_type
        assert not result.chosen_rewards.requires_grad
    result = objective_loss(Objective(loss_types=("sft",)), POLICY, None, COUNTS, NLL)
    assert result.chosen_rewards is None and result.extras["sft_loss"].item() == 0.5


def test_reference_free_objectives_ignore_the_reference():
    for loss_type in ("simpo", "cpo", "orpo", "sft"):
        objective = Objective(loss_types=(loss_type,))
        without = objective_loss(objective, POLICY, None, COUNTS, NLL).loss
        with_one = objective_loss(objective, POLICY, REFERENCE * 7, COUNTS, NLL).loss
        assert without.item() == with_one.item()


def test_a_reference_based_objective_without_reference_log_probs_fails():
    with pytest.raises(ValueError, match="needs reference log-probs"):
        objective_loss(Objective(), POLICY, None, COUNTS, NLL)


def test_policy_equal_to_reference_gives_log_two_and_zero_rewards():
    same = torch.tensor([-4.0, -7.5, -5.0, -8.5])
    result = objective_loss(Objective(), same, same, torch.tensor([3, 4, 5, 6]), NLL)
    assert result.losses.tolist() == pytest.approx([math.log(2)] * 2)
    assert result.chosen_rewards.tolist() == [0.0, 0.0]


def test_gradient_pushes_chosen_up_and_rejected_down():
    policy = torch.tensor([-2.0, -2.0], requires_grad=True)
    objective_loss(Objective(beta=0.1), policy, REFERENCE, COUNTS, NLL).loss.backward()
    # d/dh -log sigmoid(beta h) at h = 0 is -beta / 2
    assert policy.grad.tolist() == pytest.approx([-0.05, 0.05])


def test_sft_nll_is_a_token_mean_over_the_batch():
    assert sft_nll(torch.tensor([-1.0, -5.0]), torch.tensor([2, 3])).item() == pytest.approx(1.2)
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        sft_nll(torch.zeros(2), torch.ones(3))


def test_ld_logps_weighs_the_tail_past_the_shared_length():
    logps = torch.tensor([-0.5, -0.5, -1.0, -1.0, -0.5, -0.5])
    rows = torch.tensor([0, 0, 1, 1, 1, 1])
    assert ld_logps(logps, rows, 2, alpha=0.5).tolist() == [-1.0, -2.5]
    assert ld_logps(logps, rows, 2, alpha=1.0).tolist() == [-1.0, -3.0]  # plain sums
    # the same tokens interleaved by row, as the packed path lists them: ranks follow each row
    order = torch.tensor([2, 0, 3, 1, 4, 5])
    assert ld_logps(logps[order], rows[order], 2, alpha=0.5).tolist() == [-1.0, -2.5]
    ranks, counts = completion_ranks(rows[order], 2)
    assert ranks.tolist() == [0, 0, 1, 1, 2, 3] and counts.tolist() == [2, 4]


def test_wpo_weights_by_hand_and_without_gradient():
    logps = torch.tensor([math.log(0.5), math.log(0.5), math.log(0.25)], requires_grad=True)
    log_sum_sq = torch.tensor([math.log(0.5), math.log(0.5), math.log(0.625)])
    weights = wpo_weights(logps, log_sum_sq, torch.tensor([0, 0, 1]), 2)
    assert weights.tolist() == pytest.approx([0.4])
    assert not weights.requires_grad


@pytest.mark.parametrize(
    ("divergence", "expected"),
    [
        ("reverse_kl", math.log(2)),
        ("forward_kl", 0.5),
        ("js_divergence", math.log(4 / 3)),
        ("alpha_divergence", 0.5857864),
    ],
)
def test_f_divergence_scores_by_hand(divergence, expected):
    got = f_divergence_scores(torch.tensor([math.log(2)]), divergence, alpha=0.5)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_alpha_divergence_tends_to_reverse_kl_at_small_alpha_and_is_forward_kl_at_one():
    logratios = torch.tensor([-1.5, 0.3, 2.0])
    near_zero = f_divergence_scores(logratios, "alpha_divergence", alpha=1e-6)
    assert torch.allclose(near_zero, logratios, atol=1e-5)
    at_one = f_divergence_scores(logratios, "alpha_divergence", alpha=1.0)
    assert torch.allclose(at_one, f_divergence_scores(logratios, "forward_kl"))


def test_running_mean():
    assert running_mean(0.0, 0, 1.0) == (1.0, 1)
    assert running_mean(1.0, 1, 3.0) == (2.0, 2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss_types": ("not_a_loss",)}, "unknown loss_type"),
        ({"loss_types": ("sigmoid", "sft"), "loss_weights": (1.0,)}, "1 weights for 2"),
        ({"beta": 0.0}, "beta must be positive"),
        ({"label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"loss_types": ("hinge",), "label_smoothing": 0.1}, "label_smoothing applies"),
        ({"loss_types": ("exo_pair",)}, "exo_pair needs label_smoothing"),
        ({"loss_types": ("sigmoid", "simpo")}, "cannot be combined"),
        ({"loss_types": ("nca_pair",), "f_divergence_type": "js_divergence"}, "f_divergence"),
        ({"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0}, "coef"),
        ({"loss_types": ("aot",), "use_weighting": True}, "use_weighting"),
        ({"ld_alpha": 1.5}, r"ld_alpha must be in \[0, 1\]"),
        ({"loss_types": ("simpo",), "ld_alpha": 0.5}, "ld_alpha reweights"),
        ({"sft_weight": -1.0}, "sft_weight must be at least 0"),
        ({"discopop_tau": 0.0}, "discopop_tau must be positive"),
    ],
)
def test_each_bad_setting_is_named(settings, message):
    problems = Objective(**settings).problems()
    assert len(problems) == 1, problems
    assert re.search(message, problems[0]), problems


@pytest.mark.parametrize(
    "settings",
    [
        {"loss_types": ("sigmoid", "sft"), "loss_weights": (1.0, 0.1)},
        {"loss_types": ("simpo", "sft")},
        {"loss_types": ("robust",), "label_smoothing": 0.1},
        {"loss_types": ("sigmoid",), "f_divergence_type": "alpha_divergence"},
        {"loss_types": ("orpo",), "use_weighting": True},
        {"loss_types": ("ipo",), "ld_alpha": 0.5},
    ],
)
def test_good_settings_have_no_problem(settings):
    assert Objective(**settings).problems() == []


# --- the registry: one record per loss type ---------------------------------------------------


def test_the_docs_table_is_the_registry():
    """docs/configuration.md#objectives lists every loss type as its record describes it."""
    from pathlib import Path

    from lit_dpo.train.losses.registry import objectives_table

    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert objectives_table() in docs
    assert objectives_table().count("\n| `") == len(LOSS_TYPES)


def test_every_record_is_complete_and_takes_settings_the_objective_has():
    from dataclasses import fields
    from typing import get_args

    from lit_dpo.train.losses import LOSSES, LossType

    assert get_args(LossType) == LOSS_TYPES == tuple(LOSSES)
    names = {f.name for f in fields(Objective)}
    for name, record in LOSSES.items():
        assert record.name == name and record.title and record.what and record.when, name
        assert set(record.settings) <= names, name
        assert record.needs_reference == (record.rewards == "log-ratio"), name


def test_the_guides_example_diff_is_the_code():
    """docs/developer-guide.md#adding-an-objective shows adding ``apo_down``: every run of added
    lines is in the file its diff names, as shown."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    guide = (root / "docs" / "developer-guide.md").read_text()
    diff = guide.split("## Adding an objective", 1)[1].split("```diff\n", 1)[1].split("```", 1)[0]
    runs: list[tuple[str, str]] = []
    for line in diff.splitlines():
        if line.startswith("+++ b/"):
            path, run = line.removeprefix("+++ b/"), []
            runs.append((path, run))
        elif line.startswith("+"):
            runs[-1][1].append(line[1:])
        elif runs and runs[-1][1]:
            runs.append((path, run := []))
    checked = [(path, "\n".join(run)) for path, run in runs if run]
    assert len(checked) == 3
    for path, text in checked:
        assert text in (root / path).read_text(), (path, text)


def test_the_sft_term_learns_only_the_flagged_pairs_chosen_replies():
    """Two pairs, policy = reference (DPO loss log 2 each). Chosen replies: -2 over 2 tokens and
    -9 over 3. The NLL term per token: all pairs (2 + 9) / 5 = 2.2; only the first 2 / 2 = 1.0;
    none flagged 0 (a batch of a ``sft: false`` mixture part)."""
    from lit_dpo.train.logps import ScoredTokens
    from lit_dpo.train.step import objective_step

    # rows 0, 1 chosen, rows 2, 3 rejected
    logps = torch.tensor([-1.0, -1.0, -3.0, -3.0, -3.0, -2.0, -4.0])
    rows = torch.tensor([0, 0, 1, 1, 1, 2, 3])
    policy = ScoredTokens(logps, rows, 4, None)
    reference = policy.sums().clone()
    objective = Objective(sft_weight=0.5)
    for flags, nll in ((None, 2.2), ([True, False], 1.0), ([False, False], 0.0)):
        sft_pairs = None if flags is None else torch.tensor(flags)
        result = objective_step(objective, policy, reference, sft_pairs=sft_pairs)
        assert result.statistics["sft_loss"].item() == pytest.approx(nll)
        assert result.loss.item() == pytest.approx(math.log(2) + 0.5 * nll)
