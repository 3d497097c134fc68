"""Preference objectives: TRL 1.16's DPOTrainer catalogue, reference-free ones, and their terms.

Pure maths, tensors in and tensors out, each function with its formula and paper:

- ``margin``: DPO-family losses on the chosen-minus-rejected margin of log-ratios: sigmoid (DPO,
  cDPO), hinge, ipo, sigmoid_norm, robust, exo_pair, discopop, aot, aot_unpaired;
- ``anchored``: losses on each reply's own log-ratio: nca_pair, bco_pair, sppo_hard, apo_zero,
  apo_down;
- ``reference_free``: simpo, cpo, orpo, from the policy's log-probs alone;
- ``terms``: the SFT/NLL term, LD-DPO's length split, WPO's pair weights, f-divergence scores;
- ``registry``: one record per loss type (its loss, reference, settings, health range, words);
- ``settings``: what a config sets (``ObjectiveSettings``, ``model.objective.*``);
- ``objective``: those settings built for a step (``Objective``) and the weighted sum of several
  losses (``objective_loss``).
"""

from lit_dpo.train.losses.objective import Objective, ObjectiveResult, objective_loss
from lit_dpo.train.losses.registry import (
    LOSS_TYPES,
    LOSSES,
    LossRecord,
    LossType,
    loss_type_names,
)
from lit_dpo.train.losses.terms import FDivergence, ld_logps, sft_nll, wpo_weights

__all__ = [
    "LOSSES",
    "LOSS_TYPES",
    "FDivergence",
    "LossRecord",
    "LossType",
    "Objective",
    "ObjectiveResult",
    "ld_logps",
    "loss_type_names",
    "objective_loss",
    "sft_nll",
    "wpo_weights",
]
