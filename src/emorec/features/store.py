"""The on-disk feature cache.

Layout::

    CACHE/<extractor>-<config hash>/extractor.json      # name + config, for humans and checks
    CACHE/<extractor>-<config hash>/<h[:2]>/<h>.npy     # h = the clip's content hash

The key is clip content + extractor name + extractor config, so renaming or moving a file
keeps its cache entry, and changing any extractor setting makes a new one. Each entry is
written to a temporary file and renamed into place: a kill at any moment leaves either the
whole entry or none of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from emorec.atomic import write_json
from emorec.corpora.manifest import Clip


def config_key(name: str, config: dict[str, Any]) -> str:
    blob = json.dumps({"name": name, "config": config}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


class FeatureStore:
    """Cached features of one extractor configuration."""

    def __init__(self, cache_root: str | os.PathLike, name: str, config: dict[str, Any]):
        self.name = name
        self.config = config
        self.root = Path(cache_root) / config_key(name, config)
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / "extractor.json"
        if not meta.exists():
            write_json(meta, {"name": name, "config": config})

    @classmethod
    def for_extractor(cls, cache_root: str | os.PathLike, extractor: Any) -> "FeatureStore":
        return cls(cache_root, extractor.name, extractor.config())

    def key(self, clip: Clip) -> str:
        return clip.content_hash or hashlib.sha256(clip.path.encode()).hexdigest()

    def path(self, clip: Clip) -> Path:
        return self.entry_path(self.key(clip))

    def entry_path(self, key: str) -> Path:
        """Where the entry of content key ``key`` lies (see the layout above)."""
        return self.root / key[:2] / f"{key}.npy"

    def __contains__(self, clip: Clip) -> bool:
        return self.path(clip).is_file()

    def get(self, clip: Clip) -> np.ndarray | None:
        """Features ``(T, F)`` or ``None`` when absent (or unreadable, which is then removed)."""
        path = self.path(clip)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None

    def load(self, clip: Clip) -> np.ndarray:
        features = self.get(clip)
        if features is None:
            raise KeyError(f"{clip.clip_id}: no cached {self.name} features (run `emorec extract`)")
        return features

    def put(self, clip: Clip, features: np.ndarray) -> Path:
        path = self.path(clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            # No fsync per entry (it was a fifth of an extraction's time): the
            # rename is atomic, so a kill or a crash of the process never leaves a
            # partial entry, and an entry that cannot be read (a power cut before
            # the data reached the disk) is treated as absent and recomputed.
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path
