"""CREMA-D: clips named ``AAAA_SSS_EEE_LL``; gender and crowd-perceived labels from its metadata
CSVs."""

from __future__ import annotations

import csv
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
from emorec.errors import ConfigError, EmorecError
from emorec.corpora.manifest import Clip
from emorec.media.audio import AUDIO_SUFFIXES

CORPUS = "crema-d"
EMOTION_CODES: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
#: Letters of the crowd votes in ``processedResults/summaryTable.csv``.
VOTE_LETTERS: dict[str, str] = {
    "A": "angry",
    "D": "disgust",
    "F": "fearful",
    "H": "happy",
    "N": "neutral",
    "S": "sad",
}
LEVELS = ("LO", "MD", "HI", "XX")
LABEL_SOURCES: dict[str, str | None] = {
    "acted": None,
    "voice": "VoiceVote",
    "face": "FaceVote",
    "multimodal": "MultiModalVote",
}
#: ``include`` choices: ``audio`` files and/or the ``audio_video`` (.flv/.mp4) files.
PARTS = ("audio", "audio_video")
DEMOGRAPHICS = "VideoDemographics.csv"
SUMMARY_TABLE = "summaryTable.csv"
BAD_NAME = "not a CREMA-D name (expected AAAA_SSS_EEE_LL, e.g. 1001_DFA_ANG_XX)"
NO_CLIP_HINTS = {BAD_NAME.split(" (")[0]: "for files with other names use `emorec prepare folder`"}
NOT_SELECTED_HINT = (
    "crema-d reads audio files by default; for the VideoFlash .flv files give "
    "-O include=[audio_video]"
)
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
#: Upstream misnamed one file ``1040_ITH_SAD_X``; its metadata rows say ``1040_ITH_SAD_XX``.
LEVEL_TYPOS = {"X": "XX"}


@dataclass(frozen=True)
class CremaName:
    actor: str
    sentence: str
    emotion: str
    level: str

    @property
    def stem(self) -> str:
        """The canonical file stem, as the metadata CSVs spell it."""
        return f"{self.actor}_{self.sentence}_{self.emotion}_{self.level}"


def parse_name(stem: str) -> CremaName | None:
    """The fields of a CREMA-D file stem, or ``None`` when it is not a valid CREMA-D name."""
    match = _NAME.match(stem)
    if not match:
        return None
    actor, sentence, emotion, level = match.groups()
    name = CremaName(actor, sentence, emotion, LEVEL_TYPOS.get(level, level))
    return name if name.emotion in EMOTION_CODES and name.level in LEVELS else None


def find_metadata(filename: str, root: Path, metadata_dir: str | os.PathLike | None) -> Path | None:
    """``filename`` in ``metadata_dir``, ``root``, ``root/..`` or a sibling folder of ``root`` named
    like CREMA-D's metadata (``crema-d-metadata/`` beside ``crema-d-audio/``), also under
    ``processedResults/``."""
    folders = [Path(metadata_dir)] if metadata_dir else []
    folders += [root, root.parent]
    try:
        folders += sorted(
            p
            for p in root.parent.iterdir()
            if p.is_dir() and p != root and ("meta" in p.name.lower() or "crema" in p.name.lower())
        )
    except OSError:
        pass
    for folder in folders:
        for candidate in (folder / filename, folder / "processedResults" / filename):
            if candidate.is_file():
                return candidate
    return None


def read_demographics(path: str | os.PathLike) -> dict[str, str]:
    """``{actor id: "male"/"female"}`` from ``VideoDemographics.csv``."""
    rows = _read_csv(path, ("ActorID", "Sex"))
    return {row["ActorID"].strip(): row["Sex"].strip().lower() for row in rows}


def read_ages(path: str | os.PathLike) -> dict[str, int]:
    """``{actor id: age in years}`` from ``VideoDemographics.csv`` (actors without a usable age left
    out)."""
    rows = _read_csv(path, ("ActorID",))
    return {
        row["ActorID"].strip(): int(row["Age"])
        for row in rows
        if str(row.get("Age") or "").strip().isdigit()
    }


def read_votes(path: str | os.PathLike, column: str) -> dict[str, str]:
    """``{file stem: vote}`` from ``summaryTable.csv``; a vote is a letter or a tie like ``A:D``."""
    rows = _read_csv(path, ("FileName", column))
    return {row["FileName"].strip(): row[column].strip() for row in rows}


def perceived_emotion(vote: str) -> str | None:
    """The canonical label of a single-letter vote; ``None`` for ties and other values."""
    return VOTE_LETTERS.get(vote)


