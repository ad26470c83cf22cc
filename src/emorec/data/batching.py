"""The pad+mask collate (the batch contract), length-bucketed batch samplers (sharded under DDP)
and the training and validation loaders."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from emorec.data.dataset import MODALITIES, ClipDataset
from emorec.errors import EmorecError


def pad_collate(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Pad each modality to the longest clip in the batch and build its mask."""
    if not items:
        raise ValueError("empty batch")
    batch: dict[str, torch.Tensor] = {
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }
    if "classes" in items[0]:
        batch["classes"] = torch.stack([it["classes"] for it in items])  # (B, C) bool
    if "corpus" in items[0]:
        batch["corpus"] = torch.tensor([it["corpus"] for it in items], dtype=torch.long)  # (B,)
    for m in MODALITIES:
        if m not in items[0]:
            continue
        seqs = [it[m] for it in items]
        longest = max(1, max(s.shape[0] for s in seqs))
        dim = seqs[0].shape[1]
        padded = torch.zeros(len(seqs), longest, dim, dtype=torch.float32)  # (B, T, F)
        mask = torch.zeros(len(seqs), longest, dtype=torch.bool)  # (B, T)
        for row, seq in enumerate(seqs):
            padded[row, : seq.shape[0]] = seq
            mask[row, : seq.shape[0]] = items[row].get(f"{m}_valid", True)
        batch[m] = padded
        batch[f"{m}_mask"] = mask
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, to keep padding low; never an empty batch.

    Indices are sorted by length with a little random jitter, cut into batches, and the
    batches shuffled. Deterministic for a given ``seed`` and epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucketing: bool = True,
        weights: Sequence[float] | None = None,
        draws: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucketing = bucketing
        self.epoch = 0
        # weights: each epoch draws ``draws`` indices with
        # replacement, index i with probability ∝ weights[i]
        if weights is not None and len(weights) != len(self.lengths):
            raise ValueError(f"{len(weights)} weights for {len(self.lengths)} clips")
        self.weights = None if weights is None else list(weights)
        self.size = draws or len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def _epoch_order(self) -> tuple[list[int], random.Random]:
        """This epoch's index order (shuffled or drawn by weight, then sorted by jittered length)
        and its RNG."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        if self.weights is not None and self.shuffle:
            order = rng.choices(range(len(self.lengths)), weights=self.weights, k=self.size)
        else:
            order = list(range(len(self.lengths)))
        if self.shuffle and self.weights is None:
            rng.shuffle(order)
        if self.bucketing:
            # Jitter of +-10% keeps batches varied between epochs while lengths stay close.
            key = {
                i: self.lengths[i] * (1.0 + (rng.uniform(-0.1, 0.1) if self.shuffle else 0.0))
                for i in order
            }
            order.sort(key=key.__getitem__)
        return order, rng

    def __iter__(self) -> Iterator[list[int]]:
        order, rng = self._epoch_order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        yield from (b for b in batches if b)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded frames over all batches (0 = no padding)."""
    total = real = 0
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        total += longest * len(batch)
        real += sum(lengths[i] for i in batch)
    return 1.0 - real / total if total else 0.0


class ShardedBucketBatchSampler(BucketBatchSampler):
    """:class:`~emorec.data.BucketBatchSampler` that, under DDP, gives each rank a disjoint
    shard of the epoch's batches, the same number of batches on every rank.

    Single process: exactly the parent's batches. World size W > 1: the epoch's clip order
    (the same on every rank: same seed, same epoch) is sorted by jittered length and cut into
    ``W × m`` contiguous chunks of near-equal size (``m = ceil(N / (W × batch_size))``, so no
    chunk exceeds ``batch_size``; only when ``N < W × m`` is ``m`` lowered to ``N // W`` and a
    chunk may hold a clip more); the chunks are shuffled and dealt round-robin. Every clip is
    seen exactly once per epoch across all ranks, nothing is duplicated or dropped (unlike
    ``DistributedSampler``'s padding), and validation metrics stay exact. Rank and world size
    are read from ``torch.distributed`` when iterating, so the sampler can be built before
    Lightning starts the process group.
    """

    def __init__(
        self,
        lengths,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucketing: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        weights: Sequence[float] | None = None,
        draws: int | None = None,
    ):
        super().__init__(
            lengths,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            bucketing=bucketing,
            weights=weights,
            draws=draws,
        )
        self._rank, self._world = rank, world_size

    def _world_rank(self) -> tuple[int, int]:
        if self._world is not None:
            return self._world, self._rank or 0
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _per_rank(self, world: int) -> int:
        n = self.size
        if n < world:
            raise EmorecError(f"{n} clips cannot be shared by {world} processes: use fewer devices")
        return min(math.ceil(n / (world * self.batch_size)), n // world)

    def __len__(self) -> int:
        world, _ = self._world_rank()
        return super().__len__() if world == 1 else self._per_rank(world)

    def __iter__(self) -> Iterator[list[int]]:
        world, rank = self._world_rank()
        if world == 1:
            yield from super().__iter__()
            return
        order, rng = self._epoch_order()
        chunks = [
            list(map(int, c))
            for c in np.array_split(np.asarray(order), world * self._per_rank(world))
        ]
        if self.shuffle:
            rng.shuffle(chunks)
        yield from chunks[rank::world]


def make_loaders(
    train_set: ClipDataset,
    val_set: ClipDataset,
    *,
    batch_size: int,
    seed: int,
    bucketing: bool = True,
    num_workers: int = 0,
    weights: Sequence[float] | None = None,
    draws: int | None = None,
):
    """``(train_loader, val_loader)`` over :func:`pad_collate` batches, sharded under DDP.

    Each loader has its own generator: creating an iterator then draws nothing from the global
    RNG, whose state a checkpoint carries (so a resumed single-process run is bit-identical)."""
    from torch.utils.data import DataLoader

    first = train_set.modalities[0]
    train = DataLoader(
        train_set,
        collate_fn=pad_collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        batch_sampler=ShardedBucketBatchSampler(
            train_set.lengths(first),
            batch_size,
            shuffle=True,
            seed=seed,
            bucketing=bucketing,
            weights=weights,
            draws=draws,
        ),
    )
    val = DataLoader(
        val_set,
        collate_fn=pad_collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        batch_sampler=ShardedBucketBatchSampler(val_set.lengths(first), batch_size, shuffle=False),
    )
    return train, val
