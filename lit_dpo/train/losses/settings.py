"""What a config sets of the objective (``model.objective.*``): ``ObjectiveSettings``.

The one place each objective setting is declared, with its default and the words ``--help``
prints. ``lit_dpo.train.settings`` holds it among DPOModule's groups; ``objective.Objective``,
built from it, takes its fields from here (``loss_type`` becomes the tuple ``loss_types``), so a
new setting is one field and one ``Attributes:`` line here. It lives beside the losses rather than
in ``train/settings.py`` because that module imports the losses' names (``LossType``): the
objective importing it back would be a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_dpo.train.losses.registry import LossType
from lit_dpo.train.losses.terms import FDivergence


@dataclass(frozen=True)
class ObjectiveSettings:
    """What a step optimises: the loss types, their weights and the terms around them
    (docs/configuration.md#objectives lists every loss type).

    Attributes:
        loss_type: the objective, or a list of objectives summed with ``loss_weights``:
            DPO-family ``sigmoid`` (DPO; cDPO with label_smoothing), ``hinge``, ``ipo``,
            ``exo_pair``, ``nca_pair``, ``robust``, ``bco_pair``, ``sppo_hard``, ``aot``,
            ``aot_unpaired``, ``apo_zero``, ``apo_down``, ``discopop``, ``sigmoid_norm``; ``sft``
            (NLL of the chosen replies); reference-free ``simpo``, ``cpo``, ``orpo``, which run no
            reference forward in training; unpaired ``kto``, ``apo_zero_unpaired``.
        beta: DPO temperature; larger keeps the policy closer to the reference (the reward
            scale of SimPO, CPO and ORPO: ORPO's lambda, IPO's tau).
        loss_weights: one weight per loss_type entry; null weighs each 1.
        label_smoothing: assumed share of flipped labels: cDPO with sigmoid, and robust, aot,
            aot_unpaired, simpo, cpo; EXO's epsilon (exo_pair needs it above 0, e.g. 1e-3).
        ld_alpha: LD-DPO: the tokens of the longer reply past the length it shares with the other
            count this much (0 to 1) in the log-probs of policy and reference; null: plain sums.
        use_weighting: WPO: weigh each pair by how likely the policy is to write it now (not with
            aot, aot_unpaired).
        f_divergence_type: divergence from the reference the rewards derive from (f-DPO):
            ``reverse_kl`` (DPO), ``forward_kl``, ``js_divergence``, ``alpha_divergence``; only
            with sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, discopop, sft.
        f_alpha_divergence_coef: alpha of ``alpha_divergence``, in (0, 1]: near 0 reverse KL,
            1 forward KL (the paper's convention; TRL 1.16's alpha is one minus this).
        discopop_tau: DiscoPOP's temperature.
        simpo_gamma: SimPO's target reward margin (the paper: 0.3 to 0.5 times beta, beta 2-2.5).
        cpo_alpha: weight of CPO's NLL term on the chosen replies.
        sft_weight: weight of an SFT term, the NLL per token of the chosen replies, added to any
            objective (logged as ``sft_loss``); 0.1 to 1 counters falling chosen log-probs.
        desirable_weight: ``kto`` and ``apo_zero_unpaired``: the weight of desirable replies'
            losses (KTO's lambda_D); raise it when desirable rows are fewer, so that
            desirable_weight x desirable rows / (undesirable_weight x undesirable rows) is in
            [1, 4/3] (a warning says when it is not).
        undesirable_weight: the weight of undesirable replies' losses (lambda_U).
    """

    loss_type: LossType | list[LossType] = "sigmoid"
    beta: float = 0.1
    loss_weights: list[float] | None = None
    label_smoothing: float = 0.0
    ld_alpha: float | None = None
    use_weighting: bool = False
    f_divergence_type: FDivergence = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    discopop_tau: float = 0.05
    simpo_gamma: float = 0.5
    cpo_alpha: float = 1.0
    sft_weight: float = 0.0
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
