"""The ``stratified`` scheme's one holdout split, **speaker-dependent**: about ``test_size`` of each
label's clips for test and as much of the rest for validation, keeping together the clips of one
performance or of identical audio (so no copy of a test clip trains)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from emorec.corpora.manifest import Clip


def stratified_holdout(
    clips: Sequence[Clip], test_size: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """``(train, val, test)`` clip ids, deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    train_groups, test_groups = _stratified_take(_groups(clips), clips, test_size, rng)
    train_groups, val_groups = _stratified_take(train_groups, clips, test_size, rng)

    def ids(groups: list[list[int]]) -> list[str]:
        return [clips[i].clip_id for i in sorted(i for g in groups for i in g)]

    return ids(train_groups), ids(val_groups), ids(test_groups)


def _groups(clips: Sequence[Clip]) -> list[list[int]]:
    """Indices of clips that must stay together: same performance or same audio (union-find)."""
    parent = list(range(len(clips)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, clip in enumerate(clips):
        for key in (
            f"p:{clip.performance}" if clip.performance else "",
            f"h:{clip.content_hash}" if clip.content_hash else "",
        ):
            if key:
                j = first.setdefault(key, i)
                parent[find(i)] = find(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(clips)):
        members[find(i)].append(i)
    return list(members.values())


def _stratified_take(
    groups: list[list[int]], clips: Sequence[Clip], fraction: float, rng: np.random.Generator
) -> tuple[list[list[int]], list[list[int]]]:
    """Split groups into (rest, taken) with about ``fraction`` of each label's groups taken."""
    by_label: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        by_label[Counter(clips[i].emotion for i in group).most_common(1)[0][0]].append(group)
    rest, taken = [], []
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        n_take = (
            min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        )
        taken += [members[j] for j in order[:n_take]]
        rest += [members[j] for j in order[n_take:]]
    return rest, taken
