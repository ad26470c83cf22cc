"""A user's own folder: labels from sub-folder names (``root/<label>/**/file``) or from a CSV.

Audio files and videos (the suffixes :mod:`emorec.media.video` decodes; ``modality``
audio_video)."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from emorec.corpora.base import (
    UNKNOWN_SPEAKER,
    VIDEO_SUFFIXES,
    Candidate,
    PrepareResult,
    finish,
    is_audio,
    probe_media,
    require_root,
    scan_files,
    skip,
)
from emorec.errors import ConfigError, EmorecError, SkippedFile
from emorec.corpora.manifest import Clip
from emorec.media.audio import AUDIO_SUFFIXES

#: Obvious spellings of the canonical labels (after lower-casing); others are kept as given.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "ang": "angry",
    "mad": "angry",
    "happiness": "happy",
    "happy": "happy",
    "hap": "happy",
    "joy": "happy",
    "sadness": "sad",
    "sad": "sad",
    "fear": "fearful",
    "fearful": "fearful",
    "fea": "fearful",
    "afraid": "fearful",
    "scared": "fearful",
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    "surprise": "surprised",
    "surprised": "surprised",
    "sur": "surprised",
    "neutral": "neutral",
    "neu": "neutral",
    "calm": "calm",
    "calmness": "calm",
}


NO_LABEL = "no emotion label"
NO_CLIP_HINTS = {
    NO_LABEL: "give labels by sub-folder, PATH/<label>/file, or -O labels_csv=FILE "
    "with columns path, emotion",
}


def canonical_emotion(label: str) -> str:
    """Lower-cased ``label``, mapped onto :data:`emorec.corpora.labels.EMOTIONS` where obvious."""
    key = label.strip().lower()
    return SYNONYMS.get(key, key)


def compile_speaker_pattern(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"speaker_pattern {pattern!r} is not a valid regex ({err})") from None
    if "speaker" not in compiled.groupindex:
        raise ConfigError(f"speaker_pattern {pattern!r} needs a named group (?P<speaker>...)")
    return compiled


def prepare(
    root: str | os.PathLike,
    *,
    labels_csv: str | os.PathLike | None = None,
    speaker_pattern: str | None = None,
    name: str = "folder",
    progress: bool = True,
    workers: int | None = None,
) -> PrepareResult:
    """Prepare the audio and video files under ``root``.

    Speaker: the CSV's ``speaker`` column, else ``speaker_pattern`` (a regex with a named group
    ``speaker``, searched in the path relative to ``root``), else the file's parent folder when
    that is not the label folder, else ``"<name>/unknown"`` (such clips cannot be split
    speaker-independently).
    """
    base = require_root(root)
    pattern = compile_speaker_pattern(speaker_pattern)
    rows = _rows_from_csv(base, labels_csv) if labels_csv is not None else _rows_from_folders(base)
    candidates: list[Candidate] = []
    skipped: list[SkippedFile] = []
    for path, emotion, speaker, gender in rows:
        rel = _relative(path, base)
        if not emotion:
            skipped.append(skip(path, NO_LABEL))
            continue
        if not speaker and pattern is not None:
            match = pattern.search(rel.as_posix())
            if not match or not match.group("speaker"):
                skipped.append(
                    skip(
                        path, f"speaker_pattern {pattern.pattern!r} does not match {rel.as_posix()}"
                    )
                )
                continue
            speaker = match.group("speaker")
        if not speaker and labels_csv is None and len(rel.parts) > 2:
            speaker = rel.parent.name
        clip = Clip(
            clip_id=f"{name}/{rel.with_suffix('').as_posix()}",
            path=str(path),
            corpus=name,
            speaker=f"{name}/{speaker or UNKNOWN_SPEAKER}",
            emotion=canonical_emotion(emotion),
            gender=gender,
            modality="audio" if is_audio(path) else "audio_video",
        )
        candidates.append(Candidate(clip, probe_audio=is_audio(path)))
    return finish(
        candidates,
        skipped,
        progress=progress,
        workers=workers,
        description=name,
        probe_fn=probe_media,
    )


def _relative(path: Path, base: Path) -> Path:
    try:
        return path.relative_to(base)
    except ValueError:  # an absolute CSV path outside root
        return Path(*path.parts[1:]) if path.is_absolute() else path


def _rows_from_folders(base: Path) -> list[tuple[Path, str, str, str]]:
    rows = []
    for path in scan_files(base, (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)):
        rel = path.relative_to(base)
        label = rel.parts[0] if len(rel.parts) > 1 else ""
        rows.append((path, label, "", ""))
    return rows


def _rows_from_csv(base: Path, labels_csv: str | os.PathLike) -> list[tuple[Path, str, str, str]]:
    csv_path = Path(labels_csv)
    if not csv_path.is_absolute() and not csv_path.is_file():
        csv_path = base / csv_path
    if not csv_path.is_file():
        raise EmorecError(f"{labels_csv}: labels CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in reader.fieldnames or ()}
        label_col = columns.get("emotion") or columns.get("label")
        if "path" not in columns or label_col is None:
            raise EmorecError(
                f"{csv_path}: labels CSV needs columns path and emotion (found {sorted(columns)})"
            )
        rows = []
        for row in reader:
            raw = (row.get(columns["path"]) or "").strip()
            if not raw:
                continue
            path = Path(raw).expanduser()
            path = path if path.is_absolute() else base / path
            rows.append(
                (
                    Path(os.path.abspath(path)),
                    (row.get(label_col) or "").strip(),
                    (row.get(columns.get("speaker", ""), "") or "").strip(),
                    (row.get(columns.get("gender", ""), "") or "").strip().lower(),
                )
            )
    return rows
