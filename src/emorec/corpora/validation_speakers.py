"""Which training speakers validate: drawn by gender in turn and, over several corpora, from each
corpus by its share of the speakers, so that validation (which picks the epoch) hears every
sizeable corpus. Deterministic given the random generator."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from emorec.corpora.manifest import Clip


#: A corpus with fewer speakers gives none to validation: it cannot spare one (TESS has two).
MIN_SPEAKERS_FOR_VALIDATION = 4


def per_corpus_val_speakers(
    clips: Sequence[Clip], val_speakers: int, rng: np.random.Generator
) -> set[str]:
    """About ``val_speakers`` validation speakers, drawn from each corpus by its share of the
    speakers (at least one from each corpus of :data:`MIN_SPEAKERS_FOR_VALIDATION` speakers or
    more), so that validation, which picks the epoch, hears every sizeable training corpus and not
    only the largest."""
    by_corpus: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        by_corpus[clip.corpus].append(clip)
    if len(by_corpus) == 1:
        (only,) = by_corpus.values()
        return set(
            pick_val_speakers(
                sorted({c.speaker for c in only}), speaker_genders(only), val_speakers, rng
            )
        )
    total = len({c.speaker for c in clips})
    val: set[str] = set()
    for corpus in sorted(by_corpus):
        speakers = sorted({c.speaker for c in by_corpus[corpus]})
        share = (
            max(1, round(val_speakers * len(speakers) / total))
            if len(speakers) >= MIN_SPEAKERS_FOR_VALIDATION
            else 0
        )
        val |= set(pick_val_speakers(speakers, speaker_genders(by_corpus[corpus]), share, rng))
    return val


def speaker_genders(clips: Iterable[Clip]) -> dict[str, str]:
    """Speaker -> the gender most of its clips give ("" when none does)."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for clip in clips:
        votes[clip.speaker].update([clip.gender] if clip.gender else [])
    return {s: (v.most_common(1)[0][0] if v else "") for s, v in votes.items()}


def pick_val_speakers(
    train_speakers: Sequence[str], genders: dict[str, str], n: int, rng: np.random.Generator
) -> list[str]:
    """``n`` of ``train_speakers``, alternating genders where possible (deterministic given rng)."""
    by_gender: dict[str, list[str]] = defaultdict(list)
    for speaker in sorted(train_speakers):
        by_gender[genders.get(speaker, "")].append(speaker)
    pools = [list(rng.permutation(by_gender[g])) for g in sorted(by_gender)]
    picked: list[str] = []
    while len(picked) < n and any(pools):
        for pool in sorted(pools, key=len, reverse=True):
            if pool and len(picked) < n:
                picked.append(str(pool.pop()))
    return sorted(picked)
