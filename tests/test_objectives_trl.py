"""Our objectives against TRL 1.16's own loss code, run for real on the same log-prob tensors.

TRL's DPO losses live inside ``DPOTrainer._compute_loss``, which reads per-token outputs of its
fused LM head. It is called here on a bare trainer object (``object.__new__``, with just the
attributes it reads) and stub policy and reference models whose forward returns per-token
``log_probs`` (and ``log_sum_sq_probs`` for WPO) that the test chooses. Our side starts from the
same per-token tensors (``ScoredTokens``) and goes through the module's own path: ``row_logps``
(LD-DPO), ``sft_nll``, ``wpo_weights``, ``objective_loss``. CPO and ORPO are TRL's
``CPOTrainer.get_batch_loss_metrics`` and ``ORPOTrainer.get_batch_loss_metrics`` on stub logits,
against ours on the same logits (``sequence_tokens``).

Where TRL 1.16 departs from the paper, we follow the paper and the test says so:

- ``bco_pair``: TRL drops the BCO paper's reward shift ``delta`` (a running mean of the rewards);
  ours keeps it, so the two agree only at delta = 0 (the first step of a fit starts there).
- ``alpha_divergence``: TRL computes ``f'(u) = (u^(a-1) - 1) / (a - 1)``, which is the f-DPO
  paper's ``(1 - u^-a) / a`` at ``1 - a``: its a -> 1 is reverse KL where the paper's a -> 0 is.
  They agree at the default a = 0.5; at a = 0.3 ours equals TRL's at 0.7.
- ``sigmoid`` with ``label_smoothing``: TRL 1.16 ignores label smoothing in sigmoid (it dropped
  cDPO); ours keeps cDPO (checked by hand in tests/test_losses.py).
- ORPO's NLL: TRL's ORPOTrainer scores the whole chosen sequence, prompt included ("orpo chosen
  nll loss is computed over the full prompt and response"); the paper's L_SFT is the NLL of the
  response. Ours is the response's, like the SFT term of every other objective.

Checked as TRL does it and needing no departure: ``robust`` divides by ``1 - 2e`` and subtracts
the flipped-label term, as the rDPO paper's unbiased loss; TRL's ``sft`` is a token-level mean
over the chosen replies of the batch, as ours (and CPO's NLL). TRL 1.16 raises on ``sft`` with
``use_weighting`` (an in-place multiply of an expanded tensor); ours weighs it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lit_dpo.train.logps import ScoredTokens, sequence_tokens
from lit_dpo.train.losses import Objective, sft_nll, wpo_weights
from lit_dpo.train.settings import ObjectiveSettings
from lit_dpo.train.step import BCOShift, objective_step

B, T = 3, 9  # pairs, sequence length


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-token log-probs of policy and reference, completion masks of varied lengths, and
    ``log sum p^2`` (at or above each token's log-prob, as for a real distribution)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2 * B, T, dtype=torch.long)
    prompt = [2, 3, 2, 2, 3, 2]
    lengths = [4, 6, 3, 6, 2, 5]  # chosen 4, 6, 3; rejected 6, 2, 5: both longer and shorter
    for row, (start, length) in enumerate(zip(prompt, lengths, strict=True)):
        mask[row, start : start + length] = 1
    shift = mask[:, 1:].float()
    policy = -torch.rand(2 * B, T - 1, generator=generator) * 3 - 0.05
    reference = policy + torch.randn(2 * B, T - 1, generator=generator) * 0.4
    reference = reference.clamp(max=-0.01)
    log_sum_sq = policy * torch.rand(2 * B, T - 1, generator=generator).clamp(min=0.2)
    return {
        "completion_mask": mask,
        "policy": policy * shift,
        "reference": reference * shift,
        "log_sum_sq": log_sum_sq * shift,
    }


class _StubLM(torch.nn.Module):
    """A model whose fused-head outputs are given: TRL's ``_compute_loss`` reads these."""

    is_gradient_checkpointing = False

    def __init__(self, log_probs: torch.Tensor, log_sum_sq: torch.Tensor) -> None:
        super().__init__()
        self.log_probs, self.log_sum_sq = log_probs, log_sum_sq

    def forward(self, **kwargs):
        zeros = torch.zeros_like(self.log_probs)
        return SimpleNamespace(
            log_probs=self.log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=zeros.bool(),
            log_sum_sq_probs=self.log_sum_sq,
        )


