"""Shared machinery of every corpus: find files, probe them in parallel, collect skips."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emorec.errors import BadInputError, EmorecError, SkippedFile
from emorec.corpora.manifest import Clip
from emorec.media.audio import AUDIO_SUFFIXES, audio_info
from emorec.media.video import VIDEO_SUFFIXES, check_first_frame, import_av, video_info

#: Below this many files no progress bar is drawn (it would only flicker).
PROGRESS_MIN_FILES = 50
#: Speaker id (last path segment) given to clips whose speaker is not known.
UNKNOWN_SPEAKER = "unknown"
STAGE = "prepare"


@dataclass
class PrepareResult:
    """What ``prepare`` produced: the clips of the manifest and the files it left out."""

    clips: list[Clip] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    #: One line each: things kept but worth a look (a
    #: truncated file, a label outside the built-in set).
    warnings: list[str] = field(default_factory=list)


@dataclass
class Probed:
    """A probed clip and what probing noticed about a file that is still usable."""

    clip: Clip
    warnings: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A file whose name parsed; ``clip`` lacks only what probing the file fills in."""

    clip: Clip
    probe_audio: bool = True  # False: a video file, hashed by its bytes and not decoded


def require_root(root: str | os.PathLike) -> Path:
    """``root`` as an absolute directory path, or an :class:`EmorecError` naming it."""
    path = Path(root).expanduser()
    if not path.exists():
        raise EmorecError(f"{path}: corpus folder not found")
    if not path.is_dir():
        raise EmorecError(f"{path}: not a folder (prepare needs the corpus root folder)")
    return path.resolve()


def scan_files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    """Every file under ``root`` (recursively) whose suffix is in ``suffixes``, sorted."""
    wanted = {s.lower() for s in suffixes}
    found = [
        Path(dirpath, name)
        for dirpath, _dirs, names in os.walk(root)
        for name in names
        if Path(name).suffix.lower() in wanted and not name.startswith(".")
    ]
    return sorted(p.absolute() for p in found)


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def skip(path: str | os.PathLike, reason: str) -> SkippedFile:
    return SkippedFile(path=str(path), reason=reason, stage=STAGE)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deduplicate(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[SkippedFile]]:
    """Keep one file per clip id (lossless formats first); the others are skipped."""
    rank = {
        suffix: i for i, suffix in enumerate((".wav", ".flac", *AUDIO_SUFFIXES, *VIDEO_SUFFIXES))
    }

    def order(c: Candidate) -> tuple[int, str]:
        return rank.get(Path(c.clip.path).suffix.lower(), len(rank)), c.clip.path

    kept: dict[str, Candidate] = {}
    skipped: list[SkippedFile] = []
    for cand in sorted(candidates, key=order):
        first = kept.get(cand.clip.clip_id)
        if first is None:
            kept[cand.clip.clip_id] = cand
        else:
            skipped.append(
                skip(
                    cand.clip.path,
                    f"duplicate clip id {cand.clip.clip_id} (kept {first.clip.path})",
                )
            )
    ordered = sorted(kept.values(), key=lambda c: c.clip.path)
    return ordered, skipped


def plural(count: int, noun: str) -> str:
    """``"1 clip"``, ``"2 clips"``; nouns ending in s, x or ch take ``es``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'ch')) else 's'}"


def probe(candidate: Candidate) -> Probed:
    """Fill duration, rate, channels and content hash; raises :class:`BadInputError`."""
    path = candidate.clip.path
    if not candidate.probe_audio:
        if os.path.getsize(path) == 0:
            raise BadInputError(path, "zero-length file")
        return Probed(replace(candidate.clip, content_hash=file_sha256(path)))
    info = audio_info(path)
    clip = replace(
        candidate.clip,
        duration=round(info.duration, 6),
        sample_rate=info.sample_rate,
        channels=info.channels,
        content_hash=info.content_hash,
    )
    return Probed(clip, [f"{path}: {info.truncation}"] if info.truncation else [])


def with_video_info(clip: Clip) -> Clip:
    """``clip`` with ``duration`` and its audio track's ``sample_rate`` and ``channels`` (0 and
    0 without one) read from the video header, after checking that its first picture decodes.

    Raises :class:`BadInputError` for a file that is no usable video (unreadable header, no
    video stream, no decodable picture), so preparing a corpus lists it instead of a clip that
    fails only at extraction. Unchanged when PyAV is not installed: audio-only work must not
    need it, and extraction says how to install it."""
    try:
        import_av()
    except EmorecError:
        return clip
    info = video_info(clip.path)
    check_first_frame(clip.path)
    return replace(
        clip,
        duration=round(info.duration, 6),
        sample_rate=info.audio_sample_rate,
        channels=info.audio_channels,
    )


def probe_media(candidate: Candidate) -> Probed:
    """Audio files as :func:`probe`; a video file is hashed by its bytes and its header read
    (duration, the audio track's rate and channels; 0 channels: no audio track). A file that
    PyAV cannot open, or whose first picture does not decode, raises :class:`BadInputError`."""
    probed = probe(candidate)
    if not candidate.probe_audio:
        probed.clip = with_video_info(probed.clip)
    return probed


def finish(
    candidates: Sequence[Candidate],
    skipped: Sequence[SkippedFile] = (),
    *,
    progress: bool = True,
    workers: int | None = None,
    description: str = "prepare",
    probe_fn: Callable[[Candidate], Probed] = probe,
) -> PrepareResult:
    """Probe every candidate (thread pool); a bad file becomes a :class:`SkippedFile`."""
    unique, duplicates = deduplicate(candidates)
    result = PrepareResult(skipped=[*skipped, *duplicates])
    outcomes: list[Probed | SkippedFile] = []
    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = pool.map(lambda c: _probe_safely(c, probe_fn), unique)
        for outcome in _track(
            jobs, len(unique), progress and len(unique) >= PROGRESS_MIN_FILES, description
        ):
            outcomes.append(outcome)
    for outcome in outcomes:
        if isinstance(outcome, Probed):
            result.clips.append(outcome.clip)
            result.warnings.extend(outcome.warnings)
        else:
            result.skipped.append(outcome)
    return result


def _probe_safely(
    candidate: Candidate, probe_fn: Callable[[Candidate], Probed]
) -> Probed | SkippedFile:
    try:
        return probe_fn(candidate)
    except BadInputError as err:
        return skip(candidate.clip.path, err.reason)
    except OSError as err:
        return skip(candidate.clip.path, f"unreadable file ({err.strerror or type(err).__name__})")


def _track(items: Iterable[Any], total: int, show: bool, description: str) -> Iterable[Any]:
    if not show:
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def prepare_named(
    root: str | os.PathLike,
    clip_of: Callable[[Path], Clip | str],
    *,
    description: str,
    progress: bool = True,
    workers: int | None = None,
) -> PrepareResult:
    """A corpus whose labels, speakers and genders all lie in its file paths: ``clip_of(path)``
    gives each audio file's clip, or the reason (a string) it is skipped."""
    candidates, skipped = [], []
    for path in scan_files(require_root(root), AUDIO_SUFFIXES):
        clip = clip_of(path)
        if isinstance(clip, str):
            skipped.append(skip(path, clip))
        else:
            candidates.append(Candidate(clip))
    return finish(candidates, skipped, progress=progress, workers=workers, description=description)
