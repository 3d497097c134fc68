"""Masked log-prob gathering against a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch

from lit_dpo.data.batches import IGNORE_INDEX
from lit_dpo.train.logps import sequence_tokens


def sequence_logps(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) summed log-probs and scored-token counts of full logits."""
    tokens = sequence_tokens(logits, labels)
    return tokens.sums(), tokens.counts()


def test_sums_only_scored_tokens_with_the_one_position_shift():
    # Vocabulary of 2. Position 0 predicts token 1's label, position 1 predicts token 2's label.
    # logits [0, 0] -> p = 1/2 each; logits [0, ln 3] -> p(1) = 3/4.
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, 5.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])  # score token 1 (=0) and token 2 (=1)
    logps, counts = sequence_logps(logits, labels)
    assert logps.item() == pytest.approx(math.log(0.5) + math.log(0.75), abs=1e-6)
    assert counts.tolist() == [2]


def test_matches_log_softmax_gather_on_random_logits():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[:, :2] = IGNORE_INDEX
    labels[2, 4:] = IGNORE_INDEX
    logps, counts = sequence_logps(logits, labels)
    expected = []
    for row in range(3):
        total = 0.0
        for t in range(1, 6):
            if labels[row, t] != IGNORE_INDEX:
                total += logits[row, t - 1].log_softmax(-1)[labels[row, t]].item()
        expected.append(total)
    assert torch.allclose(logps, torch.tensor(expected), atol=1e-5)
    assert counts.tolist() == [4, 4, 2]


def test_shape_mismatch_raises_naming_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5, 3\) vs \(2, 4\)"):
        sequence_logps(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long))
