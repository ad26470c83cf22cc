"""The unified emotion label set that lets corpora be combined.

Every corpus maps its own codes onto these canonical names. RAVDESS has all eight;
CREMA-D lacks ``calm`` and ``surprised``. How a combined training set treats labels that
only some corpora have is the ``label_policy`` of :func:`resolve_label_set`:

* ``"union"`` (default): every label seen in the training clips is a class. A class that a
  corpus lacks simply has no examples from it.
* ``"intersection"``: only labels present in *every* corpus of the manifest are classes;
  clips with other labels are dropped (and counted in the run's log).
* ``"merge_calm"``: ``calm`` is relabelled ``neutral`` (a common choice when pooling RAVDESS
  with corpora that have no calm), then ``union``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from emorec.errors import ConfigError

#: Canonical order; class indices follow it so plots and reports read the same everywhere.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

LABEL_POLICIES = ("union", "intersection", "merge_calm")


def canonical_order(labels: Iterable[str]) -> list[str]:
    """Sort labels by :data:`EMOTIONS`, unknown (user folder) labels after, alphabetically."""
    rank = {name: i for i, name in enumerate(EMOTIONS)}
    return sorted(set(labels), key=lambda name: (rank.get(name, len(rank)), name))


def apply_label_policy(emotion: str, policy: str) -> str:
    if policy == "merge_calm" and emotion == "calm":
        return "neutral"
    return emotion


def resolve_label_set(clip_labels: Sequence[tuple[str, str]], policy: str = "union") -> list[str]:
    """Class names for ``(corpus, emotion)`` pairs under ``policy``, in canonical order."""
    if policy not in LABEL_POLICIES:
        raise ConfigError(
            f"unknown label_policy {policy!r}; choose one of {', '.join(LABEL_POLICIES)}"
        )
    mapped = [(corpus, apply_label_policy(e, policy)) for corpus, e in clip_labels]
    if policy == "intersection":
        per_corpus: dict[str, set[str]] = {}
        for corpus, emotion in mapped:
            per_corpus.setdefault(corpus, set()).add(emotion)
        shared = set.intersection(*per_corpus.values()) if per_corpus else set()
        return canonical_order(shared)
    return canonical_order(e for _, e in mapped)
