"""Train/validation/test splits of a manifest, speaker-independent by default, with a leakage guard.

Schemes (:func:`make_splits`):

* ``ravdess6``: the six standard RAVDESS folds (4 test actors each, EmoBox protocol).
* ``crema5``: five fixed CREMA-D folds of 18-19 actors, balanced by sex and age
  (:data:`CREMA_D_FOLDS`).
* ``speaker_kfold``: ``k`` folds of speakers, gender-stratified, deterministic given ``seed``.
* ``stratified``: one plain 80/20 split stratified by label. **Speaker-dependent**
  (``speaker_independent=False``): its numbers are not comparable with speaker-independent ones.
* ``cross_corpus``: one fold that trains on every corpus but ``test_corpora`` (validation speakers
  drawn from each of them by its share of the speakers) and tests on all clips of ``test_corpora``:
  the cross-corpus figure.
* ``release``: one fold that trains on every speaker but ``val_speakers`` validation speakers
  (drawn from each corpus by its share of the speakers) and tests on none: the fold a released
  model is trained on; its accuracy is its recipe's cross-validation figure, never its own.
* ``auto``: ``ravdess6`` for a complete RAVDESS manifest, ``crema5`` for a complete CREMA-D one,
  else ``speaker_kfold``.

In speaker-independent schemes validation speakers come from the fold's training speakers,
never from its test speakers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emorec.atomic import write_json
from emorec.errors import ConfigError, EmorecError
from emorec.corpora.leakage import check_leakage
from emorec.corpora.manifest import Clip
from emorec.corpora.stratified import stratified_holdout
from emorec.corpora.validation_speakers import (
    per_corpus_val_speakers,
    pick_val_speakers,
    speaker_genders,
)
from emorec.corpora.standard_folds import (
    CREMA_D_ACTORS,
    CREMA_D_FOLDS,
    RAVDESS_ACTORS,
    RAVDESS_FOLDS,
)

SCHEMES: tuple[str, ...] = (
    "auto",
    "ravdess6",
    "crema5",
    "speaker_kfold",
    "stratified",
    "cross_corpus",
    "release",
)


@dataclass
class Split:
    """One fold: clip ids of train / val / test and how they were chosen."""

    name: str
    train: list[str]
    val: list[str]
    test: list[str]
    speaker_independent: bool
    test_speakers: list[str] = field(default_factory=list)
    val_speakers: list[str] = field(default_factory=list)
    scheme: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        try:
            return cls(
                name=str(data["name"]),
                train=[str(x) for x in data["train"]],
                val=[str(x) for x in data["val"]],
                test=[str(x) for x in data["test"]],
                speaker_independent=bool(data["speaker_independent"]),
                test_speakers=[str(x) for x in data.get("test_speakers", [])],
                val_speakers=[str(x) for x in data.get("val_speakers", [])],
                scheme=str(data.get("scheme", "")),
            )
        except (KeyError, TypeError) as err:
            raise EmorecError(f"not a split record (missing or bad field {err})") from None


def is_unknown_speaker(speaker: str) -> bool:
    """True for ``""`` and for ids whose last segment is ``unknown`` (see the folder corpus)."""
    return speaker.rsplit("/", 1)[-1].strip().lower() in ("", "unknown")


def make_splits(
    clips: Sequence[Clip],
    scheme: str = "auto",
    *,
    k: int = 5,
    val_speakers: int = 2,
    test_size: float = 0.2,
    seed: int = 0,
    train_only_corpora: Sequence[str] = (),
    test_corpora: Sequence[str] = (),
) -> list[Split]:
    """Splits of ``clips`` under ``scheme`` (see the module doc); every one passes
    :func:`check_leakage`.

    ``train_only_corpora``: the clips of these corpora are left out of the folds and added whole
    to every fold's training side, never to validation or test (e.g. all of CREMA-D added to each
    standard RAVDESS fold, whose folds and scores then stay RAVDESS's own)."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if train_only_corpora:
        extra = [c for c in clips if c.corpus in set(train_only_corpora)]
        folded = [c for c in clips if c.corpus not in set(train_only_corpora)]
        if not extra:
            raise EmorecError(
                f"split.train_only_corpora {list(train_only_corpora)}: no clip of "
                "these corpora in the manifest"
            )
        if not folded:
            raise EmorecError(
                "split.train_only_corpora names every corpus of the "
                "manifest: nothing left to test on"
            )
        splits = make_splits(
            folded, scheme, k=k, val_speakers=val_speakers, test_size=test_size, seed=seed
        )
        ids = [c.clip_id for c in extra]
        for split in splits:
            split.train = split.train + ids
            check_leakage(split, clips)
        return splits
    if not clips:
        raise EmorecError("cannot split an empty manifest")
    if (scheme == "cross_corpus") != bool(test_corpora):
        raise ConfigError(
            "split.scheme cross_corpus and split.test_corpora go together "
            "(name the corpora to test on)"
        )
    if scheme == "auto":
        speakers = {c.speaker for c in clips}
        corpora = {c.corpus for c in clips}
        if corpora == {"ravdess"} and RAVDESS_ACTORS <= speakers:
            scheme = "ravdess6"
        elif corpora == {"crema-d"} and CREMA_D_ACTORS <= speakers:
            scheme = "crema5"
        else:
            scheme = "speaker_kfold"
    if scheme == "stratified":
        if not 0 < test_size < 1:
            raise ConfigError(f"test_size must be between 0 and 1, got {test_size}")
        splits = [_stratified(clips, test_size, seed)]
    else:
        if val_speakers < 1:
            raise ConfigError(f"val_speakers must be at least 1, got {val_speakers}")
        _require_known_speakers(clips)
        if scheme == "ravdess6":
            splits = _ravdess6(clips, val_speakers, seed)
        elif scheme == "crema5":
            folds = {f: {f"crema-d/{a}" for a in actors} for f, actors in CREMA_D_FOLDS.items()}
            splits = _fixed_folds(
                "crema5",
                clips,
                folds,
                CREMA_D_ACTORS,
                val_speakers,
                seed,
                actors="CREMA-D actors (crema-d/1001..1091)",
            )
        elif scheme == "cross_corpus":
            splits = [_cross_corpus(clips, set(test_corpora), val_speakers, seed)]
        elif scheme == "release":
            splits = [_release(clips, val_speakers, seed)]
        else:
            splits = _speaker_kfold(clips, k, val_speakers, seed)
    for split in splits:
        for part in ("train", "val", "test"):
            if not getattr(split, part) and not (part == "test" and split.scheme == "release"):
                raise EmorecError(
                    f"{split.scheme} {split.name}: empty {part} set ({len(clips)} clips)"
                )
        check_leakage(split, clips)
    return splits


