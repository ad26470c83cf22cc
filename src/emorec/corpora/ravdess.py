"""RAVDESS: clips named ``MM-VV-EE-II-SS-RR-AA`` in ``Actor_XX`` folders (Livingstone & Russo
2018)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emorec.corpora.base import (
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
from emorec.errors import ConfigError
from emorec.corpora.manifest import Clip
from emorec.media.audio import AUDIO_SUFFIXES

CORPUS = "ravdess"
EMOTION_CODES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITY_CODES = {"01": "normal", "02": "strong"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
MODALITIES = {"01": "audio_video", "02": "video", "03": "audio"}
#: ``include`` choices: which part of the release to prepare.
PARTS = ("speech", "song", "audio_video", "video")
BAD_NAME = "not a RAVDESS name (expected MM-VV-EE-II-SS-RR-AA)"
#: Why a run ended with no clip, keyed by skip reason (without its details), and what to do.
NO_CLIP_HINTS = {BAD_NAME.split(" (")[0]: "for files with other names use `emorec prepare folder`"}
NOT_SELECTED_HINT = (
    "ravdess reads only the parts in include, by default speech (audio-only 03-01 files): "
    "e.g. -O include=[speech,song,audio_video,video]"
)
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class RavdessName:
    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def part(self) -> str:
        """Which ``include`` choice the file belongs to."""
        if self.modality == "03":
            return "speech" if self.vocal_channel == "01" else "song"
        return MODALITIES[self.modality]

    @property
    def performance(self) -> str:
        """Shared by the audio-only, video-only and AV files of one recorded performance."""
        return f"{CORPUS}/" + "-".join(
            (
                self.vocal_channel,
                self.emotion,
                self.intensity,
                self.statement,
                self.repetition,
                self.actor,
            )
        )


def parse_name(stem: str) -> RavdessName | None:
    """The fields of a RAVDESS file stem, or ``None`` when it is not a valid RAVDESS name."""
    match = _NAME.match(stem)
    if not match:
        return None
    name = RavdessName(*match.groups())
    valid = (
        name.modality in MODALITIES
        and name.vocal_channel in VOCAL_CHANNELS
        and name.emotion in EMOTION_CODES
        and name.intensity in INTENSITY_CODES
        and name.statement in ("01", "02")
        and name.repetition in ("01", "02")
        and 1 <= int(name.actor) <= 24
    )
    return name if valid else None


def gender_of(actor: str) -> str:
    """Odd actors are male, even actors female."""
    return "male" if int(actor) % 2 else "female"


def clip_from_name(path: Path, name: RavdessName) -> Clip:
    return Clip(
        clip_id=f"{CORPUS}/{path.stem}",
        path=str(path),
        corpus=CORPUS,
        speaker=f"{CORPUS}/{name.actor}",
        emotion=EMOTION_CODES[name.emotion],
        gender=gender_of(name.actor),
        intensity=INTENSITY_CODES[name.intensity],
        statement=name.statement,
        modality=MODALITIES[name.modality],
        vocal_channel=VOCAL_CHANNELS[name.vocal_channel],
        performance=name.performance,
    )


def prepare(
    root: str | os.PathLike,
    *,
    include: Sequence[str] = ("speech",),
    progress: bool = True,
    workers: int | None = None,
) -> PrepareResult:
    """Prepare the RAVDESS files under ``root`` whose part (see :data:`PARTS`) is in ``include``."""
    include = (include,) if isinstance(include, str) else tuple(include)
    unknown = [part for part in include if part not in PARTS]
    if unknown or not include:
        raise ConfigError(f"ravdess include {list(include)!r}: choose among {', '.join(PARTS)}")
    base = require_root(root)
    candidates, skipped = [], []
    for path in scan_files(base, (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)):
        name = parse_name(path.stem)
        if name is None:
            skipped.append(skip(path, BAD_NAME))
            continue
        if name.part not in include:
            continue
        if is_audio(path) != (name.modality == "03"):
            kind = "an audio" if is_audio(path) else "a video"
            skipped.append(
                skip(
                    path,
                    f"RAVDESS modality {name.modality} "
                    f"({MODALITIES[name.modality]}) in {kind} file",
                )
            )
            continue
        candidates.append(Candidate(clip_from_name(path, name), probe_audio=is_audio(path)))
    return finish(
        candidates,
        skipped,
        progress=progress,
        workers=workers,
        description="RAVDESS",
        probe_fn=probe_media,
    )
