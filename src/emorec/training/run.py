"""Train one fold or all folds of a config into a timestamped run directory.

Run directory::

    RUN/config.yaml            resolved config        RUN/splits.json   every fold's clip ids
    RUN/fold_K/checkpoints/    best.ckpt, last.ckpt   RUN/fold_K/metrics.csv  (CSVLogger)
    RUN/fold_K/tensorboard/    TensorBoard logs       RUN/fold_K/history.npz  per-epoch arrays
    RUN/fold_K/model.safetensors + model.json         what predict/evaluate load (no pickle)
    RUN/fold_K/report/         report.json/.md + PNGs (test fold, after training)
    RUN/summary.json/.md       mean ± std over folds (cross-validation)

The test clips of a fold are read once, after ``fit``, by the checkpoint that validation chose.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rich.console import Console

from emorec.atomic import write_json
from emorec.data import ClipDataset, Normalizer
from emorec.errors import ConfigError, EmorecError
from emorec.features.base import create_extractor
from emorec.features.extract import extract_features, read_skipped, write_skipped
from emorec.features.store import FeatureStore
from emorec.labels import apply_label_policy, resolve_label_set
from emorec.manifest import Clip, read_manifest
from emorec.splits import Split, check_leakage, make_splits, save_splits
from emorec.training.config import TrainConfig, save_config

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

    @property
    def by_id(self) -> dict[str, Clip]:
        return {c.clip_id: c for c in self.clips}


def feature_specs(config: TrainConfig) -> dict[str, dict]:
    specs = {}
    for modality, spec in (("audio", config.data.features), ("video", config.data.video_features)):
        if spec:
            if "name" not in spec:
                raise ConfigError(f"data.{'features' if modality == 'audio' else 'video_features'}: needs a 'name'")
            specs[create_extractor(spec["name"], **{k: v for k, v in spec.items() if k != "name"}).modality] = spec
    return specs


def prepare_experiment(config: TrainConfig, *, extract: bool = True, progress: bool = True,
                       splits: list[Split] | None = None) -> Experiment:
    if not config.data.manifest:
        raise ConfigError("data.manifest is empty: point it at a manifest from `emorec prepare`")
    clips = read_manifest(config.data.manifest)
    policy = config.data.label_policy
    for clip in clips:
        clip.emotion = apply_label_policy(clip.emotion, policy)
    class_names = config.data.labels or resolve_label_set([(c.corpus, c.emotion) for c in clips], policy)
    unknown = sorted({c.emotion for c in clips} - set(class_names))
    if unknown:
        console.print(f"[yellow]leaving out clips labelled {unknown} (not in the class list {class_names})")
        clips = [c for c in clips if c.emotion in class_names]
    if len(class_names) < 2:
        raise ConfigError(f"need at least two classes, got {class_names}")

    stores, skipped = {}, read_skipped(Path(config.data.manifest).with_suffix(".skipped.csv"))
    specs = feature_specs(config)
    for modality, spec in specs.items():
        extractor = create_extractor(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
        if extract:
            result = extract_features(clips, extractor, config.data.cache, workers=config.data.workers, progress=progress)
            skipped.extend(result.skipped)
        stores[modality] = FeatureStore.for_extractor(config.data.cache, extractor)

    if splits is None:
        s = config.split
        splits = make_splits(clips, s.scheme, k=s.k, val_speakers=s.val_speakers, test_size=s.test_size, seed=s.seed)
    return Experiment(config, clips, list(class_names), stores, specs, splits, skipped)


def select_folds(folds: str, n: int) -> list[int]:
    if folds.strip().lower() == "all":
        return list(range(1, n + 1))
    try:
        chosen = [int(part) for part in folds.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"run.folds: expected 'all' or fold numbers like '1,3', got {folds!r}") from None
    bad = [k for k in chosen if not 1 <= k <= n]
    if bad or not chosen:
        raise ConfigError(f"run.folds: fold {bad[0] if bad else folds} does not exist (this split has folds 1..{n})")
    return chosen


def new_run_dir(config: TrainConfig) -> Path:
    name = config.run.name or str(config.model.get("name", "run"))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run.dir) / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = Path(config.run.dir) / f"{name}-{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train the folds ``config.run.folds`` asks for; returns the run directory."""
    experiment = prepare_experiment(config, progress=progress)
    folds = select_folds(config.run.folds, len(experiment.splits))
    run_dir = new_run_dir(config)
    save_config(config, run_dir / "config.yaml")
    save_splits(experiment.splits, run_dir / "splits.json")
    write_skipped(experiment.skipped, run_dir / "skipped.csv")
    if experiment.skipped:
        console.print(f"[yellow]{len(experiment.skipped)} file(s) skipped; see {run_dir / 'skipped.csv'}")
    console.print(f"run directory: {run_dir}")

    from emorec.evaluation.run_eval import evaluate_fold, write_run_summary

    reports = []
    for fold in folds:
        split = experiment.splits[fold - 1]
        fold_dir = run_dir / f"fold_{fold}"
        train_fold(experiment, split, fold_dir, progress=progress)
        reports.append(evaluate_fold(fold_dir, experiment=experiment, split=split))
    if len(reports) > 1:
        write_run_summary(run_dir, reports)
    return run_dir


