"""One interface for every feature extractor, and the registry that names them.

An extractor turns one media file into one array ``(T, F)``: T frames at the extractor's
frame rate, F features per frame. Everything that changes the output is in :meth:`config`,
so the cache key (content hash + name + config) changes exactly when the output would.
"""

from __future__ import annotations

import importlib
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emorec.errors import BadInputError, ConfigError
from emorec.media.audio import load_audio


class FeatureExtractor(ABC):
    name: ClassVar[str] = ""
    modality: ClassVar[str] = "audio"  # which batch key the features feed: "audio" or "video"
    sample_rate: int = 16000

    def config(self) -> dict[str, Any]:
        """The constructor arguments as given: JSON-able and complete (they define the output)."""
        params = inspect.signature(type(self).__init__).parameters
        return {key: getattr(self, key) for key in params if key != "self"}

    #: constructor arguments naming a file the extractor reads (weights):
    #: a model folder keeps a copy, named relative to the folder, so a
    #: trained model travels whole (:func:`resolve_bundled`).
    bundled: ClassVar[tuple[str, ...]] = ()

    def bundle(self, folder: Path) -> dict[str, str]:
        """Copy the files this extractor reads into ``folder``; returns the spec keys naming them
        there."""
        return {}

    @property
    def frames_per_second(self) -> float:
        return 0.0

    @property
    def planes(self) -> int:
        """How many equal-width planes the feature axis stacks (3 for values + delta +
        delta-delta)."""
        return 1

    def extract_file(self, path: str | os.PathLike) -> np.ndarray:
        """Features ``(T, F)`` float32 for one file; :class:`BadInputError` if it can't be done."""
        features = self.extract(load_audio(path, self.sample_rate))
        return validate_features(path, features)

    @abstractmethod
    def extract(self, wave: np.ndarray) -> np.ndarray:
        """``wave : ndarray[n]`` mono at ``self.sample_rate`` -> ``ndarray[T, F]``."""


def validate_features(path: str | os.PathLike, features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise BadInputError(path, f"extractor produced no frames (shape {features.shape})")
    if not np.all(np.isfinite(features)):
        raise BadInputError(path, "extractor produced NaN or infinite features")
    return np.ascontiguousarray(features)


_EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    _EXTRACTORS[cls.name] = cls
    return cls


def create_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    if extractor_class(name) is None:
        raise ConfigError(
            f"unknown feature extractor {name!r}; available: {', '.join(list_extractors())}"
        )
    try:
        return _EXTRACTORS[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"feature extractor {name!r}: {err}") from None


def extractor_from_spec(spec: dict[str, Any]) -> FeatureExtractor:
    """The extractor a config's feature section (``{"name": ..., **constructor arguments}``)
    names."""
    return create_extractor(spec["name"], **{k: v for k, v in spec.items() if k != "name"})


#: Built-in extractors: name -> the module that registers it, imported on first use, so that
#: optional heavy dependencies load only when their extractor is used and this module imports
#: nothing above it (``embed`` reads trained models: ``emorec.inference.embedding`` registers
#: it).
BUILTIN_EXTRACTORS = {
    "logmel": "emorec.features.spectral",
    "mfcc": "emorec.features.spectral",
    "egemaps": "emorec.features.egemaps",
    "ssl": "emorec.features.ssl",
    "voice_encoder": "emorec.features.voice_encoder",
    "npy": "emorec.features.precomputed",
    "face_landmarks": "emorec.features.face",
    "face_crop": "emorec.features.face",
    "embed": "emorec.inference.embedding",
}


def extractor_class(name: str) -> type[FeatureExtractor] | None:
    """The registered class called ``name``, or ``None``."""
    if name not in _EXTRACTORS and name in BUILTIN_EXTRACTORS:
        importlib.import_module(BUILTIN_EXTRACTORS[name])
    return _EXTRACTORS.get(name)  # type: ignore[return-value]


def has_frame_mask_column(name: str) -> bool:
    """Whether the extractor's last column marks real frames (1.0) and missing ones (0.0)."""
    return bool(getattr(extractor_class(name), "frame_mask_column", False))


def split_frame_mask(name: str, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(T, F)`` -> ``(features (T, F'), valid (T,) bool or None)`` for extractor ``name``."""
    if not has_frame_mask_column(name):
        return features, None
    return features[:, :-1], features[:, -1] > 0.5


def resolve_bundled(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``spec`` with the files its extractor keeps in a model folder named by their place in
    ``folder``."""
    cls = extractor_class(spec["name"])
    keys = [
        k
        for k in getattr(cls, "bundled", ())
        if isinstance(spec.get(k), str)
        and (folder / spec[k]).is_file()
        and not Path(spec[k]).is_absolute()
    ]
    return {**spec, **{k: str(folder / spec[k]) for k in keys}}


def list_extractors() -> list[str]:
    return sorted(set(_EXTRACTORS) | set(BUILTIN_EXTRACTORS))
