"""URDU (Latif et al. 2018): 400 unscripted utterances from Urdu talk shows, 38 speakers (27 male,
11 female), 4 emotions; files ``S{M,F}{speaker}_F{n}_{A,H,N,S}{index}``, e.g. ``SM1_F10_A012``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorec.corpora.base import PrepareResult, prepare_named
from emorec.corpora.manifest import Clip

CORPUS = "urdu"
EMOTION_CODES: dict[str, str] = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
BAD_NAME = "not an URDU name (expected S{M,F}N_FN_{A,H,N,S}N, e.g. SM1_F10_A012)"
NO_CLIP_HINTS = {BAD_NAME.split(" (")[0]: "for files with other names use `emorec prepare folder`"}
_NAME = re.compile(r"^S([MF])(\d+)_F(\d+)_([AHNS])(\d+)$", re.IGNORECASE)


def clip_of(path: Path) -> Clip | str:
    match = _NAME.match(path.stem)
    if not match:
        return BAD_NAME
    sex, speaker, _file, emotion, _index = (g.upper() for g in match.groups())
    stem = path.stem.upper()
    # Speaker numbers count within each sex: SM1 and SF1 are two people.
    return Clip(
        clip_id=f"{CORPUS}/{stem}",
        path=str(path),
        corpus=CORPUS,
        speaker=f"{CORPUS}/{sex}{int(speaker)}",
        emotion=EMOTION_CODES[emotion],
        gender="male" if sex == "M" else "female",
        vocal_channel="speech",
        performance=f"{CORPUS}/{stem}",
    )


def prepare(
    root: str | os.PathLike, *, progress: bool = True, workers: int | None = None
) -> PrepareResult:
    """Prepare the URDU audio files under ``root`` (any folder layout; labels come from the
    names)."""
    return prepare_named(root, clip_of, description="URDU", progress=progress, workers=workers)