def prepare(
    root: str | os.PathLike,
    *,
    label_source: str = "acted",
    demographics: str | os.PathLike | None = None,
    metadata_dir: str | os.PathLike | None = None,
    summary_table: str | os.PathLike | None = None,
    include: Sequence[str] = ("audio",),
    progress: bool = True,
    workers: int | None = None,
) -> PrepareResult:
    """Prepare the CREMA-D files under ``root``.

    ``label_source`` "acted" labels a clip with the emotion its name says; "voice", "face" or
    "multimodal" with the crowd's majority vote (``summaryTable.csv``), keeping the acted
    label in ``acted_emotion``; clips whose vote is a tie are skipped.
    """
    if label_source not in LABEL_SOURCES:
        raise ConfigError(
            f"crema-d label_source {label_source!r}: choose one of {', '.join(LABEL_SOURCES)}"
        )
    include = (include,) if isinstance(include, str) else tuple(include)
    if not include or any(part not in PARTS for part in include):
        raise ConfigError(f"crema-d include {list(include)!r}: choose among {', '.join(PARTS)}")
    base = require_root(root)
    demographics_csv = _locate(DEMOGRAPHICS, demographics, base, metadata_dir, required=False)
    genders = read_demographics(demographics_csv) if demographics_csv else {}
    ages = read_ages(demographics_csv) if demographics_csv else {}
    column = LABEL_SOURCES[label_source]
    votes = (
        read_votes(_locate(SUMMARY_TABLE, summary_table, base, metadata_dir, required=True), column)
        if column
        else {}
    )
    suffixes = (AUDIO_SUFFIXES if "audio" in include else ()) + (
        VIDEO_SUFFIXES if "audio_video" in include else ()
    )
    candidates, skipped = [], []
    for path in scan_files(base, suffixes):
        name = parse_name(path.stem)
        if name is None:
            skipped.append(skip(path, BAD_NAME))
            continue
        clip = _clip(path, name, genders, ages)
        if column:
            vote = votes.get(name.stem)
            emotion = perceived_emotion(vote) if vote is not None else None
            if emotion is None:
                why = (
                    f"no {column} in {SUMMARY_TABLE}"
                    if vote is None
                    else f"{column} is a tie or unusable ({vote!r})"
                )
                skipped.append(skip(path, why))
                continue
            clip.acted_emotion, clip.emotion = clip.emotion, emotion
        candidates.append(Candidate(clip, probe_audio=is_audio(path)))
    result = finish(
        candidates,
        skipped,
        progress=progress,
        workers=workers,
        description="CREMA-D",
        probe_fn=probe_media,
    )
    if demographics_csv is None and result.clips:
        # gender is optional, but a silently empty column would skew any per-gender analysis
        where = ", ".join(
            str(p) for p in ([metadata_dir] if metadata_dir else []) + [base, base.parent]
        )
        result.warnings.append(
            f"CREMA-D {DEMOGRAPHICS} not found in {where}: gender left empty "
            f"(give -O metadata_dir=FOLDER or -O demographics=FILE)"
        )
    return result


def _clip(path: Path, name: CremaName, genders: dict[str, str], ages: dict[str, int]) -> Clip:
    audio = is_audio(path)
    return Clip(
        clip_id=f"{CORPUS}/{name.stem}" if audio else f"{CORPUS}/av/{name.stem}",
        path=str(path),
        corpus=CORPUS,
        speaker=f"{CORPUS}/{name.actor}",
        emotion=EMOTION_CODES[name.emotion],
        gender=genders.get(name.actor, ""),
        age=ages.get(name.actor, 0),
        intensity=name.level,
        statement=name.sentence,
        modality="audio" if audio else "audio_video",
        vocal_channel="speech",
        performance=f"{CORPUS}/{name.stem}",
    )


def _locate(
    filename: str,
    given: str | os.PathLike | None,
    root: Path,
    metadata_dir: str | os.PathLike | None,
    *,
    required: bool,
) -> Path | None:
    if given is not None:
        if not Path(given).is_file():
            raise EmorecError(f"{given}: CREMA-D {filename} not found")
        return Path(given)
    found = find_metadata(filename, root, metadata_dir)
    if found is None and required:
        where = ", ".join(
            str(p) for p in ([metadata_dir] if metadata_dir else []) + [root, root.parent]
        )
        raise EmorecError(
            f"CREMA-D {filename} not found in {where} (give metadata_dir or the file's path)"
        )
    return found


def _read_csv(path: str | os.PathLike, needed: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [col for col in needed if col not in (reader.fieldnames or ())]
            if missing:
                raise EmorecError(f"{path}: missing column(s) {', '.join(missing)}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise EmorecError(f"{path}: cannot read CSV ({err})") from None
