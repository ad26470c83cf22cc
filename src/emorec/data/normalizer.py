"""Per-feature standardisation fitted on training clips only (global, per utterance, per level, or
per speaker: the last is transductive and flagged)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


class MappedSequence(Sequence):
    """``function(items[i])`` computed when read: a view of a training set's frames, not a copy of
    them."""

    def __init__(self, items: Sequence, function: Callable[..., np.ndarray]):
        self.items, self.function = items, function

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.function(self.items[i])


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
    center: str = "global"  # "global" (training mean), "utterance" (the clip's own) or "level"
    level_columns: int = 0  # center="level": the leading columns that are dB values

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
    def _without_level(
        features: np.ndarray, columns: int, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """``features (T, F)`` with the mean of their real frames' first ``columns`` values taken
        from those columns."""
        real = features[:, :columns] if valid is None else features[valid, :columns]
        out = np.array(features, dtype=np.float32)
        if real.size:
            out[:, :columns] -= real.mean(dtype=np.float64)
        return out

    @classmethod
    def fit(
        cls, arrays: Sequence[np.ndarray], center: str = "global", level_columns: int = 0
    ) -> "Normalizer":
        """``arrays``: each training clip's real frames ``(T_i, F)``."""
        if center not in cls.CENTERS:
            raise ValueError(f"center: expected one of {cls.CENTERS}, got {center!r}")
        if center == "utterance":
            arrays = MappedSequence(arrays, lambda a: a - cls._clip_mean(a))
        if center == "level":
            if not 0 < level_columns <= (arrays[0].shape[1] if len(arrays) else 0):
                raise ValueError(
                    f"center='level' needs 0 < level_columns <= features, got {level_columns}"
                )
            arrays = MappedSequence(arrays, lambda a: cls._without_level(a, level_columns))
        mean, std = cls._stats(arrays)
        if center == "utterance":
            mean = np.zeros_like(mean)
        return cls(
            mean=mean,
            std=std,
            center=center,
            level_columns=level_columns if center == "level" else 0,
        )

    def fit_speakers(self, arrays_by_speaker: Mapping[str, Sequence[np.ndarray]]) -> None:
        self.per_speaker = {spk: self._stats(arrs) for spk, arrs in arrays_by_speaker.items()}

    def __call__(
        self, features: np.ndarray, speaker: str | None = None, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """``features (T, F)`` -> standardised ``(T, F)``; ``valid (T,)`` marks real frames (default
        all)."""
        mean, std = (
            self.per_speaker.get(speaker, (self.mean, self.std))
            if speaker
            else (self.mean, self.std)
        )
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
        return cls(
            mean=np.asarray(data["mean"], np.float32),
            std=np.asarray(data["std"], np.float32),
            # models exported before "center" existed are global
            center=data.get("center", "global"),
            level_columns=int(data.get("level_columns", 0)),
        )
