"""The layout of a batch of B pairs: 2B rows, the B chosen replies then the B rejected ones.

``data.batches.collate_pairs`` lays batches out so; everything that reads one goes through
``num_pairs`` and ``split_pairs`` rather than halving shapes itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def num_pairs(batch: Mapping[str, torch.Tensor] | torch.Tensor) -> int:
    """B, the pairs of a batch (``input_ids`` (2B, T)) or of a (2B, ...) tensor.

    Raises:
        ValueError: an odd number of rows.
    """
    rows = (batch["input_ids"] if isinstance(batch, Mapping) else batch).shape[0]
    if rows % 2:
        raise ValueError(f"a batch of pairs has an even number of rows, got {rows}")
    return rows // 2


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen, rejected)``: the (B, ...) halves of a (2B, ...) tensor."""
    pairs = num_pairs(values)
    return values[:pairs], values[pairs:]
