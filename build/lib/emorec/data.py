"""Datasets over cached features, the pad+mask collate (the batch contract) and bucketing.

A batch is a dict: ``audio`` (B, T_a, F_a) float with ``audio_mask`` (B, T_a) bool,
``video`` (B, T_v, F_v) with ``video_mask`` (B, T_v), ``label`` (B,) long, ``index`` (B,)
long. ``True`` in a mask marks a real frame; padded frames are zeros.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from emorec.errors import EmorecError
from emorec.features.base import split_frame_mask
from emorec.features.packed import PackedStore
from emorec.features.store import FeatureStore
from emorec.manifest import Clip

MODALITIES = ("audio", "video")


class _Mapped(Sequence):
    """``function(arrays[i])`` computed when read: a view of a training set, not a copy of it."""

    def __init__(self, arrays: Sequence[np.ndarray], function: Callable[[np.ndarray], np.ndarray]):
        self.arrays, self.function = arrays, function

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.function(self.arrays[i])


@dataclass
class Normalizer:
    """Per-feature standardisation. ``fit`` on training clips only: nothing from test speakers.

    ``center="utterance"`` first removes each clip's own per-feature mean (over its real frames;
    log-mel/cepstral mean normalisation), then scales by the training clips' std of such
    mean-removed frames. Still inductive: a clip needs nothing but itself, and a recording's
    overall level (a constant dB offset on log-mel) no longer changes what the model sees.

    ``center="level"`` removes one number per clip, the mean over its real frames of the first
    ``level_columns`` features (the dB values of a log-mel, not its deltas), before the training
    standardisation: an overall gain no longer changes what the model sees, while the spectral
    shape and the loudness contour within the clip, which carry emotion, stay as they are.

    With ``per_speaker`` the statistics of each speaker's own clips are used instead (that is
    transductive: it reads the unlabelled clips of test speakers; reports flag it).
    """

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    per_speaker: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    center: str = "global"                   # "global" (training mean), "utterance" (the clip's own) or "level"
    level_columns: int = 0                   # center="level": the leading columns that are dB values

    CENTERS = ("global", "utterance", "level")

    @staticmethod
    def _stats(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (population) std over all frames of ``arrays`` ``[(T_i, F)]``, in one float64
        pass clip by clip (sums of values and of squares): no concatenated copy of the training
        set, and each clip is read once (from a pack, a read from disk)."""
        count, total, squares = 0, 0.0, 0.0
        for a in arrays:
            a = np.asarray(a, dtype=np.float64)
            count += a.shape[0]
            total = total + a.sum(axis=0)
            squares = squares + np.square(a).sum(axis=0)
        if count == 0:
            raise ValueError("no frames to compute statistics from")
        mean = total / count
        var = np.maximum(squares / count - np.square(mean), 0.0)
        return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-5).astype(np.float32)

    @staticmethod
    def _clip_mean(features: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``(T, F)`` -> ``(F,)`` mean over the real frames; zeros if there is none."""
        real = features if valid is None else features[valid]
        return real.mean(axis=0) if len(real) else np.zeros(features.shape[1], features.dtype)

    @staticmethod
    def _without_level(features: np.ndarray, columns: int, valid: np.ndarray | None = None) -> np.ndarray:
        """``features (T, F)`` with the mean of their real frames' first ``columns`` values taken from those columns."""
        real = features[:, :columns] if valid is None else features[valid, :columns]
        out = np.array(features, dtype=np.float32)
        if real.size:
            out[:, :columns] -= real.mean(dtype=np.float64)
        return out

    @classmethod
    def fit(cls, arrays: Sequence[np.ndarray], center: str = "global", level_columns: int = 0) -> "Normalizer":
        """``arrays``: each training clip's real frames ``(T_i, F)``."""
        if center not in cls.CENTERS:
            raise ValueError(f"center: expected one of {cls.CENTERS}, got {center!r}")
        if center == "utterance":
            arrays = _Mapped(arrays, lambda a: a - cls._clip_mean(a))
        if center == "level":
            if not 0 < level_columns <= (arrays[0].shape[1] if len(arrays) else 0):
                raise ValueError(f"center='level' needs 0 < level_columns <= features, got {level_columns}")
            arrays = _Mapped(arrays, lambda a: cls._without_level(a, level_columns))
        mean, std = cls._stats(arrays)
        if center == "utterance":
            mean = np.zeros_like(mean)
        return cls(mean=mean, std=std, center=center, level_columns=level_columns if center == "level" else 0)

    def fit_speakers(self, arrays_by_speaker: Mapping[str, Sequence[np.ndarray]]) -> None:
        self.per_speaker = {spk: self._stats(arrs) for spk, arrs in arrays_by_speaker.items()}

    def __call__(self, features: np.ndarray, speaker: str | None = None, valid: np.ndarray | None = None) -> np.ndarray:
        """``features (T, F)`` -> standardised ``(T, F)``; ``valid (T,)`` marks real frames (default all)."""
        mean, std = self.per_speaker.get(speaker, (self.mean, self.std)) if speaker else (self.mean, self.std)
        if self.center == "utterance":
            mean = self._clip_mean(features, valid)
        if self.center == "level":
            features = self._without_level(features, self.level_columns, valid)
        return ((features - mean) / std).astype(np.float32)

    def to_dict(self) -> dict:
        out = {"mean": self.mean.tolist(), "std": self.std.tolist(), "center": self.center}
        return out | ({"level_columns": self.level_columns} if self.center == "level" else {})

    @classmethod
    def from_dict(cls, data: Mapping) -> "Normalizer":
        return cls(mean=np.asarray(data["mean"], np.float32), std=np.asarray(data["std"], np.float32),
                   center=data.get("center", "global"),  # models exported before "center" existed are global
                   level_columns=int(data.get("level_columns", 0)))


def missing_modality_frames(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A modality a clip lacks: one zero frame ``(1, dim)`` marked invalid ``(1,)``, so the
    clip's mask row for it has no real frame (what models read as a missing modality)."""
    return np.zeros((1, int(dim)), np.float32), np.zeros(1, dtype=bool)


class ClipFrames(Sequence):
    """One modality's frames of each clip of a dataset: ``frames[i]`` is ``(T_i, F)`` and
    ``frames.valid(i)`` its real-frame mask ``(T_i,)`` (``None``: every frame is real).

    A clip from a :class:`~emorec.features.packed.PackedStore` is read from its pack on access,
    so a dataset over any number of clips holds only their lengths; a clip from a plain
    :class:`FeatureStore` (or a missing modality's placeholder) is held in memory, once however
    often the dataset lists it."""

    def __init__(self, store_name: str):
        self.store_name = store_name
        self._items: list = []   # (features, valid) held, or (PackedStore, Clip) read on access
        self.lengths: list[int] = []

    def append(self, item: tuple) -> None:
        """``item``: ``(features, valid)`` to hold, or ``(PackedStore, Clip)`` to read on access."""
        self._items.append(item)
        self.lengths.append(self._length(item))

    def replace(self, i: int, item: tuple) -> None:
        self._items[i] = item
        self.lengths[i] = self._length(item)

    @staticmethod
    def _length(item: tuple) -> int:
        first, second = item
        return first.shape[0] if isinstance(first, np.ndarray) else first.frames(second)

    def entry(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        first, second = self._items[i]
        if isinstance(first, np.ndarray):
            return first, second
        # a copy as float32 (a pack may be float16): the transforms may write into it
        return split_frame_mask(self.store_name, first.get(second).astype(np.float32))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.entry(i)[0]

    def valid(self, i: int) -> np.ndarray | None:
        return self.entry(i)[1]

    def real(self, i: int) -> np.ndarray:
        features, valid = self.entry(i)
        return features if valid is None else features[valid]


def _lookup(store, clip: Clip, held: dict) -> tuple | None:
    """How a dataset reaches ``clip``'s frames in ``store``: ``(pack, clip)`` to read on access,
    ``(features, valid)`` read now (once per clip, kept in ``held``), or ``None`` when absent."""
    if isinstance(store, PackedStore):
        return (store, clip) if clip in store else None
    key = (clip.clip_id, store.name)
    if key not in held:
        array = store.get(clip)
        held[key] = None if array is None else split_frame_mask(store.name, array)
    return held[key]


class _RealFrames(Sequence):
    """``frames.real(i)`` for the clips ``indices``: what normalisation statistics are read from,
    one clip at a time."""

    def __init__(self, frames: ClipFrames, indices: Sequence[int]):
        self.frames, self.indices = frames, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.frames.real(self.indices[i])


class ClipDataset(Dataset):
    """Cached features of ``clips`` for the modalities in ``stores``.

    Clips with no features in any store (skipped during extraction) are left out and listed in
    :attr:`missing`. With several modalities, a clip that lacks one of them (a video without an
    audio track, a video without a single face) stays in as a missing modality: one zero frame
    marked invalid, so its mask row has no real frame; it is listed in :attr:`missing_modality`
    as ``(clip_id, modality)``. ``dims`` gives a modality's feature size when no clip has it.
    ``features[m]`` is a :class:`ClipFrames`: clips of a packed store are read on access, so the
    dataset's memory does not grow with the corpus.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        label_index: Mapping[str, int],
        stores: Mapping[str, FeatureStore],
        normalizers: Mapping[str, Normalizer] | None = None,
        *,
        speaker_norm: bool = False,
        dims: Mapping[str, int] | None = None,
        transforms: Mapping[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] | None = None,
        seed: int = 0,
        corpus_classes: Mapping[str, np.ndarray] | None = None,
        corpus_index: Mapping[str, int] | None = None,
    ):
        self.label_index = dict(label_index)
        self.corpus_index = dict(corpus_index or {})  # corpus -> int: each item then carries it as "corpus"
        # corpus -> (C,) bool: the classes its clips can have; each item then carries its row as "classes".
        self.corpus_classes = dict(corpus_classes or {})
        self.modalities = [m for m in MODALITIES if m in stores]
        self.clips: list[Clip] = []
        self.features: dict[str, ClipFrames] = {m: ClipFrames(stores[m].name) for m in self.modalities}
        self.missing: list[Clip] = []
        self.missing_modality: list[tuple[str, str]] = []
        self._first_index: dict[str, int] = {}  # clip id -> its first position (a clip listed more than once)
        absent: list[tuple[int, str]] = []
        held: dict[tuple[str, str], tuple | None] = {}  # a repeated clip (data.corpus_repeats) is read once
        for clip in clips:
            found = {m: _lookup(stores[m], clip, held) for m in self.modalities}
            if all(item is None for item in found.values()):
                self.missing.append(clip)
                continue
            self._first_index.setdefault(clip.clip_id, len(self.clips))
            self.clips.append(clip)
            for m, item in found.items():
                if item is None:  # filled below, once a present clip has told the feature size
                    absent.append((len(self.clips) - 1, m))
                    self.missing_modality.append((clip.clip_id, m))
                self.features[m].append(item or missing_modality_frames(1))
        sizes = dict(dims or {})
        gaps = {(i, m) for i, m in absent}
        for m in {m for _, m in absent}:
            present = next((i for i in range(len(self.clips)) if (i, m) not in gaps), None)
            sizes[m] = self.features[m][present].shape[1] if present is not None else sizes.get(m)
            if sizes[m] is None:
                raise EmorecError(f"no clip has {m} features (extractor {stores[m].name}): nothing to learn {m} from")
        for i, m in absent:
            self.features[m].replace(i, missing_modality_frames(sizes[m]))
        self.normalizers = dict(normalizers or {})
        self.speaker_norm = speaker_norm
        # Random per-clip transforms of the raw features (training only: simulated recording conditions).
        self.transforms = dict(transforms or {})
        self.seed = seed
        self._rng: tuple[object, np.random.Generator] | None = None

    @property
    def valid(self) -> dict[str, list[np.ndarray | None]]:
        """Per-frame validity of each clip and modality (``None``: every frame is real)."""
        return {m: [frames.valid(i) for i in range(len(frames))] for m, frames in self.features.items()}

    def generator(self) -> np.random.Generator:
        """The transforms' random numbers: seeded by ``seed`` in the main process; in a loader worker
        by that worker's torch seed, which differs per worker and per epoch (no repeated draws)."""
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, torch.initial_seed())
        if self._rng is None or self._rng[0] != key:
            self._rng = (key, np.random.default_rng(self.seed if info is None else torch.initial_seed()))
        return self._rng[1]

    def __len__(self) -> int:
        return len(self.clips)

    def real_frames(self, modality: str, *, once: bool = False) -> Sequence[np.ndarray]:
        """Each clip's real frames only (what normalisation statistics are fitted on), read one
        clip at a time; ``once``: a clip the dataset lists more than once appears once."""
        indices = sorted(self._first_index.values()) if once else range(len(self.clips))
        return _RealFrames(self.features[modality], indices)

    def lengths(self, modality: str | None = None) -> list[int]:
        modality = modality or self.modalities[0]
        return list(self.features[modality].lengths)

    def labels(self) -> np.ndarray:
        return np.array([self.label_index[c.emotion] for c in self.clips], dtype=np.int64)

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        item: dict = {"label": self.label_index.get(clip.emotion, -1), "index": i}
        if self.corpus_classes:
            item["classes"] = torch.from_numpy(self.corpus_classes[clip.corpus])
        if self.corpus_index:
            item["corpus"] = self.corpus_index[clip.corpus]
        for m in self.modalities:
            features, valid = self.features[m].entry(i)
            if m in self.transforms:
                features = self.transforms[m](features, self.generator())
            if m in self.normalizers:
                features = self.normalizers[m](features, clip.speaker if self.speaker_norm else None, valid)
            if valid is not None:
                features = np.where(valid[:, None], features, 0.0)  # missing frames stay zeros
                item[f"{m}_valid"] = torch.from_numpy(valid)
            item[m] = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        return item


def corpus_class_masks(clips: Sequence[Clip], label_index: Mapping[str, int]) -> dict[str, np.ndarray]:
    """corpus -> ``(C,)`` bool: which classes of ``label_index`` occur among that corpus's ``clips``."""
    masks: dict[str, np.ndarray] = {}
    for clip in clips:
        row = masks.setdefault(clip.corpus, np.zeros(len(label_index), dtype=bool))
        if clip.emotion in label_index:
            row[label_index[clip.emotion]] = True
    return masks


def balanced_weights(clips: Sequence[Clip], power: float) -> np.ndarray:
    """(N,) draw weights summing to 1: each corpus gets a share ∝ its clip count ** ``power``, each of its
    speakers a share of that ∝ the speaker's clip count ** ``power``, split evenly over the speaker's clips.

    ``power`` 1 is the plain shuffle (every clip alike); 0 gives every corpus, and within it every speaker,
    the same share, so 400 clips of 38 talk-show speakers weigh as much as 7442 clips of 91 actors. Between
    lies the usual compromise of multilingual training (0.3-0.5): small corpora drawn more, not endlessly.
    """
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"balance power must lie in [0, 1], got {power}")
    per_corpus = Counter(c.corpus for c in clips)
    per_speaker = Counter((c.corpus, c.speaker) for c in clips)
    speakers_of: dict[str, list[int]] = {}
    for (corpus, _), n in per_speaker.items():
        speakers_of.setdefault(corpus, []).append(n)
    corpus_total = sum(n ** power for n in per_corpus.values())
    speaker_total = {corpus: sum(n ** power for n in counts) for corpus, counts in speakers_of.items()}
    weights = np.array([
        (per_corpus[c.corpus] ** power / corpus_total)
        * (per_speaker[(c.corpus, c.speaker)] ** power / speaker_total[c.corpus])
        / per_speaker[(c.corpus, c.speaker)]
        for c in clips
    ])
    return weights / weights.sum()


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

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, bucketing: bool = True, weights: Sequence[float] | None = None,
                 draws: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucketing = bucketing
        self.epoch = 0
        # weights: each epoch draws ``draws`` indices with replacement, index i with probability ∝ weights[i]
        if weights is not None and len(weights) != len(self.lengths):
            raise ValueError(f"{len(weights)} weights for {len(self.lengths)} clips")
        self.weights = None if weights is None else list(weights)
        self.size = draws or len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def _epoch_order(self) -> tuple[list[int], random.Random]:
        """This epoch's index order (shuffled or drawn by weight, then sorted by jittered length) and its RNG."""
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
            key = {i: self.lengths[i] * (1.0 + (rng.uniform(-0.1, 0.1) if self.shuffle else 0.0)) for i in order}
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

    def __init__(self, lengths, batch_size: int, *, shuffle: bool = True, seed: int = 0, bucketing: bool = True,
                 rank: int | None = None, world_size: int | None = None, weights: Sequence[float] | None = None,
                 draws: int | None = None):
        super().__init__(lengths, batch_size, shuffle=shuffle, seed=seed, bucketing=bucketing, weights=weights,
                         draws=draws)
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
        chunks = [list(map(int, c)) for c in np.array_split(np.asarray(order), world * self._per_rank(world))]
        if self.shuffle:
            rng.shuffle(chunks)
        yield from chunks[rank::world]


def make_loaders(train_set: ClipDataset, val_set: ClipDataset, *, batch_size: int, seed: int,
                 bucketing: bool = True, num_workers: int = 0, weights: Sequence[float] | None = None,
                 draws: int | None = None):
    """``(train_loader, val_loader)`` over :func:`pad_collate` batches, sharded under DDP.

    Each loader has its own generator: creating an iterator then draws nothing from the global
    RNG, whose state a checkpoint carries (so a resumed single-process run is bit-identical)."""
    from torch.utils.data import DataLoader

    first = train_set.modalities[0]
    train = DataLoader(train_set, collate_fn=pad_collate, num_workers=num_workers,
                       generator=torch.Generator().manual_seed(seed),
                       batch_sampler=ShardedBucketBatchSampler(train_set.lengths(first), batch_size, shuffle=True,
                                                               seed=seed, bucketing=bucketing, weights=weights,
                                                               draws=draws))
    val = DataLoader(val_set, collate_fn=pad_collate, num_workers=num_workers,
                     generator=torch.Generator().manual_seed(seed),
                     batch_sampler=ShardedBucketBatchSampler(val_set.lengths(first), batch_size, shuffle=False))
    return train, val
