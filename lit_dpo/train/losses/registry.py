"""Every loss type, one record each: the one place a loss type is defined.

A record says how the loss reads a batch (``loss``, from the ``PairTerms`` worked out once per
batch), whether it needs a reference, which ``Objective`` settings it takes, where its loss sits
when training starts (the health alarm's range), how its rewards are defined, and the words the
docs table (docs/configuration.md#objectives) and the model card print. ``Objective`` checks
settings against the records, ``objective_loss`` sums their losses, ``callbacks.health`` reads
their start ranges and ``reporting.model_card`` their titles; a test compares the docs table with
``objectives_table()``. Adding a loss type is one file with its maths and one record here
(docs/developer-guide.md#adding-an-objective).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lit_dpo.train.losses.anchored import (
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    nca_pair_loss,
    sppo_hard_loss,
)
from lit_dpo.train.losses.kto import apo_zero_unpaired, kto, unpaired_loss
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

# an ``objective.Objective``; not imported, as objective.py imports this module
Objective = Any
Rewards = Literal["log-ratio", "mean", "sum"]


@dataclass
class PairTerms:
    """What the losses read, worked out once per batch of B pairs; reference fields None without
    a reference. All (B,) except ``chosen_nll`` (()) and ``bco_delta``.

    Attributes:
        chosen_logps: summed log-prob of each chosen reply under the policy (LD-DPO weighted
            with ``ld_alpha``).
        rejected_logps: the same for the rejected replies.
        chosen_means: the chosen replies' log-prob per token.
        rejected_means: the same for the rejected replies.
        chosen_nll: the NLL per token of the chosen replies (``terms.sft_nll``).
        bco_delta: ``bco_pair``'s reward shift.
        chosen_logratios: policy minus reference log-prob of each chosen reply.
        rejected_logratios: the same for the rejected replies.
        reference_margins: the reference's chosen minus rejected log-prob.
        margin: chosen minus rejected f-divergence score (the log-ratio under reverse KL).
        normalised_margin: the same of per-token scores.
    """

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_means: torch.Tensor
    rejected_means: torch.Tensor
    chosen_nll: torch.Tensor
    bco_delta: float | torch.Tensor = 0.0
    chosen_logratios: torch.Tensor | None = None
    rejected_logratios: torch.Tensor | None = None
    reference_margins: torch.Tensor | None = None
    margin: torch.Tensor | None = None
    normalised_margin: torch.Tensor | None = None


@dataclass(frozen=True)
class LossRecord:
    """One loss type.

    Attributes:
        name: the ``loss_type`` value.
        loss: ``(objective, terms) -> (B,)`` the loss of each pair.
        needs_reference: reads reference log-probs (else a training step runs no reference).
        settings: the ``Objective`` fields it reads besides ``beta``; ``label_smoothing`` here
            makes that setting apply to it.
        start_range: ``objective -> (low, high)``, a sane range of the mean loss around where it
            starts (policy = reference), for the health alarm; None where none is sane (the loss
            is bounded by construction, or holds an NLL whose scale depends on model and data).
        rewards: how its logged rewards are defined: ``log-ratio`` (beta times policy minus
            reference), ``mean`` or ``sum`` (beta times the policy's log-prob per token or
            summed, of a reference-free loss), None (it defines none).
        title: a short name for the model card.
        what: one line for the docs table.
        paper: the paper, as a markdown link (empty where there is none).
        when: when to use it, for the docs table.
        f_divergence: a loss of the chosen-minus-rejected margin, where f-DPO's normaliser
            cancels, so ``f_divergence_type`` applies.
        nll: holds the NLL of the chosen replies (logged as ``sft_loss``).
        sorts_batch: sorts the batch, so that position i is not pair i (no WPO weights).
        statistics: ``terms -> {name: detached value}`` the loss logs beyond the common ones.
        paired: reads a chosen and a rejected reply per example. Every loss so far does; an
            unpaired one (KTO: each reply with a desirable/undesirable label) sets False, and
            ``objective_loss`` gives it per-reply terms instead of ``PairTerms``.
    """

    name: str
    loss: Callable[[Objective, PairTerms], torch.Tensor]
    needs_reference: bool
    title: str
    what: str
    paper: str
    when: str
    settings: tuple[str, ...] = ()
    start_range: Callable[[Objective], tuple[float, float]] | None = None
    rewards: Rewards | None = "log-ratio"
    f_divergence: bool = False
    nll: bool = False
    sorts_batch: bool = False
    statistics: Callable[[PairTerms], dict[str, torch.Tensor]] | None = None
    paired: bool = True


def _fixed(low: float, high: float) -> Callable[[Objective], tuple[float, float]]:
    return lambda objective: (low, high)


def _exo_range(o: Objective) -> tuple[float, float]:
    # starts at -log 2 - log(e (1 - e)) / 2
    smoothing = o.label_smoothing or 1e-3
    return 0.0, 2 * (-math.log(2) - math.log(smoothing * (1 - smoothing)) / 2)


def _orpo_statistics(t: PairTerms) -> dict[str, torch.Tensor]:
    log_odds = orpo_log_odds(t.chosen_means, t.rejected_means).detach()
    return {"log_odds_ratio": torch.nn.functional.logsigmoid(log_odds), "log_odds_chosen": log_odds}


_MELNYK = "[Melnyk 2024](https://arxiv.org/abs/2406.05882)"
_APO = "[D'Oosterlinck 2024](https://arxiv.org/abs/2408.06266)"

RECORDS: tuple[LossRecord, ...] = (
    LossRecord(
        name="sigmoid",
        loss=lambda o, t: sigmoid_loss(t.margin, o.beta, o.label_smoothing),
        needs_reference=True,
        settings=("label_smoothing",),
        start_range=_fixed(0.0, 2.0),  # log 2
        f_divergence=True,
        title="DPO (sigmoid loss)",
        what="DPO: log-sigmoid of the log-ratio margin; cDPO with `label_smoothing`",
        paper="[Rafailov 2023](https://arxiv.org/abs/2305.18290), "
        "[cDPO](https://ericmitchell.ai/cdpo.pdf)",
        when="the default; cDPO for noisy labels",
    ),
    LossRecord(
        name="hinge",
        loss=lambda o, t: hinge_loss(t.margin, o.beta),
        needs_reference=True,
        start_range=_fixed(0.0, 2.0),  # 1
        f_divergence=True,
        title="hinge loss on the log-ratio margin (SLiC)",
        what="SLiC: hinge on the scaled margin, zero past 1/beta",
        paper="[Zhao 2023](https://arxiv.org/abs/2305.10425)",
        when="a margin you can stop at",
    ),
    LossRecord(
        name="ipo",
        loss=lambda o, t: ipo_loss(t.normalised_margin, o.beta),
        needs_reference=True,
        start_range=lambda o: (0.0, 2 * (1 / (2 * o.beta)) ** 2),
        f_divergence=True,
        title="IPO (squared loss on length-normalised log-ratios)",
        what="IPO: squared loss pulling the per-token margin to 1/(2 beta)",
        paper="[Azar 2023](https://arxiv.org/abs/2310.12036)",
        when="DPO overfits (rewards run away)",
    ),
    LossRecord(
        name="sigmoid_norm",
        loss=lambda o, t: sigmoid_loss(t.normalised_margin, o.beta),
        needs_reference=True,
        start_range=_fixed(0.0, 2.0),
        f_divergence=True,
        title="DPO on length-normalised log-ratios",
        what="DPO on per-token (length-normalised) log-ratios",
        paper="TRL",
        when="replies of very different lengths",
    ),
    LossRecord(
        name="robust",
        loss=lambda o, t: robust_loss(t.margin, o.beta, o.label_smoothing),
        needs_reference=True,
        settings=("label_smoothing",),
        # unbounded below by design
        start_range=_fixed(-math.inf, 2.0),
        f_divergence=True,
        title="robust DPO (noisy labels)",
        what="rDPO: unbiased DPO under labels flipped with probability `label_smoothing`",
        paper="[Chowdhury 2024](https://arxiv.org/abs/2403.00409)",
        when="known label noise (e.g. 0.1)",
    ),
    LossRecord(
        name="exo_pair",
        loss=lambda o, t: exo_pair_loss(t.margin, o.beta, o.label_smoothing),
        needs_reference=True,
        settings=("label_smoothing",),
        start_range=_exo_range,
        f_divergence=True,
        title="EXO (reverse KL to the preference distribution)",
        what="EXO: reverse KL to the label-smoothed preference",
        paper="[Ji 2024](https://arxiv.org/abs/2402.00856)",
        when="mode-seeking alignment; needs `label_smoothing` 1e-3",
    ),
    LossRecord(
        name="discopop",
        loss=lambda o, t: discopop_loss(t.margin, o.beta, o.discopop_tau),
        needs_reference=True,
        settings=("discopop_tau",),
        start_range=_fixed(0.0, 2.0),  # 0.85
        f_divergence=True,
        title="DiscoPOP (log-ratio modulated loss)",
        what="DiscoPOP: logistic loss blended into an exponential one (`discopop_tau`)",
        paper="[Lu 2024](https://arxiv.org/abs/2406.08414)",
        when="a discovered alternative to DPO",
    ),
    LossRecord(
        name="aot",
        loss=lambda o, t: aot_loss(
            t.chosen_logps - t.rejected_logps, t.reference_margins, o.beta, o.label_smoothing
        ),
        needs_reference=True,
        settings=("label_smoothing",),
        start_range=_fixed(0.0, 2.0),
        sorts_batch=True,
        title="AOT (distributional alignment, paired)",
        what="AOT: DPO on the batch's sorted margins",
        paper=_MELNYK,
        when="distributional alignment; larger batches",
    ),
    LossRecord(
        name="aot_unpaired",
        loss=lambda o, t: aot_unpaired_loss(
            t.chosen_logratios, t.rejected_logratios, o.beta, o.label_smoothing
        ),
        needs_reference=True,
        settings=("label_smoothing",),
        start_range=_fixed(0.0, 2.0),
        sorts_batch=True,
        title="AOT (distributional alignment, unpaired)",
        what="AOT: DPO on the batch's sorted chosen vs sorted rejected rewards",
        paper=_MELNYK,
        when="distributional alignment of unpaired data; larger batches",
    ),
    LossRecord(
        name="nca_pair",
        loss=lambda o, t: nca_pair_loss(t.chosen_logratios, t.rejected_logratios, o.beta),
        needs_reference=True,
        start_range=_fixed(0.0, 3.0),  # 2 log 2
        title="NCA (noise-contrastive alignment)",
        what="NCA: raises the chosen reward in absolute terms",
        paper="[Chen 2024](https://arxiv.org/abs/2402.05369)",
        when="chosen log-probs fall under DPO",
    ),
    LossRecord(
        name="bco_pair",
        loss=lambda o, t: bco_pair_loss(
            t.chosen_logratios, t.rejected_logratios, o.beta, t.bco_delta
        ),
        needs_reference=True,
        start_range=_fixed(0.0, 3.0),  # 2 log 2
        title="BCO (binary classifier optimisation)",
        what="BCO: chosen vs rejected as a binary classifier, shifted by the running mean reward",
        paper="[Jung 2024](https://arxiv.org/abs/2404.04656)",
        when="robust to how rewards drift",
    ),
    LossRecord(
        name="sppo_hard",
        loss=lambda o, t: sppo_hard_loss(t.chosen_logratios, t.rejected_logratios, o.beta),
        needs_reference=True,
        start_range=lambda o: (0.0, 4 * (1 / (2 * o.beta)) ** 2),
        title="SPPO (hard labels)",
        what="SPPO with hard win probabilities: squared loss to +-1/(2 beta) per reply",
        paper="[Wu 2024](https://arxiv.org/abs/2405.00675)",
        when="self-play-style targets per reply",
    ),
    LossRecord(
        name="apo_zero",
        loss=lambda o, t: apo_zero_loss(t.chosen_logratios, t.rejected_logratios, o.beta),
        needs_reference=True,
        # bounded in [0, 2] by construction: a range check could never fire
        start_range=None,
        title="APO-zero (anchored preference optimisation)",
        what="APO: chosen up, rejected down",
        paper=_APO,
        when="chosen replies better than the model's own",
    ),
    LossRecord(
        name="apo_down",
        loss=lambda o, t: apo_down_loss(t.chosen_logratios, t.rejected_logratios, o.beta),
        needs_reference=True,
        start_range=None,
        title="APO-down (anchored preference optimisation)",
        what="APO: both down, rejected more",
        paper=_APO,
        when="chosen replies worse than the model's own",
    ),
    LossRecord(
        name="sft",
        loss=lambda o, t: t.chosen_nll.expand(t.chosen_logps.shape),
        needs_reference=False,
        rewards=None,
        f_divergence=True,
        nll=True,
        title="SFT (NLL of the chosen replies)",
        what="NLL per token of the chosen replies",
        paper="",
        when="combined with another (`model.objective.sft_weight` is the same term, outside WPO)",
    ),
    LossRecord(
        name="simpo",
        loss=lambda o, t: simpo_loss(
            t.chosen_means, t.rejected_means, o.beta, o.simpo_gamma, o.label_smoothing
        ),
        needs_reference=False,
        settings=("simpo_gamma", "label_smoothing"),
        start_range=lambda o: (0.0, max(2.0, 2 * math.log1p(math.exp(o.simpo_gamma)))),
        rewards="mean",
        title="SimPO (reference-free, length-normalised, with a target margin)",
        what="SimPO: per-token mean log-prob as the reward, with a target margin `simpo_gamma`",
        paper="[Meng 2024](https://arxiv.org/abs/2405.14734)",
        when="no reference, length-normalised (beta 2 to 2.5)",
    ),
    LossRecord(
        name="cpo",
        loss=lambda o, t: cpo_loss(
            t.chosen_logps, t.rejected_logps, t.chosen_nll, o.beta, o.cpo_alpha, o.label_smoothing
        ),
        needs_reference=False,
        settings=("cpo_alpha", "label_smoothing"),
        rewards="sum",
        nll=True,
        title="CPO (reference-free contrastive loss plus NLL)",
        what="CPO: sigmoid on the policy's log-prob margin plus `cpo_alpha` times the NLL of "
        "chosen",
        paper="[Xu 2024](https://arxiv.org/abs/2401.08417)",
        when="no reference, near-SFT data",
    ),
    LossRecord(
        name="orpo",
        loss=lambda o, t: orpo_loss(t.chosen_means, t.rejected_means, t.chosen_nll, o.beta),
        needs_reference=False,
        rewards="mean",
        nll=True,
        statistics=_orpo_statistics,
        title="ORPO (odds-ratio loss plus NLL)",
        what="ORPO: NLL of chosen plus beta times the log-odds-ratio term",
        paper="[Hong 2024](https://arxiv.org/abs/2403.07691)",
        when="SFT and preference in one stage, no reference",
    ),
    LossRecord(
        name="kto",
        loss=lambda o, t: unpaired_loss(o, t, kto),
        needs_reference=True,
        settings=("desirable_weight", "undesirable_weight"),
        # starts at lambda / 2 for each reply (policy = reference, KL 0); past 0.8 lambda most
        # replies sit on the wrong side of the KL baseline
        start_range=lambda o: (0.0, 0.8 * max(o.desirable_weight, o.undesirable_weight)),
        paired=False,
        title="KTO (Kahneman-Tversky optimisation, unpaired feedback)",
        what="KTO: each reply's log-ratio against a KL baseline from mismatched replies, "
        "desirable up, undesirable down (`desirable_weight`, `undesirable_weight`)",
        paper="[Ethayarajh 2024](https://arxiv.org/abs/2402.01306)",
        when="thumbs-up/down feedback, not pairs (or `data.unpair`); imbalanced counts",
    ),
    LossRecord(
        name="apo_zero_unpaired",
        loss=lambda o, t: unpaired_loss(o, t, apo_zero_unpaired),
        needs_reference=True,
        settings=("desirable_weight", "undesirable_weight"),
        start_range=lambda o: (0.0, 0.8 * max(o.desirable_weight, o.undesirable_weight)),
        paired=False,
        title="APO-zero, unpaired (anchored preference optimisation)",
        what="APO-zero on unpaired replies: desirable up, undesirable down, from zero",
        paper=_APO,
        when="unpaired feedback whose desirable replies beat the model's own",
    ),
)

LOSSES: dict[str, LossRecord] = {record.name: record for record in RECORDS}
LOSS_TYPES: tuple[str, ...] = tuple(LOSSES)
# the choices LightningCLI offers and checks, built from the records
LossType = Literal[LOSS_TYPES]  # type: ignore[valid-type]


def loss_type_names(loss_type: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``model.objective.loss_type`` as a tuple of names: one name, or a list of them summed."""
    return (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)


def objectives_table() -> str:
    """The docs' table of loss types (docs/configuration.md#objectives), one row per record."""
    lines = [
        "| `loss_type` | what | paper | when to use | reference |",
        "|---|---|---|---|---|",
    ]
    for r in RECORDS:
        reference = "based" if r.needs_reference else "free"
        lines.append(f"| `{r.name}` | {r.what} | {r.paper} | {r.when} | {reference} |")
    return "\n".join(lines)
