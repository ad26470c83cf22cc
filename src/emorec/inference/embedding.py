"""A trained model's penultimate embedding as a feature: the ``embed`` extractor that the fusion
workflow (:mod:`emorec.workflows.fusion`) caches for every clip. Its store is keyed by the model's
fingerprint, so retraining the model gives new entries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from emorec.corpora.manifest import Clip
from emorec.errors import BadInputError, ConfigError, EmorecError
from emorec.features.base import FeatureExtractor, register_extractor
from emorec.inference.model_files import ModelMeta

__all__ = ["EmbeddingExtractor", "model_fingerprint"]


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of a trained model's ``model.safetensors`` and ``model.json``."""
    from emorec.inference.predictor import MODEL_META, MODEL_WEIGHTS

    digest = hashlib.sha256()
    for name in (MODEL_WEIGHTS, MODEL_META):
        with open(Path(model_dir) / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@register_extractor
class EmbeddingExtractor(FeatureExtractor):
    """A trained model's penultimate embedding ``(1, D)`` per clip, as a feature.

    ``model_dir``: a trained fold directory. ``modality``: the batch key the embedding feeds
    (default: the one modality the model reads). ``cache``: the feature cache holding the model's
    own input features (they are recomputed from the media file when absent there). The cache
    entry is keyed by the model's fingerprint, so retraining the model gives new entries.
    """

    name = "embed"
    parallel = False  # one model in one process; a forward pass per clip is cheap

    def __init__(self, *, model_dir: str, modality: str | None = None, cache: str | None = None):
        from emorec.inference.predictor import find_model_dir

        try:
            found = find_model_dir(model_dir)
        except EmorecError as err:
            raise ConfigError(f"embed: {err}") from None
        self.model_dir = str(found)
        self.meta = ModelMeta.read(found)
        inputs = sorted(self.meta.get("features", {}))
        if modality is None:
            if len(inputs) != 1:
                raise ConfigError(
                    f"embed: {found} reads {inputs}; say which batch key the "
                    "embedding feeds (modality)"
                )
            modality = inputs[0]
        if modality not in ("audio", "video"):
            raise ConfigError(f"embed: modality must be 'audio' or 'video', not {modality!r}")
        if self.meta.get("speaker_norm"):
            raise ConfigError(
                f"embed: {found} was trained with per-speaker normalisation, "
                "which embed does not support"
            )
        self.modality = modality  # type: ignore[misc]  # instance value overrides the class one
        self.cache = str(cache) if cache else None
        self.fingerprint = model_fingerprint(found)
        self.name = f"embed-{self.meta['model']}"  # type: ignore[misc]  # the store is named after the model
        self._state: tuple[Any, dict, dict] | None = None

    def config(self) -> dict[str, Any]:
        """What defines the output: the source model (by fingerprint) and the batch key."""
        return {
            "model": self.meta["model"],
            "fingerprint": self.fingerprint,
            "modality": self.modality,
        }

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_state"] = None  # workers load the model themselves
        return state

    def _load(self) -> tuple[Any, dict, dict]:
        if self._state is None:
            from emorec.features.base import extractor_from_spec
            from emorec.inference.predictor import Predictor

            predictor = Predictor.load(self.model_dir)
            extractors = {
                m: extractor_from_spec(spec) for m, spec in predictor.meta.features.items()
            }
            self._state = (predictor, extractors, predictor.normalizers())
        return self._state

    def _input_features(self, clip: Clip | None, path: str | os.PathLike) -> dict[str, np.ndarray]:
        from emorec.features.extract import compute_features
        from emorec.features.store import FeatureStore, config_key

        _, extractors, _ = self._load()
        arrays = {}
        for modality, extractor in extractors.items():
            features = None
            if clip is not None and self.cache:
                root = Path(self.cache) / config_key(extractor.name, extractor.config())
                if root.is_dir():  # read the model's own cached input, never create a store
                    features = FeatureStore(self.cache, extractor.name, extractor.config()).get(
                        clip
                    )
            if features is None:
                features = (
                    compute_features(extractor, clip)
                    if clip is not None
                    else extractor.extract_file(path)
                )
            arrays[modality] = features
        return arrays

    def _embed(self, arrays: dict[str, np.ndarray], path: str | os.PathLike) -> np.ndarray:
        import torch

        from emorec.data import pad_collate

        predictor, _, normalizers = self._load()
        item: dict[str, Any] = {"label": -1, "index": 0}
        for modality, features in arrays.items():
            if modality in normalizers:
                features = normalizers[modality](features)
            item[modality] = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.no_grad():
            embedding = predictor.model.embed(pad_collate([item]))  # (1, D)
        embedding = embedding.float().numpy()
        if not np.all(np.isfinite(embedding)):
            raise BadInputError(path, f"{self.meta['model']} gave a non-finite embedding")
        return embedding

    def extract_clip(self, clip: Clip) -> np.ndarray:
        return self._embed(self._input_features(clip, clip.path), clip.path)

    def extract_file(self, path: str | os.PathLike) -> np.ndarray:
        return self._embed(self._input_features(None, path), path)

    def extract(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            "embed features come from a trained model's input features, see extract_file"
        )