def _cross_corpus(
    clips: Sequence[Clip], test_corpora: set[str], val_speakers: int, seed: int
) -> Split:
    corpora = {c.corpus for c in clips}
    if not test_corpora <= corpora or not corpora - test_corpora:
        raise EmorecError(
            f"split.test_corpora {sorted(test_corpora)}: the manifest's "
            f"corpora are {sorted(corpora)}; "
            "need at least one to test on and one to train on"
        )
    train_side = [c for c in clips if c.corpus not in test_corpora]
    val = per_corpus_val_speakers(train_side, val_speakers, np.random.default_rng(seed))
    test = {c.speaker for c in clips if c.corpus in test_corpora}
    name = f"{'+'.join(sorted(corpora - test_corpora))} -> {'+'.join(sorted(test_corpora))}"
    return _assemble(name, "cross_corpus", clips, test, val)


def _release(clips: Sequence[Clip], val_speakers: int, seed: int) -> Split:
    val = per_corpus_val_speakers(clips, val_speakers, np.random.default_rng(seed))
    return _assemble("release", "release", clips, set(), val)


def _require_known_speakers(clips: Sequence[Clip]) -> None:
    unknown = [c for c in clips if is_unknown_speaker(c.speaker)]
    if unknown:
        raise EmorecError(
            f"{len(unknown)} clip(s) have no known speaker (e.g. "
            f"{unknown[0].clip_id}); a speaker-independent "
            "split is impossible: give speakers (folder corpus: labels_csv speaker "
            "column or speaker_pattern) "
            "or use scheme 'stratified' (speaker-dependent)"
        )


def _assemble(
    name: str, scheme: str, clips: Sequence[Clip], test: set[str], val: set[str]
) -> Split:
    return Split(
        name=name,
        train=[c.clip_id for c in clips if c.speaker not in test and c.speaker not in val],
        val=[c.clip_id for c in clips if c.speaker in val],
        test=[c.clip_id for c in clips if c.speaker in test],
        speaker_independent=True,
        test_speakers=sorted(test),
        val_speakers=sorted(val),
        scheme=scheme,
    )