def trl_dpo_loss(batch: dict[str, torch.Tensor], **settings) -> float:
    """``DPOTrainer._compute_loss`` on ``batch``, with TRL's settings (``loss_type`` a list)."""
    from trl import DPOTrainer

    trainer = object.__new__(DPOTrainer)
    policy = _StubLM(batch["policy"], batch["log_sum_sq"])
    trainer.model = policy.train()
    trainer.ref_model = _StubLM(batch["reference"], batch["log_sum_sq"])
    trainer.accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x
    )
    trainer.args = SimpleNamespace(
        gradient_checkpointing_kwargs=None, discopop_tau=settings.pop("discopop_tau", 0.05)
    )
    trainer.aux_loss_enabled = False
    trainer.precompute_ref_logps = False
    trainer.loss_types = settings.pop("loss_type")
    trainer.loss_weights = settings.pop("loss_weights", None) or [1.0] * len(trainer.loss_types)
    trainer.beta = settings.pop("beta", 0.1)
    trainer.label_smoothing = settings.pop("label_smoothing", 0.0)
    trainer.ld_alpha = settings.pop("ld_alpha", None)
    trainer.use_weighting = settings.pop("use_weighting", False)
    trainer.f_divergence_type = settings.pop("f_divergence_type", "reverse_kl")
    trainer.f_alpha_divergence_coef = settings.pop("f_alpha_divergence_coef", 0.5)
    assert not settings, settings
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._total_train_tokens, trainer._tp_size = 0, 1
    mask = batch["completion_mask"]
    inputs = {"input_ids": torch.ones_like(mask), "attention_mask": torch.ones_like(mask)}
    inputs["completion_mask"] = mask
    return trainer._compute_loss(policy, inputs, return_outputs=False).item()


def _tokens(per_token: torch.Tensor, mask: torch.Tensor, log_sum_sq=None) -> ScoredTokens:
    scored = mask[:, 1:].bool()
    rows = scored.nonzero(as_tuple=True)[0]
    sum_sq = None if log_sum_sq is None else log_sum_sq[scored]
    return ScoredTokens(per_token[scored], rows, mask.shape[0], sum_sq)


def our_loss(batch: dict[str, torch.Tensor], bco_delta: float = 0.0, **settings) -> float:
    """Our objective on the same per-token log-probs, through the function every step calls."""
    mask = batch["completion_mask"]
    result = objective_step(
        Objective.from_settings(settings),
        _tokens(batch["policy"], mask, batch["log_sum_sq"]),
        _tokens(batch["reference"], mask),
        BCOShift(mean=bco_delta),
    )
    return result.loss.item()


TRL_LOSS_TYPES = [
    ("sigmoid", {}),
    ("hinge", {}),
    ("ipo", {"beta": 0.5}),
    ("exo_pair", {"label_smoothing": 1e-3}),
    ("nca_pair", {}),
    ("robust", {"label_smoothing": 0.2}),
    ("bco_pair", {}),
    ("sppo_hard", {"beta": 0.5}),
    ("aot", {"label_smoothing": 0.1}),
    ("aot_unpaired", {}),
    ("apo_zero", {}),
    ("apo_down", {}),
    ("discopop", {"discopop_tau": 0.5}),
    ("sft", {}),
    ("sigmoid_norm", {}),
]


@pytest.mark.parametrize(("loss_type", "settings"), TRL_LOSS_TYPES, ids=lambda v: str(v))
def test_each_loss_type_matches_trl(loss_type, settings):
    batch, settings = _batch(), {"beta": 0.3, **settings}
    theirs = trl_dpo_loss(batch, loss_type=[loss_type], **settings)
    ours = our_loss(batch, loss_type=loss_type, **settings)
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)


