"""An objective: one or several losses with weights, and the terms around them (pure maths).

``Objective`` holds the settings (``DPOModule``'s ``loss_type``, ``loss_weights``, ``beta``...)
and lists what is wrong with them (``problems``); ``objective_loss`` turns a batch's log-probs
into the loss, per pair and in total:

    loss = mean over pairs of [ sum_k weight_k * loss_k(pair) * wpo(pair) ] + sft_weight * NLL

as TRL 1.16's ``DPOTrainer`` combines its ``loss_type`` list with ``loss_weights`` (``wpo`` is 1
unless ``use_weighting``), plus this project's ``sft_weight`` term. Reference-based objectives see
the policy/reference log-ratios (through an f-divergence, ``f_divergence_type``); reference-free
ones (``simpo``, ``cpo``, ``orpo``) and ``sft`` see the policy's log-probs only, and a training
step then runs no reference at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch

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
from lit_dpo.train.losses.terms import FDivergence, f_divergence_scores

LossType = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
    "simpo",
    "cpo",
    "orpo",
]
LOSS_TYPES: tuple[str, ...] = get_args(LossType)
REFERENCE_FREE = ("simpo", "cpo", "orpo")
# objectives that read no reference log-probs
NO_REFERENCE = (*REFERENCE_FREE, "sft")
# TRL's list: losses of the chosen-minus-rejected score difference, where f-DPO's log Z cancels
F_DIVERGENCE_LOSSES = (
    "sigmoid",
    "sigmoid_norm",
    "hinge",
    "ipo",
    "exo_pair",
    "robust",
    "discopop",
    "sft",
)
LABEL_SMOOTHING_LOSSES = ("sigmoid", "robust", "exo_pair", "aot", "aot_unpaired", "simpo", "cpo")
NLL_LOSSES = ("sft", "cpo", "orpo")
# losses that sort the batch, so that position i is not pair i
SORTING_LOSSES = ("aot", "aot_unpaired")


@dataclass(frozen=True)
class Objective:
    """What a step optimises; the fields are DPOModule's settings of the same names.

    Attributes:
        loss_types: the losses, summed with ``loss_weights``.
        loss_weights: one weight per loss; None weighs each 1.
        beta: temperature / reward scale (ORPO's lambda, IPO's tau).
        label_smoothing: assumed share of flipped labels (``LABEL_SMOOTHING_LOSSES``).
        ld_alpha: LD-DPO's weight of the tokens past a pair's shared length; None: plain sums.
        use_weighting: weigh each pair by WPO's policy likelihood.
        f_divergence_type: the divergence the reward is derived from.
        f_alpha_divergence_coef: the alpha of ``alpha_divergence``.
        discopop_tau: DiscoPOP's temperature.
        simpo_gamma: SimPO's target reward margin.
        cpo_alpha: weight of CPO's NLL term.
        sft_weight: weight of an NLL term on the chosen replies, added to any objective.
    """

    loss_types: tuple[str, ...] = ("sigmoid",)
    loss_weights: tuple[float, ...] | None = None
    beta: float = 0.1
    label_smoothing: float = 0.0
    ld_alpha: float | None = None
    use_weighting: bool = False
    f_divergence_type: FDivergence = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    discopop_tau: float = 0.05
    simpo_gamma: float = 0.5
    cpo_alpha: float = 1.0
    sft_weight: float = 0.0

    @classmethod
    def from_settings(cls, settings: Mapping) -> Objective:
        """From DPOModule's hyperparameters (``loss_type`` a name or a list of names)."""
        values = {f.name: settings[f.name] for f in fields(cls) if f.name in settings}
        loss_type = settings.get("loss_type", "sigmoid")
        values["loss_types"] = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
        if values.get("loss_weights") is not None:
            values["loss_weights"] = tuple(values["loss_weights"])
        return cls(**values)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.loss_weights or (1.0,) * len(self.loss_types)

    @property
    def needs_reference(self) -> bool:
        """Whether the loss reads reference log-probs (else training runs no reference)."""
        return any(name not in NO_REFERENCE for name in self.loss_types)

    @property
    def rewards(self) -> str | None:
        """How the logged rewards are defined: ``log-ratio`` (beta times policy minus reference),
        the reference-free objective whose own reward they are, or None (``sft`` alone)."""
        if self.needs_reference:
            return "log-ratio"
        return next((name for name in self.loss_types if name in REFERENCE_FREE), None)

    @property
    def extra_keys(self) -> tuple[str, ...]:
        """Statistics this objective adds to the loss, rewards and log-probs every one has."""
        keys = ("sft_loss",) if self.sft_weight or set(NLL_LOSSES) & set(self.loss_types) else ()
        return keys + (("log_odds_ratio", "log_odds_chosen") if "orpo" in self.loss_types else ())

    def problems(self) -> list[str]:
        """Every setting that is wrong or has no effect, each saying what to do."""
        types, problems = self.loss_types, []
        unknown = [name for name in types if name not in LOSS_TYPES]
        if not types or unknown:
            problems.append(f"unknown loss_type {unknown or types}; choose from {list(LOSS_TYPES)}")
        if self.loss_weights is not None and len(self.loss_weights) != len(types):
            problems.append(
                f"loss_weights has {len(self.loss_weights)} weights for {len(types)} loss types "
                f"{list(types)}; give one weight per loss type"
            )
        if self.beta <= 0:
            problems.append(f"beta must be positive, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            problems.append(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        elif self.label_smoothing and not set(types) & set(LABEL_SMOOTHING_LOSSES):
            problems.append(
                f"label_smoothing applies to loss types {list(LABEL_SMOOTHING_LOSSES)} only "
                "(sigmoid is then cDPO)"
            )
        if "exo_pair" in types and not self.label_smoothing:
            problems.append("exo_pair needs label_smoothing > 0 (the EXO paper uses 1e-3)")
        free = [name for name in types if name in REFERENCE_FREE]
        based = [name for name in types if name not in NO_REFERENCE]
        if free and based:
            problems.append(
                f"reference-free {free} cannot be combined with reference-based {based}: their "
                "rewards mean different things; combine either with sft or model.sft_weight"
            )
        if self.f_divergence_type != "reverse_kl" and not set(types) <= set(F_DIVERGENCE_LOSSES):
            problems.append(
                f"f_divergence_type {self.f_divergence_type} applies to loss types "
                f"{list(F_DIVERGENCE_LOSSES)} only (the others use each reply's log-ratio, where "
                "f-DPO's normaliser does not cancel); set it reverse_kl"
            )
        if not 0 < self.f_alpha_divergence_coef <= 1:
            problems.append(
                f"f_alpha_divergence_coef must be in (0, 1], got {self.f_alpha_divergence_coef}"
            )
        if self.use_weighting and set(types) & set(SORTING_LOSSES):
            problems.append(
                "use_weighting (WPO) does not apply to aot or aot_unpaired: they sort the batch, "
                "so a loss is no longer one pair's"
            )
        if self.ld_alpha is not None:
            if not 0 <= self.ld_alpha <= 1:
                problems.append(f"ld_alpha must be in [0, 1], got {self.ld_alpha}")
            if not based:
                problems.append(
                    f"ld_alpha reweights the log-probs of reference-based losses; {list(types)} "
                    "has none, so set it null"
                )
        for name in ("sft_weight", "cpo_alpha"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.discopop_tau <= 0:
            problems.append(f"discopop_tau must be positive, got {self.discopop_tau}")
        return problems


@dataclass
class ObjectiveResult:
    """A batch's loss and what is logged about it.

    Attributes:
        loss: () the loss to back-propagate.
        losses: (B,) each pair's share, detached: their mean is ``loss``.
        chosen_rewards: (B,) the objective's reward of each chosen reply (``Objective.rewards``),
            detached; None when it defines none.
        rejected_rewards: (B,) the same for the rejected replies.
        extras: ``Objective.extra_keys`` -> detached () or (B,) values.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    chosen_rewards: torch.Tensor | None
    rejected_rewards: torch.Tensor | None
    extras: dict[str, torch.Tensor]


@dataclass
class _Batch:
    """What the losses read, worked out once per batch; reference fields None without one."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_means: torch.Tensor
    rejected_means: torch.Tensor
    chosen_nll: torch.Tensor
    bco_delta: float | torch.Tensor
    chosen_logratios: torch.Tensor | None = None
    rejected_logratios: torch.Tensor | None = None
    reference_margins: torch.Tensor | None = None
    margin: torch.Tensor | None = None  # of f-divergence scores
    normalised_margin: torch.Tensor | None = None  # of per-token f-divergence scores


# loss type -> its (B,) loss per pair
PAIR_LOSSES: dict[str, Callable[[Objective, _Batch], torch.Tensor]] = {
    "sigmoid": lambda o, b: sigmoid_loss(b.margin, o.beta, o.label_smoothing),
    "hinge": lambda o, b: hinge_loss(b.margin, o.beta),
    "ipo": lambda o, b: ipo_loss(b.normalised_margin, o.beta),
    "sigmoid_norm": lambda o, b: sigmoid_loss(b.normalised_margin, o.beta),
    "robust": lambda o, b: robust_loss(b.margin, o.beta, o.label_smoothing),
    "exo_pair": lambda o, b: exo_pair_loss(b.margin, o.beta, o.label_smoothing),
    "discopop": lambda o, b: discopop_loss(b.margin, o.beta, o.discopop_tau),
    "aot": lambda o, b: aot_loss(
        b.chosen_logps - b.rejected_logps, b.reference_margins, o.beta, o.label_smoothing
    ),
    "aot_unpaired": lambda o, b: aot_unpaired_loss(
        b.chosen_logratios, b.rejected_logratios, o.beta, o.label_smoothing
    ),
    "nca_pair": lambda o, b: nca_pair_loss(b.chosen_logratios, b.rejected_logratios, o.beta),
    "bco_pair": lambda o, b: bco_pair_loss(
        b.chosen_logratios, b.rejected_logratios, o.beta, b.bco_delta
    ),
    "sppo_hard": lambda o, b: sppo_hard_loss(b.chosen_logratios, b.rejected_logratios, o.beta),
    "apo_zero": lambda o, b: apo_zero_loss(b.chosen_logratios, b.rejected_logratios, o.beta),
    "apo_down": lambda o, b: apo_down_loss(b.chosen_logratios, b.rejected_logratios, o.beta),
    "sft": lambda o, b: b.chosen_nll.expand(b.chosen_logps.shape),
    "simpo": lambda o, b: simpo_loss(
        b.chosen_means, b.rejected_means, o.beta, o.simpo_gamma, o.label_smoothing
    ),
    "cpo": lambda o, b: cpo_loss(
        b.chosen_logps, b.rejected_logps, b.chosen_nll, o.beta, o.cpo_alpha, o.label_smoothing
    ),
    "orpo": lambda o, b: orpo_loss(b.chosen_means, b.rejected_means, b.chosen_nll, o.beta),
}


def objective_loss(
    objective: Objective,
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor | None,
    counts: torch.Tensor,
    chosen_nll: torch.Tensor,
    pair_weights: torch.Tensor | None = None,
    bco_delta: float | torch.Tensor = 0.0,
) -> ObjectiveResult:
    """The objective's loss on one batch of B pairs.

    Args:
        objective: the losses and their settings.
        policy_logps: (2B,) summed log-probs of the completions under the policy (LD-DPO weighted
            when ``ld_alpha`` is set), chosen rows then rejected rows.
        reference_logps: (2B,) the same under the reference; None for an objective that needs
            none (``Objective.needs_reference``).
        counts: (2B,) scored tokens of each completion.
        chosen_nll: () NLL per token of the chosen replies (``terms.sft_nll``).
        pair_weights: (B,) WPO weights (``terms.wpo_weights``), or None.
        bco_delta: ``bco_pair``'s reward shift (``terms.running_mean``).

    Raises:
        ValueError: mismatched shapes, or no reference log-probs for a reference-based objective.
    """
    if policy_logps.dim() != 1 or policy_logps.shape[0] % 2 or counts.shape != policy_logps.shape:
        raise ValueError(
            f"policy_logps and counts must be (2B,) alike, got {tuple(policy_logps.shape)} and "
            f"{tuple(counts.shape)}"
        )
    if objective.needs_reference and (
        reference_logps is None or reference_logps.shape != policy_logps.shape
    ):
        shape = None if reference_logps is None else tuple(reference_logps.shape)
        raise ValueError(
            f"{list(objective.loss_types)} needs reference log-probs shaped like the policy's "
            f"{tuple(policy_logps.shape)}, got {shape}"
        )
    batch = _batch(objective, policy_logps, reference_logps, counts, chosen_nll, bco_delta)
    total = torch.zeros_like(batch.chosen_logps)
    for name, weight in zip(objective.loss_types, objective.weights, strict=True):
        losses = PAIR_LOSSES[name](objective, batch)
        total = total + weight * (losses if pair_weights is None else losses * pair_weights)
    if objective.sft_weight:
        total = total + objective.sft_weight * chosen_nll
    chosen_rewards, rejected_rewards = _rewards(objective, batch)
    extras = {}
    if "sft_loss" in objective.extra_keys:
        extras["sft_loss"] = chosen_nll.detach()
    if "orpo" in objective.loss_types:
        log_odds = orpo_log_odds(batch.chosen_means, batch.rejected_means).detach()
        extras["log_odds_ratio"] = torch.nn.functional.logsigmoid(log_odds)
        extras["log_odds_chosen"] = log_odds
    return ObjectiveResult(total.mean(), total.detach(), chosen_rewards, rejected_rewards, extras)


def _batch(objective, policy_logps, reference_logps, counts, chosen_nll, bco_delta) -> _Batch:
    pairs = policy_logps.shape[0] // 2
    lengths = counts.clamp(min=1).to(policy_logps.dtype)
    means = policy_logps / lengths
    batch = _Batch(
        chosen_logps=policy_logps[:pairs],
        rejected_logps=policy_logps[pairs:],
        chosen_means=means[:pairs],
        rejected_means=means[pairs:],
        chosen_nll=chosen_nll,
        bco_delta=bco_delta,
    )
    if objective.needs_reference:
        logratios = policy_logps - reference_logps
        scores = f_divergence_scores(
            logratios, objective.f_divergence_type, objective.f_alpha_divergence_coef
        )
        normalised = scores / lengths
        batch.chosen_logratios, batch.rejected_logratios = logratios[:pairs], logratios[pairs:]
        batch.reference_margins = reference_logps[:pairs] - reference_logps[pairs:]
        batch.margin = scores[:pairs] - scores[pairs:]
        batch.normalised_margin = normalised[:pairs] - normalised[pairs:]
    return batch


def _rewards(objective: Objective, batch: _Batch) -> tuple[torch.Tensor | None, ...]:
    """Each objective's own reward: beta times the log-ratio (as TRL logs it for every
    reference-based loss), SimPO's and ORPO's beta times the mean log-prob, CPO's beta times the
    summed log-prob (as TRL's CPOTrainer and ORPOTrainer log them)."""
    kind, beta = objective.rewards, objective.beta
    if kind == "log-ratio":
        chosen, rejected = batch.chosen_logratios, batch.rejected_logratios
    elif kind in ("simpo", "orpo"):
        chosen, rejected = batch.chosen_means, batch.rejected_means
    elif kind == "cpo":
        chosen, rejected = batch.chosen_logps, batch.rejected_logps
    else:
        return None, None
    return beta * chosen.detach(), beta * rejected.detach()