def _ravdess6(clips: Sequence[Clip], val_speakers: int, seed: int) -> list[Split]:
    folds = {f: {f"ravdess/{a:02d}" for a in actors} for f, actors in RAVDESS_FOLDS.items()}
    return _fixed_folds(
        "ravdess6",
        clips,
        folds,
        RAVDESS_ACTORS,
        val_speakers,
        seed,
        actors="RAVDESS actors (ravdess/01..24)",
    )


def _fixed_folds(
    scheme: str,
    clips: Sequence[Clip],
    folds: dict[int, set[str]],
    known: set[str],
    val_speakers: int,
    seed: int,
    *,
    actors: str,
) -> list[Split]:
    """Splits whose test speakers are a fixed table; validation speakers drawn from each fold's
    training speakers."""
    others = sorted({c.speaker for c in clips} - known)
    if others:
        raise EmorecError(
            f"scheme {scheme} needs {actors} only; found {', '.join(others[:3])}"
            + (" ..." if len(others) > 3 else "")
            + "; use scheme speaker_kfold"
        )
    genders = speaker_genders(clips)
    speakers = sorted(genders)
    splits = []
    for fold, actors in folds.items():
        test = actors & set(speakers)
        train = [s for s in speakers if s not in test]
        if len(train) <= val_speakers:
            raise EmorecError(
                f"{scheme} fold{fold}: {len(train)} training actor(s) cannot give {val_speakers} "
                "validation actor(s) and keep one for training"
            )
        val = pick_val_speakers(train, genders, val_speakers, np.random.default_rng([seed, fold]))
        splits.append(_assemble(f"fold{fold}", scheme, clips, test, set(val)))
    return splits


def min_speakers(k: int, val_speakers: int) -> int:
    """Fewest speakers for ``k`` folds with ``val_speakers`` validation and one training speaker
    each."""
    n = k
    while n - math.ceil(n / k) < val_speakers + 1:
        n += 1
    return n


def _speaker_kfold(clips: Sequence[Clip], k: int, val_speakers: int, seed: int) -> list[Split]:
    if k < 2:
        raise ConfigError(f"k must be at least 2 for speaker_kfold, got {k}")
    genders = speaker_genders(clips)
    need = min_speakers(k, val_speakers)
    if len(genders) < need:
        raise EmorecError(
            f"speaker_kfold with k={k} and val_speakers={val_speakers} needs "
            f"at least {need} speakers; "
            f"the manifest has {len(genders)} "
            f"({', '.join(sorted(genders)[:6])}{' ...' if len(genders) > 6 else ''})"
        )
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for gender in sorted(set(genders.values())):  # deal each gender round-robin: stratified folds
        for speaker in rng.permutation(sorted(s for s, g in genders.items() if g == gender)):
            folds[turn % k].append(str(speaker))
            turn += 1
    splits = []
    for i, test in enumerate(folds, start=1):
        train = [s for s in sorted(genders) if s not in test]
        val = pick_val_speakers(train, genders, val_speakers, np.random.default_rng([seed, i]))
        splits.append(_assemble(f"fold{i}", "speaker_kfold", clips, set(test), set(val)))
    return splits


def _stratified(clips: Sequence[Clip], test_size: float, seed: int) -> Split:
    train, val, test = stratified_holdout(clips, test_size, seed)
    return Split("holdout", train, val, test, speaker_independent=False, scheme="stratified")


def save_splits(splits: Sequence[Split], path: str | os.PathLike) -> Path:
    """Write ``splits`` as JSON (atomically)."""
    path = Path(path)
    write_json(path, {"version": 1, "splits": [s.to_dict() for s in splits]})
    return path


def load_splits(path: str | os.PathLike) -> list[Split]:
    """Read splits written by :func:`save_splits`."""
    path = Path(path)
    if not path.is_file():
        raise EmorecError(f"{path}: splits file not found (run `emorec split` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EmorecError(f"{path}: not a splits file ({err})") from None
    records = data.get("splits") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise EmorecError(f"{path}: not a splits file (no 'splits' list)")
    try:
        return [Split.from_dict(r) for r in records]
    except EmorecError as err:
        raise EmorecError(f"{path}: {err}") from None