def test_the_comparison_is_not_vacuous():
    """Different objectives give different numbers on this batch (so equal ones mean something),
    and the batch's policy differs from its reference."""
    batch = _batch()
    values = [our_loss(batch, loss_type=name, **s) for name, s in TRL_LOSS_TYPES]
    assert len({round(v, 4) for v in values}) == len(values)
    assert not torch.allclose(batch["policy"], batch["reference"])


def test_a_weighted_combination_matches_trl():
    """MPO-style: three losses with weights, as TRL's ``loss_weights``."""
    batch = _batch(1)
    types, weights = ["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]
    theirs = trl_dpo_loss(batch, loss_type=types, loss_weights=weights)
    ours = our_loss(batch, loss_type=types, loss_weights=weights)
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("ld_alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "apo_zero"])
def test_ld_alpha_matches_trl(loss_type, ld_alpha):
    batch = _batch(2)
    theirs = trl_dpo_loss(batch, loss_type=[loss_type], ld_alpha=ld_alpha)
    ours = our_loss(batch, loss_type=loss_type, ld_alpha=ld_alpha)
    assert ours == pytest.approx(theirs, rel=1e-6)
    if ld_alpha == 0.5:
        plain = our_loss(batch, loss_type=loss_type)
        assert abs(ours - plain) > 1e-4, "no tail to weigh: vacuous"


@pytest.mark.parametrize("loss_type", [["sigmoid"], ["ipo"], ["apo_down", "nca_pair"]])
def test_use_weighting_matches_trl(loss_type):
    batch = _batch(3)
    theirs = trl_dpo_loss(batch, loss_type=loss_type, use_weighting=True)
    ours = our_loss(batch, loss_type=loss_type, use_weighting=True)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert abs(ours - our_loss(batch, loss_type=loss_type)) > 1e-4, "weights of 1: vacuous"


def test_sft_with_use_weighting_where_trl_raises():
    """TRL 1.16 multiplies its ``sft`` loss, an ``expand``-ed scalar, in place by the weights and
    fails; ours is what TRL's code means: the NLL times the mean pair weight."""
    batch = _batch(3)
    with pytest.raises(RuntimeError, match="more than one element"):
        trl_dpo_loss(batch, loss_type=["sft"], use_weighting=True)
    policy = _tokens(batch["policy"], batch["completion_mask"], batch["log_sum_sq"])
    weights = wpo_weights(policy.logps, policy.log_sum_sq, policy.rows, policy.num_rows)
    nll = sft_nll(policy.sums()[:B], policy.counts()[:B])
    expected = (nll * weights.mean()).item()
    assert our_loss(batch, loss_type="sft", use_weighting=True) == pytest.approx(expected)
    assert expected != pytest.approx(nll.item(), rel=1e-3)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "js_divergence"])
@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "robust", "discopop"])
def test_f_divergences_match_trl(divergence, loss_type):
    batch = _batch(4)
    extra = {"label_smoothing": 0.1} if loss_type == "robust" else {}
    theirs = trl_dpo_loss(batch, loss_type=[loss_type], f_divergence_type=divergence, **extra)
    ours = our_loss(batch, loss_type=loss_type, f_divergence_type=divergence, **extra)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_alpha_divergence_follows_the_paper_where_trl_mirrors_alpha():
    """See the module docstring: equal at 0.5; ours at a equals TRL's at 1 - a, not at a."""
    batch = _batch(5)

    def theirs(alpha):
        return trl_dpo_loss(
            batch,
            loss_type=["sigmoid"],
            f_divergence_type="alpha_divergence",
            f_alpha_divergence_coef=alpha,
        )

    def ours(alpha):
        return our_loss(
            batch,
            loss_type="sigmoid",
            f_divergence_type="alpha_divergence",
            f_alpha_divergence_coef=alpha,
        )

    assert ours(0.5) == pytest.approx(theirs(0.5), rel=1e-6)
    assert ours(0.3) == pytest.approx(theirs(0.7), rel=1e-6)
    assert abs(ours(0.3) - theirs(0.3)) > 1e-4


