"""An objective: one or several losses with weights, and the terms around them (pure maths).

``Objective`` holds the settings (``settings.ObjectiveSettings``: ``loss_type``, ``beta``...)
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

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, get_type_hints

import torch

from lit_dpo.train.losses.registry import (
    LOSS_TYPES,
    LOSSES,
    LossType,
    PairTerms,
    loss_type_names,
)
from lit_dpo.train.losses.settings import ObjectiveSettings
from lit_dpo.train.losses.terms import f_divergence_scores
from lit_dpo.train.pairs import split_pairs

__all__ = ["LOSS_TYPES", "LossType", "Objective", "ObjectiveResult", "objective_loss"]


def _named(flag: str) -> tuple[str, ...]:
    """The loss types whose record sets ``flag``."""
    return tuple(name for name, record in LOSSES.items() if getattr(record, flag))


def _built_fields() -> list[tuple[str, Any, Any]]:
    """``Objective``'s fields: ``ObjectiveSettings``' own, with their types and defaults, but
    ``loss_types``, the names in ``loss_type``, and ``loss_weights`` as tuples (hashable, as a
    built objective is never changed)."""
    # resolved where they are declared, so that get_type_hints(Objective) works here too
    types, built = get_type_hints(ObjectiveSettings), []
    for setting in fields(ObjectiveSettings):
        default = setting.default
        if setting.name == "loss_type":
            built.append(("loss_types", tuple[str, ...], field(default=loss_type_names(default))))
        elif setting.name == "loss_weights":
            weights = None if default is None else tuple(default)
            built.append(("loss_weights", tuple[float, ...] | None, field(default=weights)))
        else:
            built.append((setting.name, types[setting.name], field(default=default)))
    return built


# the fields, from the one declaration of the settings; ``Objective`` adds what they mean
_ObjectiveFields = make_dataclass(
    "_ObjectiveFields", _built_fields(), frozen=True, namespace={"__module__": __name__}
)


@dataclass(frozen=True)
class Objective(_ObjectiveFields):
    """What a step optimises: ``ObjectiveSettings`` (``model.objective.*``) as a step reads them.

    Built once, from the settings (``from_settings``), and never changed; ``problems`` is the
    one place its settings are checked, against the loss types' records (``registry``).

    Attributes:
        loss_types: the names in ``loss_type``, in order (a tuple), summed with ``loss_weights``.
        loss_weights: one weight per loss, as a tuple; None weighs each 1.

    Every other field is the setting of the same name in ``ObjectiveSettings``, with its
    default (``beta``, ``label_smoothing``, ``sft_weight``...; their meaning is documented there).
    """

    @classmethod
    def from_settings(cls, settings: Mapping) -> Objective:
        """From DPOModule's settings (``loss_type`` a name or a list of names)."""
        values = {f.name: settings[f.name] for f in fields(cls) if f.name in settings}
        values["loss_types"] = loss_type_names(
            settings.get("loss_type", ObjectiveSettings.loss_type)
        )
        if values.get("loss_weights") is not None:
            values["loss_weights"] = tuple(values["loss_weights"])
        return cls(**values)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.loss_weights or (1.0,) * len(self.loss_types)

    @property
    def records(self) -> tuple:
        """The registry's record of each known loss type, in order."""
        return tuple(LOSSES[name] for name in self.loss_types if name in LOSSES)

    @property
    def unpaired(self) -> bool:
        """Whether it learns from unpaired replies with labels (KTO) rather than pairs."""
        return any(not record.paired for record in self.records)

    @property
    def needs_kl(self) -> bool:
        """Whether it estimates KTO's KL baseline from the batch (needs 2 or more rows)."""
        return "kto" in self.loss_types

    @property
    def needs_reference(self) -> bool:
        """Whether the loss reads reference log-probs (else training runs no reference)."""
        return any(record.needs_reference for record in self.records)

    @property
    def rewards(self) -> str | None:
        """How the logged rewards are defined: ``log-ratio`` (beta times policy minus reference),
        ``mean`` or ``sum`` (a reference-free objective's own), or None (``sft`` alone)."""
        if self.needs_reference:
            return "log-ratio"
        return next((r.rewards for r in self.records if r.rewards is not None), None)

    @property
    def extra_keys(self) -> tuple[str, ...]:
        """Statistics this objective adds to the loss, rewards and log-probs every one has."""
        nll = self.sft_weight or any(record.nll for record in self.records)
        keys = ("sft_loss",) if nll else ()
        return keys + (("log_odds_ratio", "log_odds_chosen") if "orpo" in self.loss_types else ())

    def problems(self) -> list[str]:
        """Every setting that is wrong or has no effect, each saying what to do."""
        types, problems = self.loss_types, []
        unknown = [name for name in types if name not in LOSSES]
        if not types or unknown:
            problems.append(f"unknown loss_type {unknown or types}; choose from {list(LOSS_TYPES)}")
        if self.loss_weights is not None and len(self.loss_weights) != len(types):
            problems.append(
                f"loss_weights has {len(self.loss_weights)} weights for {len(types)} loss types "
                f"{list(types)}; give one weight per loss type"
            )
        if self.beta <= 0:
            problems.append(f"beta must be positive, got {self.beta}")
        smoothed = _taking("label_smoothing")
        if not 0 <= self.label_smoothing < 0.5:
            problems.append(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        elif self.label_smoothing and not set(types) & set(smoothed):
            problems.append(
                f"label_smoothing applies to loss types {list(smoothed)} only "
                "(sigmoid is then cDPO)"
            )
        if "exo_pair" in types and not self.label_smoothing:
            problems.append("exo_pair needs label_smoothing > 0 (the EXO paper uses 1e-3)")
        free = [r.name for r in self.records if not r.needs_reference and r.rewards]
        based = [r.name for r in self.records if r.needs_reference]
        if free and based:
            problems.append(
                f"reference-free {free} cannot be combined with reference-based {based}: their "
                "rewards mean different things; combine either with sft or "
                "model.objective.sft_weight"
            )
        divergent = _named("f_divergence")
        if self.f_divergence_type != "reverse_kl" and not set(types) <= set(divergent):
            problems.append(
                f"f_divergence_type {self.f_divergence_type} applies to loss types "
                f"{list(divergent)} only (the others use each reply's log-ratio, where "
                "f-DPO's normaliser does not cancel); set it reverse_kl"
            )
        if not 0 < self.f_alpha_divergence_coef <= 1:
            problems.append(
                f"f_alpha_divergence_coef must be in (0, 1], got {self.f_alpha_divergence_coef}"
            )
        sorting = [r.name for r in self.records if r.sorts_batch]
        if self.use_weighting and sorting:
            problems.append(
                f"use_weighting (WPO) does not apply to {' or '.join(sorting)}: they sort the "
                "batch, so a loss is no longer one pair's"
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
        problems += self._unpaired_problems()
        if self.discopop_tau <= 0:
            problems.append(f"discopop_tau must be positive, got {self.discopop_tau}")
        return problems


    def _unpaired_problems(self) -> list[str]:
        problems = []
        unpaired = [r.name for r in self.records if not r.paired]
        if unpaired and (len(self.loss_types) > 1 or self.sft_weight):
            problems.append(
                f"{unpaired[0]} learns from unpaired replies and cannot be combined with other "
                "loss types or sft_weight; give it alone"
            )
        if unpaired and (self.ld_alpha is not None or self.use_weighting):
            problems.append(
                f"ld_alpha and use_weighting compare the two replies of a pair; {unpaired[0]} "
                "has one reply per row, so leave them unset"
            )
        for name in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, name)
            if value <= 0:
                problems.append(f"{name} must be positive, got {value}")
            elif value != 1.0 and not unpaired:
                problems.append(
                    f"{name} applies to loss types {list(_taking(name))} only; leave it 1"
                )
        return problems


def _taking(setting: str) -> tuple[str, ...]:
    """The loss types whose record takes ``setting``."""
    return tuple(name for name, record in LOSSES.items() if setting in record.settings)


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
    terms = pair_terms(objective, policy_logps, reference_logps, counts, chosen_nll, bco_delta)
    total = torch.zeros_like(terms.chosen_logps)
    for record, weight in zip(objective.records, objective.weights, strict=True):
        losses = record.loss(objective, terms)
        total = total + weight * (losses if pair_weights is None else losses * pair_weights)
    if objective.sft_weight:
        total = total + objective.sft_weight * chosen_nll
    chosen_rewards, rejected_rewards = _rewards(objective, terms)
    extras = {}
    if "sft_loss" in objective.extra_keys:
        extras["sft_loss"] = chosen_nll.detach()
    for record in objective.records:
        if record.statistics is not None:
            extras.update(record.statistics(terms))
    return ObjectiveResult(total.mean(), total.detach(), chosen_rewards, rejected_rewards, extras)


def pair_terms(
    objective: Objective,
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor | None,
    counts: torch.Tensor,
    chosen_nll: torch.Tensor,
    bco_delta: float | torch.Tensor = 0.0,
) -> PairTerms:
    """What the losses read (``registry.PairTerms``), from (2B,) log-probs and token counts."""
    lengths = counts.clamp(min=1).to(policy_logps.dtype)
    chosen_logps, rejected_logps = split_pairs(policy_logps)
    chosen_means, rejected_means = split_pairs(policy_logps / lengths)
    terms = PairTerms(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        chosen_means=chosen_means,
        rejected_means=rejected_means,
        chosen_nll=chosen_nll,
        bco_delta=bco_delta,
    )
    if objective.needs_reference:
        logratios = policy_logps - reference_logps
        scores = f_divergence_scores(
            logratios, objective.f_divergence_type, objective.f_alpha_divergence_coef
        )
        terms.chosen_logratios, terms.rejected_logratios = split_pairs(logratios)
        terms.reference_margins = _margin(reference_logps)
        terms.margin = _margin(scores)
        terms.normalised_margin = _margin(scores / lengths)
    return terms


def _margin(values: torch.Tensor) -> torch.Tensor:
    chosen, rejected = split_pairs(values)
    return chosen - rejected


def _rewards(objective: Objective, terms: PairTerms) -> tuple[torch.Tensor | None, ...]:
    """Each objective's own reward: beta times the log-ratio (as TRL logs it for every
    reference-based loss), SimPO's and ORPO's beta times the mean log-prob, CPO's beta times the
    summed log-prob (as TRL's CPOTrainer and ORPOTrainer log them)."""
    kind, beta = objective.rewards, objective.beta
    if kind == "log-ratio":
        chosen, rejected = terms.chosen_logratios, terms.rejected_logratios
    elif kind == "mean":
        chosen, rejected = terms.chosen_means, terms.rejected_means
    elif kind == "sum":
        chosen, rejected = terms.chosen_logps, terms.rejected_logps
    else:
        return None, None
    return beta * chosen.detach(), beta * rejected.detach()
