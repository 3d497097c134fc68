"""The order in which training pairs are visited: seeded, shardable across ranks, resumable.

One global order per epoch, a function of the seed and the epoch only: a plain shuffle, or (with
``group_by_length``) batches of pairs of similar length. Every batch is padded to its longest pair,
so a batch mixing a 60-token pair with a 300-token one spends most of its compute on padding.
Grouping cuts shuffled indices into buckets of ``BUCKET_BATCHES`` batches, sorts each bucket by
length, cuts it into batches and shuffles the batches (transformers' ``LengthGroupedSampler``,
megabatches of 50, made reproducible from a seed and an epoch).

Under DDP each of ``W`` ranks takes every W-th position of that order, so at every step the ranks
together see exactly the ``W * batch_size`` pairs one process with batch ``W * batch_size`` would
see. After a resume, the pairs an interrupted epoch already consumed are skipped.

Evaluation visits every pair exactly once across ranks (``EvaluationSampler``), without the pairs
``DistributedSampler`` repeats to even the ranks out, which would count twice in the metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

# Larger buckets group lengths more tightly but make batches less random; 50 is transformers'.
BUCKET_BATCHES = 50


def shuffled_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(num_examples)`` that depends only on ``seed`` and ``epoch``."""
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[int]:
    """A permutation whose consecutive ``batch_size`` runs hold examples of similar length.

    Only the last batch can be short, as with a plain shuffle.

    Args:
        lengths: cost of each example (tokens of prompt + chosen + rejected).
        batch_size: examples per (global) batch.
        seed: with ``epoch``, fixes the order.
        epoch: each epoch has its own order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = torch.as_tensor(list(lengths), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(lengths), generator=generator)
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), bucket):
        members = order[start : start + bucket]
        # longest first, ties broken by the shuffled order (stable sort)
        members = members[lengths[members].argsort(descending=True, stable=True)]
        batches.extend(members.split(batch_size))
    # A short batch can only come from the last bucket; it stays last so that the DataLoader,
    # which cuts every batch_size indices, cuts exactly these batches.
    short = batches.pop() if batches and len(batches[-1]) < batch_size else None
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    if short is not None:
        shuffled.append(short)
    return torch.cat(shuffled).tolist() if shuffled else []


class PairSampler(DistributedSampler):
    """Training order for a DataLoader, one rank's share of it, from a given position on.

    A ``DistributedSampler`` so that Lightning uses it as it is under DDP instead of wrapping it
    in one that would reorder the pairs.

    Args:
        lengths: cost of each pair (tokens of prompt + chosen + rejected).
        batch_size: pairs per batch on one rank.
        seed: the order of epoch e depends only on ``seed`` and e (not on the number of ranks).
        group_by_length: batch pairs of similar length together.
        num_replicas: ranks sharing the data.
        rank: this rank.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        group_by_length: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        lengths = list(lengths)
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = lengths
        self.batch_size = batch_size
        self.group_by_length = group_by_length
        # global positions of this epoch's order already trained on (set by a resume)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start, so every epoch has its own order."""
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Start at position ``consumed`` of epoch ``epoch``'s global order."""
        if consumed >= self.total_size:
            # a checkpoint saved at the end of an epoch: the next one starts from its beginning
            epoch, consumed = epoch + 1, 0
        self.epoch, self.skip = epoch, consumed

    def global_order(self) -> list[int]:
        """This epoch's order over all ranks."""
        if self.group_by_length:
            global_batch = self.batch_size * self.num_replicas
            return length_grouped_order(self.lengths, global_batch, self.seed, self.epoch)
        return shuffled_order(len(self.lengths), self.seed, self.epoch)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        # As DistributedSampler does, repeat pairs from the start so every rank gets as many
        # batches (a rank with fewer would leave the others waiting in all-reduce).
        padded = order + order[: self.total_size - len(order)]
        remaining = padded[self.skip :]
        # Len stays a full epoch's (the scheduler's step count depends on it); the loop counts
        # the skipped batches as done.
        self.skip = 0
        return iter(remaining[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


class EvaluationSampler(DistributedSampler):
    """One rank's share of the validation pairs, in order: every pair once over all ranks.

    Ranks may get one batch more than others, which evaluation allows (no gradient all-reduce)
    and training would not. A ``DistributedSampler``, so Lightning does not replace it with one
    that repeats pairs.

    Args:
        num_pairs: size of the split; at least ``num_replicas``: every rank needs a batch, as
            DDP syncs buffers in the first forward of each rank.
        num_replicas: ranks sharing the split.
        rank: this rank.
        order: the pairs in the order to visit them (each index once), e.g. longest first; the
            ranks take alternate pairs of it. None: split order.
    """

    def __init__(
        self,
        num_pairs: int,
        num_replicas: int = 1,
        rank: int = 0,
        order: Sequence[int] | None = None,
    ) -> None:
        if num_pairs < num_replicas:
            raise ValueError(f"{num_pairs} pairs cannot give each of {num_replicas} ranks one")
        if order is not None and sorted(order) != list(range(num_pairs)):
            raise ValueError(f"order must hold each of the {num_pairs} pair indices once")
        super().__init__(range(num_pairs), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.order = list(range(num_pairs)) if order is None else list(order)
        self.num_samples = len(range(rank, num_pairs, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