def test_bco_pair_keeps_the_papers_reward_shift_that_trl_drops():
    """TRL 1.16's bco_pair is ours at delta = 0; with the running mean reward as delta (the BCO
    paper's shift) the loss differs."""
    batch = _batch(6)
    theirs = trl_dpo_loss(batch, loss_type=["bco_pair"])
    assert our_loss(batch, loss_type="bco_pair", bco_delta=0.0) == pytest.approx(theirs, rel=1e-6)
    assert abs(our_loss(batch, loss_type="bco_pair", bco_delta=0.3) - theirs) > 1e-3


def test_trl_sigmoid_ignores_label_smoothing_where_ours_is_cdpo():
    batch = _batch(7)
    plain = trl_dpo_loss(batch, loss_type=["sigmoid"])
    assert trl_dpo_loss(batch, loss_type=["sigmoid"], label_smoothing=0.2) == plain
    assert our_loss(batch, loss_type="sigmoid", label_smoothing=0.2) != pytest.approx(plain)


# --- CPO, SimPO and ORPO against TRL's CPOTrainer and ORPOTrainer ------------------------------

V = 11  # vocabulary of the stub logits


def _logit_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """TRL's CPO/ORPO batch keys (prompt 2-3 tokens, replies of 2-5) and random logits."""
    generator = torch.Generator().manual_seed(seed)
    batch = {}
    for side, lengths in (("chosen", [5, 3, 4]), ("rejected", [2, 5, 4])):
        ids = torch.randint(0, V, (B, T), generator=generator)
        attention = torch.zeros(B, T, dtype=torch.long)
        labels = torch.full((B, T), -100)
        for i, (prompt, length) in enumerate(zip([2, 3, 2], lengths, strict=True)):
            attention[i, : prompt + length] = 1
            labels[i, prompt : prompt + length] = ids[i, prompt : prompt + length]
        batch |= {
            f"{side}_input_ids": ids,
            f"{side}_attention_mask": attention,
            f"{side}_labels": labels,
        }
    batch["logits"] = torch.randn(2 * B, T, V, generator=generator) * 2
    return batch


class _StubLogits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, *args, **kwargs):
        return SimpleNamespace(logits=self.logits)


def _trl_reference_free(trainer_class, batch, **attributes) -> tuple[float, dict]:
    trainer = object.__new__(trainer_class)
    trainer.accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda x: x
    )
    trainer.is_encoder_decoder, trainer.aux_loss_enabled = False, False
    trainer.pad_token_id = trainer.padding_value = 0
    trainer.label_smoothing, trainer.alpha = 0.0, 0.0
    for name, value in attributes.items():
        setattr(trainer, name, value)
    inputs = {k: v for k, v in batch.items() if k != "logits"}
    loss, metrics = trainer.get_batch_loss_metrics(_StubLogits(batch["logits"]), inputs)
    return loss.item(), metrics


def _our_reference_free(batch, **settings) -> tuple[float, SimpleNamespace]:
    """Our loss and statistics, through the function every step calls, with no reference."""
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    tokens = sequence_tokens(batch["logits"], labels)
    stats = objective_step(Objective.from_settings(settings), tokens, None).statistics
    result = SimpleNamespace(
        extras=stats,
        chosen_rewards=stats.get("rewards/chosen"),
        rejected_rewards=stats.get("rewards/rejected"),
    )
    return stats["loss"].item(), result


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cpo_matches_trl(label_smoothing):
    from trl.experimental.cpo import CPOTrainer

    batch = _logit_batch(1)
    theirs, metrics = _trl_reference_free(
        CPOTrainer,
        batch,
        beta=0.2,
        loss_type="sigmoid",
        cpo_alpha=0.7,
        label_smoothing=label_smoothing,
    )
    ours, result = _our_reference_free(
        batch, loss_type="cpo", beta=0.2, cpo_alpha=0.7, label_smoothing=label_smoothing
    )
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert result.extras["sft_loss"].item() == pytest.approx(metrics["nll_loss"], rel=1e-6)
    assert result.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"])


