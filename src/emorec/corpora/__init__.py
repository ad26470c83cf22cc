"""Corpora: turn a folder of media files into manifest clips (``prepare_corpus``).

One module per corpus, each with ``prepare(root, **options) -> PrepareResult``:

==============  ==========================================================================
kind            labels
==============  ==========================================================================
``ravdess``     all 8 of :data:`emorec.labels.EMOTIONS` (neutral, calm, happy, sad, angry,
                fearful, disgust, surprised); speech, song, audio-video and video files
``crema-d``     6: neutral, happy, sad, angry, fearful, disgust (**no calm, no surprised**);
                acted label from the file name or a crowd-perceived one (``label_source``)
``folder``      whatever the sub-folder names / CSV say, lower-cased; obvious spellings
                ("anger", "happiness", "fear", ...) mapped onto the canonical names
``synthetic``   the emotions it was generated with (generated tones, not speech)
==============  ==========================================================================

What happens to a label that a corpus lacks is decided when training on a combined
manifest, by ``label_policy`` (:func:`emorec.labels.resolve_label_set`); nothing is dropped
or renamed at prepare time:

* ``union`` (default): RAVDESS + CREMA-D gives 8 classes; ``calm`` and ``surprised`` have
  RAVDESS examples only (CREMA-D contributes none to them).
* ``intersection``: only the 6 labels both have; RAVDESS calm and surprised clips are dropped.
* ``merge_calm``: RAVDESS ``calm`` becomes ``neutral``, then ``union`` (7 classes).

Folder labels outside the canonical set stay their own classes under ``union`` and vanish
under ``intersection`` unless every corpus has them.

Every per-file problem (unreadable, truncated, zero-length, silent, NaN samples, a name
that does not parse) becomes a :class:`~emorec.errors.SkippedFile`; it never aborts the job.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from emorec.corpora import crema_d, folder, ravdess, synthetic
from emorec.corpora.base import UNKNOWN_SPEAKER, PrepareResult
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.errors import ConfigError

PREPARERS: dict[str, Callable[..., PrepareResult]] = {
    "ravdess": ravdess.prepare,
    "crema-d": crema_d.prepare,
    "folder": folder.prepare,
    "synthetic": synthetic.prepare,
}
CORPUS_KINDS: tuple[str, ...] = tuple(PREPARERS)


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
    accepted = [name for name, p in inspect.signature(prepare).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for corpus {key}; accepted: {', '.join(accepted)}")
    return prepare(root, **options)


__all__ = [
    "CORPUS_KINDS", "PrepareResult", "UNKNOWN_SPEAKER", "generate_synthetic_corpus", "prepare_corpus",
]
