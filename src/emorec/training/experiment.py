"""One experiment's data, assembled once for training and for evaluation alike: the manifest's
clips under the label policy, the class list, the feature caches (extracted if needed) and the
speaker-independent splits (made from the config, or read exactly from a ``splits.json``).

Below both ``training`` and ``evaluation``: neither imports the other to rebuild a run's data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from emorec.data import Normalizer
from emorec.errors import ConfigError
from emorec.features.base import extractor_from_spec, split_frame_mask
from emorec.features.extract import extract_features
from emorec.features.skipped import read_skipped
from emorec.features.packed import PackedStore
from emorec.features.store import FeatureStore
from emorec.corpora.labels import apply_label_policy, resolve_label_set
from emorec.corpora.manifest import Clip, read_manifest
from emorec.corpora.splits import Split, check_leakage, load_splits, make_splits
from emorec.training.config import TrainConfig

console = Console(stderr=True)


@dataclass
class Experiment:
    """Everything a fold needs that does not depend on the fold."""

    config: TrainConfig
    clips: list[Clip]
    class_names: list[str]
    stores: dict[str, FeatureStore]
    feature_specs: dict[str, dict]
    splits: list[Split]
    skipped: list = field(default_factory=list)
    #: modality -> caches of the same clips at other waveform
    #: speeds (``augment.speed_views``), for training draws
    view_stores: dict[str, list[FeatureStore | PackedStore]] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Clip]:
        return {c.clip_id: c for c in self.clips}


def feature_specs(config: TrainConfig) -> dict[str, dict]:
    specs = {}
    for modality, spec in (("audio", config.data.features), ("video", config.data.video_features)):
        if spec:  # its 'name' was checked when the config loaded (validate.py)
            specs[extractor_from_spec(spec).modality] = spec
    return specs


def prepare_experiment(
    config: TrainConfig,
    *,
    extract: bool = True,
    progress: bool = True,
    splits: list[Split] | None = None,
    views: bool = False,
) -> Experiment:
    """``views``: also extract the training views of ``augment.speed_views`` (what a training run
    reads; evaluation needs only the clips as they are)."""
    if not config.data.manifest:
        raise ConfigError("data.manifest is empty: point it at a manifest from `emorec prepare`")
    clips = read_manifest(config.data.manifest)
    policy = config.data.label_policy
    for clip in clips:
        clip.emotion = apply_label_policy(clip.emotion, policy)
    class_names = config.data.labels or resolve_label_set(
        [(c.corpus, c.emotion) for c in clips], policy
    )
    unknown = sorted({c.emotion for c in clips} - set(class_names))
    if unknown:
        console.print(
            f"[yellow]leaving out clips labelled {unknown} (not in the class list {class_names})"
        )
        clips = [c for c in clips if c.emotion in class_names]
    if len(class_names) < 2:
        raise ConfigError(f"need at least two classes, got {class_names}")

    stores, skipped = {}, read_skipped(Path(config.data.manifest).with_suffix(".skipped.csv"))
    specs = feature_specs(config)
    for modality, spec in specs.items():
        extractor = extractor_from_spec(spec)
        if extract:
            result = extract_features(
                clips, extractor, config.data.cache, workers=config.data.workers, progress=progress
            )
            skipped.extend(result.skipped)
        store = FeatureStore.for_extractor(config.data.cache, extractor)
        stores[modality] = (
            store
            if config.data.pack == "none"
            else PackedStore.for_clips(store, clips, config.data.pack)
        )
    view_stores = speed_view_stores(
        config, specs, clips, extract=extract and views, progress=progress
    )

    if splits is None and config.split.file:
        splits = splits_from_file(config.split.file, clips)
    if splits is None:
        s = config.split
        splits = make_splits(
            clips,
            s.scheme,
            k=s.k,
            val_speakers=s.val_speakers,
            test_size=s.test_size,
            seed=s.seed,
            train_only_corpora=s.train_only_corpora,
            test_corpora=s.test_corpora,
        )
    return Experiment(config, clips, list(class_names), stores, specs, splits, skipped, view_stores)


def speed_view_stores(
    config: TrainConfig, specs: dict[str, dict], clips: list[Clip], *, extract: bool, progress: bool
) -> dict[str, list[FeatureStore | PackedStore]]:
    """The audio caches of ``augment.speed_views``, one per speed (extracted when ``extract``),
    packed as ``data.pack`` says. A
    clip a view cannot read is trained from its original features only: nothing is skipped for a
    view."""
    speeds = config.augment.speed_views if config.augment.enabled else ()
    if not speeds or "audio" not in specs:
        return {}
    stores = []
    for speed in speeds:
        spec = {**specs["audio"], "speed": float(speed)}
        try:
            extractor = extractor_from_spec(spec)
        except (ConfigError, TypeError) as err:
            raise ConfigError(
                f"augment.speed_views: the {spec['name']!r} extractor cannot make speed views "
                f"({str(err).splitlines()[0]})"
            ) from None
        if extract:
            extract_features(
                clips, extractor, config.data.cache, workers=config.data.workers, progress=progress
            )
        store = FeatureStore.for_extractor(config.data.cache, extractor)
        # a draw reads its view from the pack like the originals, not one .npy file per draw
        stores.append(
            store
            if config.data.pack == "none"
            else PackedStore.for_clips(store, clips, config.data.pack)
        )
    return {"audio": stores}


def splits_from_file(path: str | os.PathLike, clips: list[Clip]) -> list[Split]:
    """The folds of a ``splits.json`` (``emorec split --out``), used exactly as written; every clip
    they name must be in the manifest, and each fold passes the leakage guard."""
    splits = load_splits(path)
    known = {c.clip_id for c in clips}
    for split in splits:
        missing = [i for i in (*split.train, *split.val, *split.test) if i not in known]
        if missing:
            raise ConfigError(
                f"{path}: {split.name} names {len(missing)} clip(s) not in the manifest "
                f"(e.g. {missing[0]}); was it made from another manifest?"
            )
        check_leakage(split, clips)
    return splits


def select_folds(folds: str, n: int) -> list[int]:
    if folds.strip().lower() == "all":
        return list(range(1, n + 1))
    chosen = [
        int(part) for part in folds.split(",") if part.strip()
    ]  # format checked by validate.py
    bad = [k for k in chosen if not 1 <= k <= n]
    if bad or not chosen:
        raise ConfigError(
            f"run.folds: fold {bad[0] if bad else folds} does not exist "
            f"(this split has folds 1..{n})"
        )
    return chosen


def fit_speaker_statistics(
    normalizers: dict[str, Normalizer], experiment: Experiment, clips: list[Clip]
) -> None:
    """Per-speaker mean/std from each speaker's own (unlabelled) clips: transductive."""
    for modality, normalizer in normalizers.items():
        by_speaker: dict[str, list[np.ndarray]] = {}
        for clip in clips:
            features = experiment.stores[modality].get(clip)
            if features is not None:
                features, valid = split_frame_mask(experiment.stores[modality].name, features)
                by_speaker.setdefault(clip.speaker, []).append(
                    features if valid is None else features[valid]
                )
        normalizer.per_speaker.update({spk: Normalizer._stats(a) for spk, a in by_speaker.items()})