def test_simpo_matches_trl_cpo_trainer_without_its_nll():
    """TRL runs SimPO as CPOTrainer's ``loss_type simpo``; ``cpo_alpha 0`` is SimPO alone."""
    from trl.experimental.cpo import CPOTrainer

    batch = _logit_batch(2)
    theirs, metrics = _trl_reference_free(
        CPOTrainer, batch, beta=2.0, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=0.6
    )
    ours, result = _our_reference_free(batch, loss_type="simpo", beta=2.0, simpo_gamma=0.6)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert result.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"])
    assert result.rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"])


def test_orpo_matches_trl_but_for_the_prompt_in_its_nll():
    """The odds-ratio term and the log-odds metrics equal TRL's; TRL's NLL covers prompt and
    response (checked against a cross-entropy over every attended token), ours the response."""
    from trl.experimental.orpo import ORPOTrainer

    batch = _logit_batch(3)
    theirs, metrics = _trl_reference_free(ORPOTrainer, batch, beta=0.25)
    ours, result = _our_reference_free(batch, loss_type="orpo", beta=0.25)

    logits = batch["logits"][:B, :-1]
    full = batch["chosen_input_ids"].masked_fill(batch["chosen_attention_mask"] == 0, -100)
    full_nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), full[:, 1:].flatten())
    assert metrics["nll_loss"] == pytest.approx(full_nll.item(), rel=1e-6)
    our_nll = result.extras["sft_loss"].item()
    assert our_nll != pytest.approx(full_nll.item(), rel=1e-3)
    assert ours - our_nll == pytest.approx(theirs - metrics["nll_loss"], rel=1e-5)
    assert result.extras["log_odds_chosen"].mean().item() == pytest.approx(
        metrics["log_odds_chosen"], rel=1e-5
    )
    assert result.extras["log_odds_ratio"].mean().item() == pytest.approx(
        metrics["log_odds_ratio"], rel=1e-5
    )
    assert result.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"])


# --- the module's own step is the function compared above ---------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"loss_type": "bco_pair", "ld_alpha": 0.5, "use_weighting": True, "sft_weight": 0.3},
        {"loss_type": ["orpo", "sft"], "loss_weights": [1.0, 0.5]},
    ],
    ids=["bco-ld-wpo-sft", "orpo+sft"],
)
def test_the_modules_step_is_objective_step(tiny_model_dir, tiny_tokenizer, settings):
    """DPOModule's training step gives what ``objective_step`` gives on the policy's and the
    reference's scored tokens of the same batch (so the TRL comparison above covers training),
    its gradient included, and it moves the BCO shift as ``objective_step`` says."""
    from test_techniques import NO_CHECKPOINTING, _module, _tiny_batch

    from lit_dpo.models.reference import as_reference
    from lit_dpo.train.forward import batch_token_logps

    module = _module(
        tiny_model_dir, objective=ObjectiveSettings(**settings), efficiency=NO_CHECKPOINTING
    )
    batch = _tiny_batch(tiny_tokenizer)
    objective, path = module.objective, module.scoring
    policy = batch_token_logps(module.policy, batch, *path, log_sum_sq=objective.use_weighting)
    reference = None
    if objective.needs_reference:
        with torch.no_grad(), as_reference(module.policy):
            reference = batch_token_logps(module.policy, batch, *path)
    expected = objective_step(objective, policy, reference, BCOShift(), training=True)
    (expected_grad,) = torch.autograd.grad(expected.loss, [_lora_a(module)])

    got = module.step_statistics(batch, "train")
    (grad,) = torch.autograd.grad(got["loss"], [_lora_a(module)])
    assert abs(expected.loss.item() - math.log(2)) > 1e-3, "policy equals reference: vacuous"
    assert got.keys() == expected.statistics.keys()
    for key, value in expected.statistics.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-6, msg=key)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-8)
    assert module.bco_shift.shift == expected.bco_shift
    if "bco_pair" in objective.loss_types:
        assert expected.bco_shift.steps == 1 and expected.bco_shift.mean != 0


def _lora_a(module) -> torch.Tensor:
    return next(p for n, p in sorted(module.policy.named_parameters()) if "lora_A" in n)
