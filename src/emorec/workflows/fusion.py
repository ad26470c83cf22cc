"""Multimodal fusion from two separately trained models (seed 000's workflow).

1. Train an audio model and a video model separately, **on the same split** (same manifest,
   same split settings: ``splits.json`` must be identical, else test clips of one would be
   training clips of the other).
2. ``emorec fuse AUDIO_RUN/fold_K VIDEO_RUN/fold_K`` extracts both models' penultimate
   embeddings (``model.embed``) for every clip into the feature cache, through the ``embed``
   feature extractor: a :class:`~emorec.features.store.FeatureStore` named
   ``embed-<model>-<hash>`` whose config holds the source model's fingerprint (a hash of its
   ``model.safetensors`` and ``model.json``), one ``(1, D)`` array per clip.
3. It trains the fusion classifier (``embedding_fusion`` with ``"precomputed"`` branches:
   LayerNorm -> Dense -> head over the concatenated embeddings) on them with the normal training
   loop, on the branches' split and fold, and evaluates it on that fold's test clips.
4. With ``--finetune`` it builds the end-to-end ``embedding_fusion`` model (the two branch
   architectures + the fusion head), initialised from both branch checkpoints and from the
   classifier of step 3, and fine-tunes it end to end on the original features.

Every step writes an ordinary run directory (``config.yaml``, ``splits.json``, ``fold_K/...``),
so ``emorec evaluate`` and ``emorec predict`` work on it as on any run.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from emorec.errors import EmorecError, LeakageError
from emorec.inference.model_files import ModelMeta
from emorec.runs.folder import fold_number

__all__ = ["FuseResult", "check_same_split", "fuse"]


# -- the workflow ----------------------------------------------------------------------------------
@dataclass
class Branch:
    role: str  # "audio" or "video"
    fold_dir: Path
    run_dir: Path
    meta: dict
    config: Any  # TrainConfig of the branch run
    splits: list

    @property
    def fold_number(self) -> int:
        return fold_number(self.fold_dir)


@dataclass
class FuseResult:
    fusion_run: Path
    finetune_run: Path | None = None
    # one per model: name, val UA, test UA/WA/F1
    rows: list[dict[str, Any]] = field(default_factory=list)


def _load_branch(path: str | os.PathLike, role: str) -> Branch:
    from emorec.inference.predictor import find_model_dir
    from emorec.corpora.splits import load_splits
    from emorec.training.config import load_run_config

    fold_dir = find_model_dir(path)
    run_dir = fold_dir.parent
    if not fold_dir.name.startswith("fold_") or not (run_dir / "splits.json").is_file():
        raise EmorecError(
            f"{fold_dir}: not a fold of a training run (expected RUN/fold_K with RUN/splits.json)"
        )
    meta = ModelMeta.read(fold_dir)
    reads = sorted(meta.features)
    if reads != [role]:
        raise EmorecError(
            f"{fold_dir}: the {role} model must read {role} features only; it reads {reads}"
        )
    if meta.get("speaker_norm"):
        raise EmorecError(f"{fold_dir}: per-speaker normalisation is not supported by fuse")
    return Branch(
        role,
        fold_dir,
        run_dir,
        meta,
        load_run_config(run_dir),
        load_splits(run_dir / "splits.json"),
    )


def check_same_split(audio: Branch, video: Branch) -> None:
    """Refuse (LeakageError) unless both branches were trained on identical splits and the same
    fold."""
    a = [s.to_dict() for s in audio.splits]
    v = [s.to_dict() for s in video.splits]
    if a != v:
        raise LeakageError(
            f"{audio.run_dir / 'splits.json'} and {video.run_dir / 'splits.json'} "
            "differ: the two models were "
            "trained on different splits, so test clips of one may be training clips of the other; "
            "train both with the same manifest and split settings"
        )
    if audio.fold_number != video.fold_number or audio.meta.get("fold") != video.meta.get("fold"):
        raise LeakageError(
            f"{audio.fold_dir} and {video.fold_dir} are different folds; fuse "
            "one fold with the same fold"
        )
    if audio.meta["class_names"] != video.meta["class_names"]:
        raise EmorecError(
            f"the models' classes differ: {audio.meta['class_names']} vs "
            f"{video.meta['class_names']}"
        )


def _split_signature(splits: list) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "train": sorted(s.train), "val": sorted(s.val), "test": sorted(s.test)}
        for s in splits
    ]


def train_on_split(config, splits: list, fold: int, *, progress: bool = True) -> Path:
    """:func:`emorec.workflows.crossval.train` of fold number ``fold``, refusing (LeakageError)
    unless the config splits the data exactly as ``splits`` (checked before training and again in
    the new run's ``splits.json``)."""
    from emorec.corpora.splits import load_splits
    from emorec.workflows.crossval import train
    from emorec.training.experiment import prepare_experiment

    config.run.folds = str(fold)
    expected = _split_signature(splits)
    derived = prepare_experiment(config, extract=False, progress=False).splits
    if _split_signature(derived) != expected:
        raise LeakageError(
            "the fusion run would not reproduce the branches' split (were data.manifest or the "
            "split settings of the branch runs changed?); nothing was trained"
        )
    run_dir = train(config, progress=progress)
    if _split_signature(load_splits(run_dir / "splits.json")) != expected:
        raise LeakageError(
            f"{run_dir} was trained on another split than the branches; do not use it"
        )
    return run_dir


def _summary_row(name: str, fold_dir: Path) -> dict[str, Any]:
    from emorec.workflows.compare import read_fold

    try:
        fold = read_fold(fold_dir)
    except (EmorecError, OSError, ValueError, KeyError):
        nan = float("nan")
        return {
            "model": name,
            "dir": str(fold_dir),
            "val_ua": nan,
            "test_ua": nan,
            "test_wa": nan,
            "test_macro_f1": nan,
        }
    return {
        "model": name,
        "dir": str(fold_dir),
        "val_ua": fold["val"]["ua"],
        **{f"test_{k}": v for k, v in fold["test"].items()},
    }


def _forget_init(fold_dir: Path) -> None:
    """The exported weights are complete: drop ``init_from`` from model.json so the model loads
    without the source runs."""
    meta = ModelMeta.read(fold_dir)
    if meta.model_kwargs.get("init_from"):
        meta.record["initialised_from"] = meta.model_kwargs["init_from"]
        meta.model_kwargs["init_from"] = None
        meta.write(fold_dir)


def fuse(
    audio_fold: str | os.PathLike,
    video_fold: str | os.PathLike,
    *,
    finetune: bool = False,
    hidden: int = 128,
    dropout: float = 0.3,
    epochs: int = 30,
    lr: float = 1e-3,
    finetune_epochs: int | None = None,
    finetune_lr: float = 1e-4,
    freeze_branches: bool = False,
    batch_size: int | None = None,
    patience: int | None = None,
    cache: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FuseResult:
    """The seed-000 workflow on one fold (see the module doc). Returns the run directories and a
    summary row per model (the two branches, the fusion classifier, the fine-tuned model)."""
    audio = _load_branch(audio_fold, "audio")
    video = _load_branch(video_fold, "video")
    check_same_split(audio, video)
    fold = audio.fold_number
    base = copy.deepcopy(audio.config)
    if run_dir is not None:
        base.run.dir = str(run_dir)
    if cache is not None:
        base.data.cache = str(cache)
    if batch_size is not None:
        base.trainer.batch_size = batch_size
    if patience is not None:
        base.trainer.patience = patience
    names = f"{audio.meta['model']}+{video.meta['model']}"

    # 1-3: cached embeddings -> fusion classifier
    stage1 = copy.deepcopy(base)
    stage1.data.features = {
        "name": "embed",
        "model_dir": str(audio.fold_dir.resolve()),
        "modality": "audio",
        "cache": str(Path(audio.config.data.cache).resolve()),
    }
    stage1.data.video_features = {
        "name": "embed",
        "model_dir": str(video.fold_dir.resolve()),
        "modality": "video",
        "cache": str(Path(video.config.data.cache).resolve()),
    }
    stage1.data.normalization = "none"  # the fusion head's LayerNorm scales the embeddings
    stage1.model = {
        "name": "embedding_fusion",
        "audio_model": "precomputed",
        "video_model": "precomputed",
        "fusion_hidden": hidden,
        "dropout": dropout,
    }
    stage1.augment.enabled = False
    stage1.optim.lr = lr
    stage1.trainer.epochs = epochs
    stage1.trainer.bucketing = False  # every clip is one frame
    stage1.run.name = f"fuse-{names}"
    fusion_run = train_on_split(stage1, audio.splits, fold, progress=progress)
    fusion_fold = fusion_run / f"fold_{fold}"
    result = FuseResult(fusion_run=fusion_run)

    # 4: end-to-end model from both checkpoints and the fusion classifier
    if finetune:
        if audio.config.data.normalization != video.config.data.normalization:
            raise EmorecError(
                f"the branches were trained with different data.normalization "
                f"({audio.config.data.normalization} vs {video.config.data.normalization})"
            )
        stage2 = copy.deepcopy(base)
        stage2.data.features = dict(audio.meta["features"]["audio"])
        stage2.data.video_features = dict(video.meta["features"]["video"])
        stage2.data.normalization = audio.config.data.normalization
        stage2.model = {
            "name": "embedding_fusion",
            "audio_model": audio.meta["model"],
            "audio_kwargs": audio.meta["model_kwargs"],
            "video_model": video.meta["model"],
            "video_kwargs": video.meta["model_kwargs"],
            "fusion_hidden": hidden,
            "dropout": dropout,
            "freeze_branches": freeze_branches,
            "init_from": {
                "audio": str(audio.fold_dir.resolve()),
                "video": str(video.fold_dir.resolve()),
                "fusion": str(fusion_fold.resolve()),
            },
        }
        stage2.optim.lr = finetune_lr
        stage2.trainer.epochs = finetune_epochs if finetune_epochs is not None else epochs
        stage2.run.name = f"finetune-{names}"
        result.finetune_run = train_on_split(stage2, audio.splits, fold, progress=progress)
        _forget_init(result.finetune_run / f"fold_{fold}")

    result.rows = [
        _summary_row(f"audio: {audio.meta['model']}", audio.fold_dir),
        _summary_row(f"video: {video.meta['model']}", video.fold_dir),
        _summary_row("fusion classifier (cached embeddings)", fusion_fold),
    ]
    if result.finetune_run is not None:
        result.rows.append(
            _summary_row("fine-tuned end to end", result.finetune_run / f"fold_{fold}")
        )
    return result