def _datasets(experiment: Experiment, split: Split) -> tuple[ClipDataset, ClipDataset, dict[str, Normalizer]]:
    cfg = experiment.config
    by_id = experiment.by_id
    label_index = {name: i for i, name in enumerate(experiment.class_names)}
    train_clips = [by_id[i] for i in split.train if i in by_id]
    val_clips = [by_id[i] for i in split.val if i in by_id]
    raw_train = ClipDataset(train_clips, label_index, experiment.stores)
    if len(raw_train) == 0:
        raise EmorecError(f"{split.name}: no training clip has cached features")
    normalizers = {}
    if cfg.data.normalization in ("global", "speaker"):
        normalizers = {m: Normalizer.fit(raw_train.features[m]) for m in raw_train.modalities}
    elif cfg.data.normalization != "none":
        raise ConfigError(f"data.normalization: expected global, speaker or none, got {cfg.data.normalization!r}")
    speaker_norm = cfg.data.normalization == "speaker"
    if speaker_norm:
        fit_speaker_statistics(normalizers, experiment, train_clips + val_clips)
    train_set = ClipDataset(train_clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm)
    val_set = ClipDataset(val_clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm)
    if len(val_set) == 0:
        raise EmorecError(f"{split.name}: no validation clip has cached features")
    return train_set, val_set, normalizers


def fit_speaker_statistics(normalizers: dict[str, Normalizer], experiment: Experiment, clips: list[Clip]) -> None:
    """Per-speaker mean/std from each speaker's own (unlabelled) clips: transductive."""
    for modality, normalizer in normalizers.items():
        by_speaker: dict[str, list[np.ndarray]] = {}
        for clip in clips:
            features = experiment.stores[modality].get(clip)
            if features is not None:
                by_speaker.setdefault(clip.speaker, []).append(features)
        normalizer.per_speaker.update({spk: Normalizer._stats(a) for spk, a in by_speaker.items()})


