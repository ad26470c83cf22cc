"""Corpora: turn a folder of media files into manifest clips (``prepare_corpus``).

One module per corpus, each with ``prepare(root, **options) -> PrepareResult``:

==============  ==========================================================================
kind            labels
==============  ==========================================================================
``ravdess``     all 8 of :data:`emorec.corpora.labels.EMOTIONS` (neutral, calm, happy, sad, angry,
                fearful, disgust, surprised); speech, song, audio-video and video files
``crema-d``     6: neutral, happy, sad, angry, fearful, disgust (**no calm, no surprised**);
                acted label from the file name or a crowd-perceived one (``label_source``)
``folder``      whatever the sub-folder names / CSV say, lower-cased; obvious spellings
                ("anger", "happiness", "fear", ...) mapped onto the canonical names;
                audio files and videos
``tess``        7: neutral, happy, sad, angry, fearful, disgust, surprised ("pleasant surprise");
                2 women (26 and 64), English
``emovo``       7: neutral, happy, sad, angry, fearful, disgust, surprised; 6 actors, Italian
``urdu``        4: neutral, happy, sad, angry; 38 speakers of Urdu talk shows (unscripted)
``synthetic``   the emotions it was generated with (generated tones, not speech)
==============  ==========================================================================

What happens to a label that a corpus lacks is decided when training on a combined
manifest, by ``label_policy`` (:func:`emorec.corpora.labels.resolve_label_set`); nothing is dropped
or renamed at prepare time:

* ``union`` (default): RAVDESS + CREMA-D gives 8 classes; ``calm`` and ``surprised`` have
  RAVDESS examples only (CREMA-D contributes none to them).
* ``intersection``: only the 6 labels both have; RAVDESS calm and surprised clips are dropped.
* ``merge_calm``: RAVDESS ``calm`` becomes ``neutral``, then ``union`` (7 classes).

Folder labels outside the canonical set stay their own classes under ``union`` and vanish
under ``intersection`` unless every corpus has them; ``prepare_corpus`` says so in
``result.warnings`` (a typo such as "angyr" would otherwise become a class unnoticed).

Every per-file problem (unreadable, truncated, zero-length, silent, NaN samples, a name
that does not parse) becomes a :class:`~emorec.errors.SkippedFile`; it never aborts the job.
A job that ends with no clip at all is an :class:`~emorec.errors.EmorecError` naming the cause.
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from emorec.corpora import crema_d, emovo, folder, ravdess, synthetic, tess, urdu
from emorec.corpora.base import UNKNOWN_SPEAKER, VIDEO_SUFFIXES, PrepareResult, plural, scan_files
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.errors import ConfigError, EmorecError
from emorec.corpora.labels import EMOTIONS
from emorec.media.audio import AUDIO_SUFFIXES

PREPARERS: dict[str, Callable[..., PrepareResult]] = {
    "ravdess": ravdess.prepare,
    "crema-d": crema_d.prepare,
    "tess": tess.prepare,
    "emovo": emovo.prepare,
    "urdu": urdu.prepare,
    "folder": folder.prepare,
    "synthetic": synthetic.prepare,
}
CORPUS_KINDS: tuple[str, ...] = tuple(PREPARERS)
MODULES: dict[str, ModuleType] = {
    "ravdess": ravdess,
    "crema-d": crema_d,
    "tess": tess,
    "emovo": emovo,
    "urdu": urdu,
    "folder": folder,
    "synthetic": synthetic,
}

#: ``-O key=value`` options of every corpus, for ``emorec prepare --help`` and the README; a test
#: checks that every keyword option of every ``prepare`` is listed here.
OPTION_HELP: dict[str, list[tuple[str, str]]] = {
    "ravdess": [
        (
            "include=[speech,song,audio_video,video]",
            "parts to read (default speech: the audio-only speech files, 03-01)",
        ),
    ],
    "crema-d": [
        (
            "include=[audio,audio_video]",
            "audio files (AudioWAV, AudioMP3; default) and/or the videos (VideoFlash .flv)",
        ),
        (
            "label_source=acted|voice|face|multimodal",
            "the acted label from the name (default) or the crowd's vote from "
            "processedResults/summaryTable.csv",
        ),
        (
            "metadata_dir=DIR",
            "folder holding VideoDemographics.csv and processedResults/ "
            "(default: PATH or its parent folder)",
        ),
        ("demographics=FILE", "VideoDemographics.csv itself (gives each actor's gender)"),
        ("summary_table=FILE", "summaryTable.csv itself (for label_source other than acted)"),
    ],
    "folder": [
        (
            "labels_csv=FILE",
            "labels from a CSV with columns path, emotion (or label), optional speaker and "
            "gender; without it labels are the sub-folder names PATH/<label>/...",
        ),
        (
            "speaker_pattern=REGEX",
            "speaker from the relative path, a regex with a group (?P<speaker>...), "
            "e.g. 's(?P<speaker>[0-9]+)_'",
        ),
        ("name=NAME", "corpus name, the prefix of clip and speaker ids (default folder)"),
    ],
    "tess": [],
    "emovo": [],
    "urdu": [],
    "synthetic": [],
    "every corpus": [
        ("workers=N", "probing threads"),
        ("progress=false", "no progress bar"),
    ],
}


def prepare_corpus(kind: str, root: str | os.PathLike, **options: Any) -> PrepareResult:
    """Prepare the corpus of ``kind`` under ``root``; ``options`` go to that corpus' ``prepare``.

    Raises :class:`ConfigError` for an unknown kind or option, :class:`EmorecError` for a
    missing root. Bad files are listed in ``result.skipped``.
    """
    key = kind.strip().lower().replace("_", "-")
    key = "crema-d" if key == "cremad" else key
    if key not in PREPARERS:
        raise ConfigError(f"unknown corpus kind {kind!r}; choose one of {', '.join(CORPUS_KINDS)}")
    prepare = PREPARERS[key]
    accepted = [
        name
        for name, p in inspect.signature(prepare).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for corpus {key}; "
            f"accepted: {', '.join(accepted)}"
        )
    result = prepare(root, **options)
    if not result.clips:
        raise EmorecError(_nothing_prepared(Path(root).expanduser(), key, result, options))
    result.warnings.extend(label_warnings(result.clips))
    return result


def label_warnings(clips: list[Any]) -> list[str]:
    """A line naming the labels outside :data:`~emorec.corpora.labels.EMOTIONS` and their counts, if
    any."""
    outside = Counter(c.emotion for c in clips if c.emotion not in EMOTIONS)
    if not outside:
        return []
    labels = ", ".join(f"{label} ({n})" for label, n in sorted(outside.items()))
    return [
        f"{plural(sum(outside.values()), 'clip')} labelled outside the built-in set "
        f"({' '.join(EMOTIONS)}), each such label kept as a class of its own: {labels}"
    ]


def _reason_kind(reason: str) -> str:
    """A skip reason without its per-file details, so like reasons count together."""
    if reason.startswith("duplicate clip id"):
        return "duplicate clip id"
    return reason.split(" (")[0]


def _nothing_prepared(root: Path, kind: str, result: PrepareResult, options: dict[str, Any]) -> str:
    module = MODULES[kind]
    head = f"{root}: no clip found"
    if result.skipped:
        counts = Counter(_reason_kind(s.reason) for s in result.skipped)
        n = plural(len(result.skipped), "file")
        if len(counts) == 1:
            (reason,) = counts
            what = f"{n} skipped, all {reason!r}"
        else:
            top = ", ".join(f"{c} {r!r}" for r, c in counts.most_common(3))
            what = f"{n} skipped: {top}{', ...' if len(counts) > 3 else ''}"
        hints = getattr(module, "NO_CLIP_HINTS", {})
        hint = next((hints[r] for r, _ in counts.most_common() if r in hints), "")
        return f"{head}: {what}" + (f" ({hint})" if hint else "")
    suffixes = (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)
    media = scan_files(root, suffixes)
    if not media:
        return f"{head}: no media files ({' '.join(suffixes)}) in it or its sub-folders"
    found = " ".join(sorted({p.suffix.lower() for p in media}))
    chosen = ", ".join(
        f"{k}={v!r}" for k, v in sorted(options.items()) if k not in ("progress", "workers")
    )
    hint = "; ".join(
        h
        for h in (f"options {chosen}" if chosen else "", getattr(module, "NOT_SELECTED_HINT", ""))
        if h
    )
    what = f"{plural(len(media), 'media file')} ({found}), none of them selected"
    return f"{head}: {what}" + (f" ({hint})" if hint else "")


__all__ = [
    "CORPUS_KINDS",
    "PrepareResult",
    "UNKNOWN_SPEAKER",
    "generate_synthetic_corpus",
    "prepare_corpus",
]
