"""Datasets over cached features: each clip's frames from a pack (read when a batch needs them) or
held in memory, with normalisation, simulated conditions and per-corpus class masks applied per
item."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from emorec.data.normalizer import MappedSequence, Normalizer
from emorec.errors import EmorecError
from emorec.features.base import split_frame_mask
from emorec.features.packed import PackedStore
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip

MODALITIES = ("audio", "video")


def missing_modality_frames(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A modality a clip lacks: one zero frame ``(1, dim)`` marked invalid ``(1,)``, so the
    clip's mask row for it has no real frame (what models read as a missing modality)."""
    return np.zeros((1, int(dim)), np.float32), np.zeros(1, dtype=bool)


class ClipFrames(Sequence):
    """One modality's frames of each clip of a dataset: ``frames[i]`` is ``(T_i, F)``, and
    ``frames.entry(i)`` is ``(features, valid)`` with the real-frame mask ``(T_i,)`` (``None``:
    every frame is real).

    A clip from a :class:`~emorec.features.packed.PackedStore` is read from its pack on access,
    so a dataset over any number of clips holds only their lengths; a clip from a plain
    :class:`FeatureStore` (or a missing modality's placeholder) is held in memory, once however
    often the dataset lists it."""

    def __init__(self, store_name: str):
        self.store_name = store_name
        self._items: list = []  # (features, valid) held, or (PackedStore, Clip) read on access
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
        transforms: Mapping[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]
        | None = None,
        seed: int = 0,
        corpus_classes: Mapping[str, np.ndarray] | None = None,
        corpus_index: Mapping[str, int] | None = None,
        views: Mapping[str, Sequence[FeatureStore]] | None = None,
    ):
        self.label_index = dict(label_index)
        # corpus -> int: each item then carries it as "corpus"
        self.corpus_index = dict(corpus_index or {})
        # corpus -> (C,) bool: the classes its clips can
        # have; each item then carries its row as "classes".
        self.corpus_classes = dict(corpus_classes or {})
        self.modalities = [m for m in MODALITIES if m in stores]
        self.clips: list[Clip] = []
        self.features: dict[str, ClipFrames] = {
            m: ClipFrames(stores[m].name) for m in self.modalities
        }
        self.missing: list[Clip] = []
        self.missing_modality: list[tuple[str, str]] = []
        self._first_index: dict[
            str, int
        ] = {}  # clip id -> its first position (a clip listed more than once)
        absent: list[tuple[int, str]] = []
        held: dict[
            tuple[str, str], tuple | None
        ] = {}  # a repeated clip (data.corpus_repeats) is read once
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
                raise EmorecError(
                    f"no clip has {m} features (extractor {stores[m].name}): "
                    f"nothing to learn {m} from"
                )
        for i, m in absent:
            self.features[m].replace(i, missing_modality_frames(sizes[m]))
        self.normalizers = dict(normalizers or {})
        self.speaker_norm = speaker_norm
        # Random per-clip transforms of the raw features
        # (training only: simulated recording conditions).
        self.transforms = dict(transforms or {})
        self.seed = seed
        # Other caches of the same clips (speed views): a
        # draw reads the original or one of them, alike.
        self.views = {m: list(v) for m, v in (views or {}).items() if v and m in self.modalities}
        self._rng: tuple[object, np.random.Generator] | None = None

    def generator(self) -> np.random.Generator:
        """The transforms' random numbers: seeded by ``seed`` in the main process; in a loader
        worker by that worker's torch seed, which differs per worker and per epoch (no repeated
        draws)."""
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, torch.initial_seed())
        if self._rng is None or self._rng[0] != key:
            self._rng = (
                key,
                np.random.default_rng(self.seed if info is None else torch.initial_seed()),
            )
        return self._rng[1]

    def __len__(self) -> int:
        return len(self.clips)

    def _view(
        self, modality: str, clip: Clip, features: np.ndarray, valid: np.ndarray | None
    ) -> tuple:
        """``(features, valid)`` of a view drawn uniformly with the original; the original when that
        view has no entry for the clip."""
        pick = int(self.generator().integers(len(self.views[modality]) + 1))
        if pick == 0:
            return features, valid
        store = self.views[modality][pick - 1]
        other = store.get(clip)
        return (features, valid) if other is None else split_frame_mask(store.name, other)

    def real_frames(self, modality: str, *, once: bool = False) -> Sequence[np.ndarray]:
        """Each clip's real frames only (what normalisation statistics are fitted on), read one
        clip at a time; ``once``: a clip the dataset lists more than once appears once."""
        indices = sorted(self._first_index.values()) if once else range(len(self.clips))
        return MappedSequence(list(indices), self.features[modality].real)

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
            if m in self.views:
                features, valid = self._view(m, clip, features, valid)
            if m in self.transforms:
                features = self.transforms[m](features, self.generator())
            if m in self.normalizers:
                features = self.normalizers[m](
                    features, clip.speaker if self.speaker_norm else None, valid
                )
            if valid is not None:
                features = np.where(valid[:, None], features, 0.0)  # missing frames stay zeros
                item[f"{m}_valid"] = torch.from_numpy(valid)
            item[m] = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        return item


def corpus_class_masks(
    clips: Sequence[Clip], label_index: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """corpus -> ``(C,)`` bool: which classes of ``label_index`` occur among that corpus's
    ``clips``."""
    masks: dict[str, np.ndarray] = {}
    for clip in clips:
        row = masks.setdefault(clip.corpus, np.zeros(len(label_index), dtype=bool))
        if clip.emotion in label_index:
            row[label_index[clip.emotion]] = True
    return masks


def balanced_weights(clips: Sequence[Clip], power: float) -> np.ndarray:
    """(N,) draw weights summing to 1: each corpus gets a share ∝ its clip count ** ``power``, each
    of its speakers a share of that ∝ the speaker's clip count ** ``power``, split evenly over the
    speaker's clips.

    ``power`` 1 is the plain shuffle (every clip alike); 0 gives every corpus, and within it every
    speaker, the same share, so 400 clips of 38 talk-show speakers weigh as much as 7442 clips of 91
    actors. Between lies the usual compromise of multilingual training (0.3-0.5): small corpora
    drawn more, not endlessly.
    """
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"balance power must lie in [0, 1], got {power}")
    per_corpus = Counter(c.corpus for c in clips)
    per_speaker = Counter((c.corpus, c.speaker) for c in clips)
    speakers_of: dict[str, list[int]] = {}
    for (corpus, _), n in per_speaker.items():
        speakers_of.setdefault(corpus, []).append(n)
    corpus_total = sum(n**power for n in per_corpus.values())
    speaker_total = {
        corpus: sum(n**power for n in counts) for corpus, counts in speakers_of.items()
    }
    weights = np.array(
        [
            (per_corpus[c.corpus] ** power / corpus_total)
            * (per_speaker[(c.corpus, c.speaker)] ** power / speaker_total[c.corpus])
            / per_speaker[(c.corpus, c.speaker)]
            for c in clips
        ]
    )
    return weights / weights.sum()
