"""The leakage guard: no speaker, recording or performance on both sides of a split.

Speaker-independent evaluation is the default, and a split that puts one speaker (or one recording,
or one performance shipped as several files) in training and in test is refused with the clips that
show it. :func:`emorec.corpora.splits.make_splits` checks every split it makes, and training checks
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from emorec.errors import EmorecError, LeakageError
from emorec.corpora.manifest import Clip


class Split(Protocol):
    """What the guard reads of a :class:`emorec.corpora.splits.Split`."""

    name: str
    train: list[str]
    val: list[str]
    test: list[str]
    speaker_independent: bool


def check_leakage(split: Split, clips: Sequence[Clip]) -> None:
    """Raise :class:`LeakageError` if a speaker, audio or performance is on both sides.

    Checked: test vs train+val and train vs val. Speakers only for speaker-independent splits;
    content hash and performance (:attr:`Clip.group`) always.
    """
    by_id = {c.clip_id: c for c in clips}
    parts = {"train": split.train, "val": split.val, "test": split.test}
    missing = [cid for ids in parts.values() for cid in ids if cid not in by_id]
    if missing:
        raise EmorecError(
            f"split {split.name}: {len(missing)} clip id(s) not in the manifest, e.g. {missing[0]}"
        )
    seen: dict[str, str] = {}
    for part, ids in parts.items():
        for cid in ids:
            if cid in seen:
                raise LeakageError(
                    f"split {split.name}: clip {cid} is in both {seen[cid]} and {part}"
                )
            seen[cid] = part
    pairs = [
        ("train+val", split.train + split.val, "test", split.test),
        ("train", split.train, "val", split.val),
    ]
    keys = [
        ("performance", lambda c: c.performance),
        ("audio (content hash)", lambda c: c.content_hash),
    ]
    if split.speaker_independent:
        keys.insert(0, ("speaker", lambda c: c.speaker))
    for what, key in keys:
        for left_name, left, right_name, right in pairs:
            left_keys: dict[str, str] = {}
            for cid in left:
                value = key(by_id[cid])
                if value:
                    left_keys.setdefault(value, cid)
            shared = sorted({key(by_id[cid]) for cid in right} & left_keys.keys())
            if shared:
                example = shared[0]
                right_cid = next(cid for cid in right if key(by_id[cid]) == example)
                head = ", ".join(shared[:3]) + (
                    f" and {len(shared) - 3} more" if len(shared) > 3 else ""
                )
                raise LeakageError(
                    f"split {split.name}: {what} {head} in both {left_name} and {right_name} "
                    f"(e.g. clips {left_keys[example]} and {right_cid})"
                )
