"""Import features someone else computed: one ``.npy`` array per clip.

Files are matched to clips by name, searched recursively under ``directory``:
``<clip_id with "/" replaced by "__">.npy`` first (when the runner passes the clip), then
``<media file stem>.npy``. The same importer serves video features (``modality="video"``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import numpy as np

from emorec.errors import BadInputError, ConfigError
from emorec.features.base import FeatureExtractor, register_extractor, validate_features
from emorec.corpora.manifest import Clip


@register_extractor
class NpyFeatures(FeatureExtractor):
    """Pre-extracted arrays: ``(T, F)`` float as stored; a 1-D ``(F,)`` array becomes ``(1, F)``.

    Anything else (3-D, integer, object, NaN/inf, empty, unreadable, missing, or a stem that
    matches two files) is a :class:`BadInputError` naming the file. :meth:`config` adds
    ``files_fingerprint`` (names, sizes, mtimes of the ``.npy`` files) so the cache follows
    the directory's contents.
    """

    name = "npy"

    def __init__(
        self, *, directory: str, modality: str = "audio", files_fingerprint: str | None = None
    ):
        if modality not in ("audio", "video"):
            raise ConfigError(f"npy: modality must be 'audio' or 'video', not {modality!r}")
        self.directory = str(directory)
        self.modality = modality  # type: ignore[misc]  # instance value overrides the class one
        if not Path(self.directory).is_dir():
            raise ConfigError(f"npy: feature directory {self.directory} not found")
        self._index: dict[str, list[Path]] | None = None
        self._fingerprint = files_fingerprint

    @property
    def files_fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256()
            root = Path(self.directory)
            for paths in sorted(self.index.values()):
                for path in paths:
                    stat = path.stat()
                    digest.update(
                        f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0"
                        f"{stat.st_mtime_ns}\n".encode()
                    )
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def index(self) -> dict[str, list[Path]]:
        """File stem -> every ``.npy`` with that stem under ``directory``."""
        if self._index is None:
            index: dict[str, list[Path]] = {}
            for path in sorted(Path(self.directory).rglob("*.npy")):
                if not path.name.startswith("."):
                    index.setdefault(path.stem, []).append(path)
            self._index = index
        return self._index

    def find(self, media_path: str | os.PathLike, clip_id: str = "") -> Path:
        candidates = ([clip_id.replace("/", "__")] if clip_id else []) + [Path(media_path).stem]
        for stem in candidates:
            found = self.index.get(stem, [])
            if len(found) > 1:
                raise BadInputError(
                    media_path,
                    f"{len(found)} files named {stem}.npy under "
                    f"{self.directory}; rename to <clip_id>.npy",
                )
            if found:
                return found[0]
        raise BadInputError(
            media_path, f"no {' or '.join(c + '.npy' for c in candidates)} under {self.directory}"
        )

    def extract_clip(self, clip: Clip) -> np.ndarray:
        """Features for a manifest clip, trying its ``clip_id`` name before its file stem."""
        return load_array(self.find(clip.path, clip.clip_id))

    def extract_file(self, path: str | os.PathLike) -> np.ndarray:
        return load_array(self.find(path))

    def extract(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError("npy features are read from files, not computed from audio")


def load_array(path: Path) -> np.ndarray:
    """A stored array as ``(T, F)`` float32, or :class:`BadInputError`."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        detail = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
        raise BadInputError(path, f"unreadable .npy ({type(err).__name__}: {detail})") from None
    if not isinstance(array, np.ndarray):
        raise BadInputError(path, "not a single array (.npz archives are not supported)")
    if not np.issubdtype(array.dtype, np.floating):
        raise BadInputError(path, f"features must be float, not {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise BadInputError(path, f"features must be 1-D or 2-D, not shape {array.shape}")
    if array.shape[1] == 0:
        raise BadInputError(path, f"features have no columns (shape {array.shape})")
    return validate_features(path, array)
