"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010): two actresses, aged 26
(YAF) and 64 (OAF), say "Say the word ___" for 200 target words in 7 emotions; files
``{OAF,YAF}_{word}_{emotion}``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorec.corpora.base import PrepareResult, prepare_named
from emorec.corpora.manifest import Clip

CORPUS = "tess"
EMOTION_CODES: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",  # ps: "pleasant surprise"
}
SPEAKER_AGES = {"OAF": 64, "YAF": 26}
#: Upstream names one file ``OA_bite_neutral``; it lies in ``OAF_neutral/`` with the others.
SPEAKER_TYPOS = {"OA": "OAF"}
BAD_NAME = "not a TESS name (expected {OAF,YAF}_WORD_EMOTION, e.g. OAF_back_angry)"
NO_CLIP_HINTS = {BAD_NAME.split(" (")[0]: "for files with other names use `emorec prepare folder`"}
_NAME = re.compile(r"^([A-Z]{2,3})_([a-z]+)_([a-z]+)$", re.IGNORECASE)


def clip_of(path: Path) -> Clip | str:
    match = _NAME.match(path.stem)
    if not match:
        return BAD_NAME
    speaker, word, emotion = match.groups()
    speaker = SPEAKER_TYPOS.get(speaker.upper(), speaker.upper())
    if speaker not in SPEAKER_AGES or emotion.lower() not in EMOTION_CODES:
        return BAD_NAME
    stem = f"{speaker}_{word.lower()}_{emotion.lower()}"
    return Clip(
        clip_id=f"{CORPUS}/{stem}",
        path=str(path),
        corpus=CORPUS,
        speaker=f"{CORPUS}/{speaker}",
        emotion=EMOTION_CODES[emotion.lower()],
        gender="female",
        age=SPEAKER_AGES[speaker],
        statement=word.lower(),
        performance=f"{CORPUS}/{stem}",
    )


def prepare(
    root: str | os.PathLike, *, progress: bool = True, workers: int | None = None
) -> PrepareResult:
    """Prepare the TESS audio files under ``root`` (any folder layout; labels come from the
    names)."""
    return prepare_named(root, clip_of, description="TESS", progress=progress, workers=workers)
