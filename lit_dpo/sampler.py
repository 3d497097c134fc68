"""A training sampler that puts pairs of similar length in the same batch, to cut padding.

Every batch is padded to its longest pair, so a batch mixing a 60-token pair with a 300-token one
spends most of its compute on padding. Shuffled indices are cut into buckets of
``BUCKET_BATCHES`` batches, each bucket is sorted by length and cut into batches, and the batches
are shuffled: batches hold pairs of similar length, yet which pairs meet and in which order the
batches come stays random. This is transformers' ``LengthGroupedSampler`` (megabatches of 50),
made reproducible from a seed and an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

# Larger buckets group lengths more tightly but make batches less random; 50 is transformers'.
BUCKET_BATCHES = 50


class LengthGroupedSampler(Sampler[int]):
    """Indices in an order whose consecutive ``batch_size`` runs have similar lengths.

    Use it as a DataLoader's ``sampler`` with the same ``batch_size``. Only the last batch of an
    epoch can be short, as with a plain shuffle.

    Args:
        lengths: cost of each example (tokens of prompt + chosen + rejected).
        batch_size: examples per batch.
        seed: the order of epoch e depends only on ``seed`` and e.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start, so every epoch has its own order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        bucket = self.batch_size * BUCKET_BATCHES
        batches = []
        for start in range(0, len(order), bucket):
            members = order[start : start + bucket]
            # longest first, ties broken by the shuffled order (stable sort)
            members = members[self.lengths[members].argsort(descending=True, stable=True)]
            batches.extend(members.split(self.batch_size))
        # A short batch can only come from the last bucket; it stays last so that the DataLoader,
        # which cuts every batch_size indices, cuts exactly these batches.
        short = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        if short is not None:
            shuffled.append(short)
        return iter(torch.cat(shuffled).tolist() if shuffled else [])
