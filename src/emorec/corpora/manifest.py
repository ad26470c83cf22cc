"""The manifest: one row per clip, the common currency of every later step.

A manifest is a CSV file whose columns are the fields of :class:`Clip`. ``prepare`` writes
it; ``split``, ``extract`` and ``train`` read it. Paths are stored absolute.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emorec.atomic import atomic_open
from emorec.errors import EmorecError


@dataclass
class Clip:
    clip_id: str  # unique within a manifest, e.g. "ravdess/03-01-05-01-01-01-12"
    path: str  # absolute path of the media file
    corpus: str  # "ravdess", "crema-d", "folder", "synthetic", ...
    speaker: str  # corpus-qualified speaker id, e.g. "ravdess/12"
    emotion: str  # canonical label (see emorec.corpora.labels.EMOTIONS) or a folder label
    gender: str = ""  # "male" / "female" / "" when unknown
    intensity: str = (
        ""  # corpus wording: "normal"/"strong" (RAVDESS), "LO"/"MD"/"HI"/"XX" (CREMA-D)
    )
    statement: str = ""  # sentence / statement code
    modality: str = "audio"  # "audio", "audio_video" or "video"
    vocal_channel: str = "speech"  # "speech" or "song"
    performance: str = ""  # same value for the same recorded performance shipped as several files
    acted_emotion: str = ""  # the acted label when ``emotion`` holds a perceived one
    duration: float = 0.0  # seconds
    sample_rate: int = 0  # Hz of the audio stream as stored
    channels: int = 0
    content_hash: str = (
        ""  # sha256 of the decoded audio samples (identical audio => identical hash)
    )
    age: int = 0  # the speaker's age in years when the corpus gives it (CREMA-D), else 0

    @property
    def group(self) -> str:
        """The unit that must never straddle a split: the recorded performance."""
        return self.performance or self.content_hash or self.clip_id


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Clip))
_TYPES = {f.name: f.type for f in dataclasses.fields(Clip)}


def write_manifest(clips: Iterable[Clip], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for clip in clips:
            writer.writerow(dataclasses.asdict(clip))
    return path


def read_manifest(path: str | os.PathLike) -> list[Clip]:
    path = Path(path)
    if not path.is_file():
        raise EmorecError(f"{path}: manifest not found (run `emorec prepare` first)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"clip_id", "path", "corpus", "speaker", "emotion"} - set(reader.fieldnames or ())
        if missing:
            raise EmorecError(f"{path}: not a manifest, missing columns {sorted(missing)}")
        clips = [_row_to_clip(row) for row in reader]
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        raise EmorecError(f"{path}: duplicate clip_id values")
    return clips


def merge_manifests(paths: Iterable[str | os.PathLike]) -> list[Clip]:
    """The clips of several manifests in one list (e.g. RAVDESS and CREMA-D for multi-corpus
    training); a clip id in two of them is an error naming both files."""
    clips: list[Clip] = []
    where: dict[str, Path] = {}
    for path in map(Path, paths):
        for clip in read_manifest(path):
            if clip.clip_id in where:
                raise EmorecError(f"{path}: clip {clip.clip_id} is also in {where[clip.clip_id]}")
            where[clip.clip_id] = path
            clips.append(clip)
    return clips


def _row_to_clip(row: dict[str, str]) -> Clip:
    values = {}
    for name in FIELDS:
        raw = row.get(name, "") or ""
        kind = _TYPES[name]
        if kind in ("float", float):
            values[name] = float(raw) if raw else 0.0
        elif kind in ("int", int):
            values[name] = int(float(raw)) if raw else 0
        else:
            values[name] = raw
    return Clip(**values)