def train_fold(experiment: Experiment, split: Split, fold_dir: Path, *, progress: bool = True) -> Path:
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from torch.utils.data import DataLoader

    from emorec.data import BucketBatchSampler, pad_collate
    from emorec.inference import export_model
    from emorec.training.losses import inverse_frequency_weights
    from emorec.training.module import EmotionClassifier

    cfg = experiment.config
    check_leakage(split, experiment.clips)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    train_set, val_set, normalizers = _datasets(experiment, split)
    labels = train_set.labels()
    num_classes = len(experiment.class_names)
    weights = inverse_frequency_weights(labels, num_classes).tolist() if cfg.loss.class_weights == "balanced" else None
    if cfg.loss.class_weights not in ("none", "balanced"):
        raise ConfigError(f"loss.class_weights: expected none or balanced, got {cfg.loss.class_weights!r}")
    if cfg.loss.name not in ("ce", "focal"):
        raise ConfigError(f"loss.name: expected ce or focal, got {cfg.loss.name!r}")
    aug = cfg.augment
    dims = {m: train_set.features[m][0].shape[1] for m in train_set.modalities}
    model_kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    module = EmotionClassifier(
        model_name=cfg.model.get("name", "attn_crnn"), model_kwargs=model_kwargs, num_classes=num_classes,
        audio_dim=dims.get("audio"), video_dim=dims.get("video"),
        lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay,
        lr_factor=cfg.optim.lr_factor, lr_patience=cfg.optim.lr_patience,
        focal_gamma=cfg.loss.gamma if cfg.loss.name == "focal" else 0.0, class_weights=weights,
        label_smoothing=cfg.loss.label_smoothing,
        noise=aug.noise if aug.enabled else 0.0, mixup_alpha=aug.mixup if aug.enabled else 0.0,
        spec_augment=dict(time_masks=aug.spec_time_masks, freq_masks=aug.spec_freq_masks,
                          time_width=aug.spec_time_width, freq_width=aug.spec_freq_width)
        if aug.enabled and (aug.spec_time_masks or aug.spec_freq_masks) else None,
        freq_shift=aug.freq_shift if aug.enabled else 0,
        time_stretch=aug.time_stretch if aug.enabled else 0.0,
        seed=cfg.trainer.seed,
    )
    first = train_set.modalities[0]
    train_loader = DataLoader(
        train_set, collate_fn=pad_collate, num_workers=cfg.trainer.num_workers,
        batch_sampler=BucketBatchSampler(train_set.lengths(first), cfg.trainer.batch_size, shuffle=True,
                                         seed=cfg.trainer.seed, bucketing=cfg.trainer.bucketing))
    val_loader = DataLoader(
        val_set, collate_fn=pad_collate, num_workers=cfg.trainer.num_workers,
        batch_sampler=BucketBatchSampler(val_set.lengths(first), cfg.trainer.batch_size, shuffle=False))

    monitor = cfg.trainer.monitor
    if not monitor.startswith("val/"):
        raise ConfigError(f"trainer.monitor must be a validation metric (val/...), got {monitor!r}: the test fold never selects a checkpoint")
    mode = "min" if monitor.endswith("loss") else "max"
    checkpoint = ModelCheckpoint(dirpath=fold_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                 save_last=True, auto_insert_metric_name=False)
    callbacks = [checkpoint, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.trainer.patience),
                 LearningRateMonitor(logging_interval="epoch")]
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    trainer = L.Trainer(
        default_root_dir=fold_dir, max_epochs=cfg.trainer.epochs, accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes, precision=cfg.trainer.precision,
        deterministic=cfg.trainer.deterministic, callbacks=callbacks,
        logger=[CSVLogger(fold_dir, name="", version="", flush_logs_every_n_steps=10), TensorBoardLogger(fold_dir, name="tensorboard", version="")],
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    started = time.time()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.time() - started

    if trainer.is_global_zero:
        best_path = checkpoint.best_model_path or checkpoint.last_model_path
        state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        best_epoch = _best_epoch(fold_dir / "metrics.csv", monitor, mode)
        export_model(module, fold_dir, class_names=experiment.class_names, feature_specs=experiment.feature_specs,
                     normalizers=normalizers, speaker_norm=cfg.data.normalization == "speaker",
                     extra={"fold": split.name, "best_epoch": best_epoch, "epochs_run": trainer.current_epoch,
                            "train_seconds": round(seconds, 2), "train_clips": len(train_set),
                            "monitor": monitor, "best_score": float(checkpoint.best_model_score or float("nan"))})
        write_history(fold_dir / "metrics.csv", fold_dir / "history.npz")
    return fold_dir


def read_epoch_metrics(metrics_csv: Path) -> dict[str, list[float]]:
    """Lightning's CSV has train and val rows per epoch; merge them into one row per epoch."""
    rows: dict[int, dict[str, float]] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    rows.setdefault(epoch, {})[key] = float(value)
    keys = sorted({k for r in rows.values() for k in r})
    epochs = sorted(rows)
    history = {"epoch": [float(e + 1) for e in epochs]}
    history.update({k: [rows[e].get(k, float("nan")) for e in epochs] for k in keys})
    return history


def _best_epoch(metrics_csv: Path, monitor: str, mode: str) -> int | None:
    history = read_epoch_metrics(metrics_csv)
    values = np.array(history.get(monitor, []), dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    index = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
    return int(history["epoch"][index])


def write_history(metrics_csv: Path, out: Path) -> None:
    history = read_epoch_metrics(metrics_csv)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **{k.replace("/", "_"): np.asarray(v) for k, v in history.items()})
    os.replace(tmp, out)
