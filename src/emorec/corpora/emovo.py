"""EMOVO (Costantini et al. 2014): Italian, 6 actors (f1-f3, m1-m3), 14 sentences in 7 emotions;
files ``{emotion}-{actor}-{sentence}``, e.g. ``rab-m2-b1`` (rabbia: angry)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorec.corpora.base import PrepareResult, prepare_named
from emorec.corpora.manifest import Clip

CORPUS = "emovo"
EMOTION_CODES: dict[str, str] = {
    "dis": "disgust",
    "gio": "happy",
    "neu": "neutral",
    "pau": "fearful",  # disgusto, gioia, neutro, paura
    "rab": "angry",
    "sor": "surprised",
    "tri": "sad",  # rabbia, sorpresa, tristezza
}
BAD_NAME = "not an EMOVO name (expected EMOTION-ACTOR-SENTENCE, e.g. rab-m2-b1)"
NO_CLIP_HINTS = {BAD_NAME.split(" (")[0]: "for files with other names use `emorec prepare folder`"}
_NAME = re.compile(r"^([a-z]{3})-([fm])(\d)-([a-z]\d)$", re.IGNORECASE)


def clip_of(path: Path) -> Clip | str:
    match = _NAME.match(path.stem)
    if not match or match.group(1).lower() not in EMOTION_CODES:
        return BAD_NAME
    emotion, sex, number, sentence = (g.lower() for g in match.groups())
    stem = f"{emotion}-{sex}{number}-{sentence}"
    return Clip(
        clip_id=f"{CORPUS}/{stem}",
        path=str(path),
        corpus=CORPUS,
        speaker=f"{CORPUS}/{sex}{number}",
        emotion=EMOTION_CODES[emotion],
        gender="female" if sex == "f" else "male",
        statement=sentence,
        performance=f"{CORPUS}/{stem}",
    )


def prepare(
    root: str | os.PathLike, *, progress: bool = True, workers: int | None = None
) -> PrepareResult:
    """Prepare the EMOVO audio files under ``root`` (any folder layout; labels come from the
    names)."""
    return prepare_named(root, clip_of, description="EMOVO", progress=progress, workers=workers)
