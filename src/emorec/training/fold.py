"""Train one fold of an experiment into its folder, read top-down by :func:`train_fold`.

Fold directory::

    fold_K/checkpoints/        best.ckpt, last.ckpt (atomic, after every complete epoch)
    fold_K/metrics.csv         one row per epoch (from 1): train/validation metrics, learning rate
    fold_K/history.npz         the same columns as arrays
    fold_K/tensorboard/        TensorBoard logs
    fold_K/heartbeat.json      live status (pid, host, epoch x of y, metrics)
    fold_K/train_summary.json  when training finished: epochs, metrics, hardware
    fold_K/model.safetensors + model.json   the kept weights and how to use them (no pickle)

The test clips are never read here: evaluation runs after training, on the kept weights.

Distributed (``trainer.devices × trainer.num_nodes > 1``): Lightning DDP; each rank trains on a
disjoint shard of batches (:class:`~emorec.data.ShardedBucketBatchSampler`), metrics are synced,
and only global rank 0 writes files and exports the model.

Resume: ``resume=True`` continues from ``checkpoints/last.ckpt``, the state after the last
*complete* epoch, loaded with ``torch.load(weights_only=True)``; ``metrics.csv`` is rebuilt from
the rows that checkpoint carries, so no epoch is lost or logged twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from emorec.data import (
    ClipDataset,
    Normalizer,
    balanced_weights,
    corpus_class_masks,
    make_loaders,
)
from emorec.runs.epochs import monitor_mode
from emorec.errors import ConfigError, EmorecError
from emorec.training.experiment import Experiment, fit_speaker_statistics
from emorec.features.base import extractor_from_spec
from emorec.corpora.splits import Split, check_leakage
from emorec.training.config import TrainConfig
from emorec.training.kept_weights import keep_and_export

log = logging.getLogger("emorec")


def train_fold(
    experiment: Experiment,
    split: Split,
    fold_dir: Path,
    *,
    progress: bool = True,
    resume: bool = False,
) -> Path:
    """Train one fold into ``fold_dir``; with ``resume`` continue from its ``last.ckpt``."""
    cfg = experiment.config
    fold_dir = Path(fold_dir).absolute()
    check_leakage(split, experiment.clips)
    seed_and_threads(cfg)
    train_set, val_set, normalizers = fold_datasets(experiment, split)
    module = classifier_for(experiment, train_set)
    weights = (
        balanced_weights(train_set.clips, cfg.data.balance_power)
        if cfg.data.balance_power < 1
        else None
    )
    train_loader, val_loader = make_loaders(
        train_set,
        val_set,
        batch_size=cfg.trainer.batch_size,
        seed=cfg.trainer.seed,
        bucketing=cfg.trainer.bucketing,
        num_workers=cfg.trainer.num_workers,
        weights=weights,
        draws=cfg.data.epoch_draws or None,
    )
    state = resume_state(fold_dir, split.name) if resume else fresh_state(fold_dir)
    trainer, checkpoint = fold_trainer(cfg, split, fold_dir, state, train_loader, progress=progress)
    started = time.time()
    if not state.finished:
        trainer.fit(module, train_loader, val_loader, ckpt_path=state.last_ckpt, weights_only=True)
    if trainer.is_global_zero:
        keep_and_export(
            experiment,
            split,
            fold_dir,
            module,
            trainer,
            checkpoint,
            train_set,
            val_set,
            normalizers,
            steps_per_epoch=len(train_loader),
            seconds=time.time() - started,
            rewrite_metrics=state.finished,
        )
    return fold_dir


def is_global_zero() -> bool:
    """Whether this process is global rank 0, before or after the process group exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").strip():
            return int(os.environ[key]) == 0
    node = int(os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or 0)
    return node == 0 and int(os.environ.get("LOCAL_RANK") or 0) == 0


def trainer_options(config: TrainConfig) -> dict:
    """The hardware keywords of ``lightning.Trainer`` for ``config``."""
    devices, nodes = config.trainer.devices, config.trainer.num_nodes
    world = devices * nodes if isinstance(devices, int) and devices > 0 else None
    return dict(
        accelerator=config.trainer.accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy="ddp" if world and world > 1 else "auto",
        precision=config.trainer.precision,
    )


def seed_and_threads(config: TrainConfig) -> None:
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    if config.trainer.deterministic:
        # Deterministic cuBLAS needs a fixed workspace, read when CUDA first makes a handle:
        # without it Lightning's deterministic mode stops at the first matmul on a GPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)


def fold_datasets(
    experiment: Experiment, split: Split
) -> tuple[ClipDataset, ClipDataset, dict[str, Normalizer]]:
    """Training and validation clips of ``split`` with normalisers fitted on training clips only
    (per-speaker statistics, when asked for, from each speaker's own clips: transductive)."""
    cfg = experiment.config
    by_id = experiment.by_id
    label_index = {name: i for i, name in enumerate(experiment.class_names)}
    train_clips = [by_id[i] for i in split.train if i in by_id]
    val_clips = [by_id[i] for i in split.val if i in by_id]
    masks = corpus_class_masks(experiment.clips, label_index) if cfg.loss.corpus_classes else None
    corpora = (
        {c: i for i, c in enumerate(sorted({c.corpus for c in train_clips}))}
        if cfg.loss.corpus_adversary
        else None
    )
    speaker_norm = cfg.data.normalization == "speaker"
    train_set = ClipDataset(
        repeated(train_clips, cfg.data.corpus_repeats, split.name),
        label_index,
        experiment.stores,
        speaker_norm=speaker_norm,
        transforms=condition_transforms(experiment),
        seed=cfg.trainer.seed,
        corpus_classes=masks,
        corpus_index=corpora,
        views=experiment.view_stores,
    )
    if len(train_set) == 0:
        raise EmorecError(f"{split.name}: no training clip has cached features")
    # fitted on the raw frames of each training clip once (a repeated clip counts once), then set:
    # the one dataset is read for its statistics and for training, never built twice
    normalizers = {
        m: fit_normalizer(experiment, m, train_set.real_frames(m, once=True))
        for m in train_set.modalities
        if cfg.data.normalization != "none"
    }
    if speaker_norm:
        fit_speaker_statistics(normalizers, experiment, train_clips + val_clips)
    train_set.normalizers = normalizers
    val_set = ClipDataset(
        val_clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm
    )
    if len(val_set) == 0:
        raise EmorecError(f"{split.name}: no validation clip has cached features")
    for name, dataset in (("training", train_set), ("validation", val_set)):
        if dataset.missing_modality:
            log.warning(
                "%s: %d %s clip(s) lack a modality and train with it missing (e.g. %s: %s)",
                split.name,
                len(dataset.missing_modality),
                name,
                *dataset.missing_modality[0],
            )
    return train_set, val_set, normalizers


def repeated(clips: list, repeats: dict[str, int], where: str) -> list:
    """``clips`` with each clip of a corpus in ``repeats`` listed that many times (an epoch then
    draws it that often); normalisation statistics are fitted before, on each clip once."""
    if not repeats:
        return clips
    present = {c.corpus for c in clips}
    for corpus, times in repeats.items():
        if corpus not in present:
            raise ConfigError(
                f"data.corpus_repeats: {where} has no training clip of corpus {corpus!r} "
                f"(its corpora: {', '.join(sorted(present))})"
            )
        if times < 1:
            raise ConfigError(
                f"data.corpus_repeats.{corpus}: expected a whole number of draws >= 1, got {times}"
            )
    return [c for c in clips for _ in range(repeats.get(c.corpus, 1))]


def fit_normalizer(experiment: Experiment, modality: str, frames: list) -> Normalizer:
    """The modality's normaliser of ``data.normalization``, fitted on training frames. ``level``
    centres a log-mel's dB values (not its deltas) per clip; other features are standardised
    globally."""
    normalization = experiment.config.data.normalization
    if normalization == "level" and modality == "audio":
        extractor = extractor_from_spec(experiment.feature_specs[modality])
        if extractor.name != "logmel":
            raise ConfigError(
                "data.normalization=level centres log-mel dB values; "
                f"features are {extractor.name!r}"
            )
        return Normalizer.fit(
            frames, center="level", level_columns=extractor.n_features // extractor.planes
        )
    return Normalizer.fit(frames, center="utterance" if normalization == "utterance" else "global")


def condition_transforms(experiment: Experiment) -> dict:
    """``{"audio": MelConditions}`` when the recipe simulates recording conditions, else ``{}``."""
    a = experiment.config.augment
    settings = {
        "gain_db": a.gain_db,
        "band_limit": a.band_limit,
        "additive_noise": a.additive_noise,
        "snr_db": tuple(a.snr_db),
        "reverb": a.reverb,
    }
    if (
        not a.enabled
        or not any(v for k, v in settings.items() if k != "snr_db")
        or "audio" not in experiment.feature_specs
    ):
        return {}
    from emorec.features.conditions import MelConditions

    return {
        "audio": MelConditions.for_extractor(
            extractor_from_spec(experiment.feature_specs["audio"]), **settings
        )
    }


def classifier_for(experiment: Experiment, train_set: ClipDataset):
    """The LightningModule of the experiment's config, sized for ``train_set``'s features."""
    from emorec.training.losses import inverse_frequency_weights
    from emorec.training.module import EmotionClassifier

    cfg = experiment.config
    num_classes = len(experiment.class_names)
    weights = (
        inverse_frequency_weights(train_set.labels(), num_classes).tolist()
        if cfg.loss.class_weights == "balanced"
        else None
    )
    audio = experiment.feature_specs.get("audio")
    return EmotionClassifier.from_config(
        cfg,
        num_classes=num_classes,
        dims={m: train_set.features[m][0].shape[1] for m in train_set.modalities},
        class_weights=weights,
        feature_planes=extractor_from_spec(audio).planes if audio else 1,
        num_corpora=len(train_set.corpus_index),
    )


@dataclass
class FoldState:
    """Where a fold's training starts: from scratch, or after the last complete epoch of
    ``last_ckpt``."""

    last_ckpt: Path | None = None
    rows: list[dict] = field(default_factory=list)  # metrics rows of the complete epochs
    finished: bool = False  # training had finished: only the export is left
    best_score: float | None = None


def fresh_state(fold_dir: Path) -> FoldState:
    if is_global_zero() and (fold_dir / "tensorboard").is_dir():
        # left by a start killed in epoch 1
        shutil.rmtree(fold_dir / "tensorboard", ignore_errors=True)
    return FoldState()


def resume_state(fold_dir: Path, name: str) -> FoldState:
    from emorec.training.checkpoints import LAST, load_checkpoint, repair_best

    last = fold_dir / "checkpoints" / LAST
    state = load_checkpoint(last)
    saved = state.get("callbacks", {}).get("EpochCheckpoint", {})
    done, step = (
        int(state.get("epoch", 0)),
        int(state.get("global_step", 0)),
    )  # complete epochs, steps
    finished = bool(saved.get("finished"))
    # the rows of the complete epochs; the next epoch's learning-rate row is logged again
    rows = [r for r in saved.get("metrics_rows", []) if finished or int(r.get("step", 0)) < step]
    if is_global_zero():
        repair_best(last.parent, state)
        log.info(
            "%s: resuming after epoch %d from %s%s",
            name,
            done,
            last,
            " (training had finished)" if finished else "",
        )
    return FoldState(last, rows, finished, saved.get("best_score"))


def fold_trainer(
    cfg: TrainConfig,
    split: Split,
    fold_dir: Path,
    state: FoldState,
    train_loader,
    *,
    progress: bool,
):
    """``(lightning.Trainer, EpochCheckpoint)`` with the fold's loggers and callbacks."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    from emorec.training.callbacks import BatchSamplerEpoch, RowKeepingCSVLogger, weight_average
    from emorec.training.checkpoints import AtomicCheckpointIO, EpochCheckpoint
    from emorec.training.heartbeat import Heartbeat

    # a val/ metric (validate.py): the test fold never selects a checkpoint
    monitor = cfg.trainer.monitor
    mode = monitor_mode(monitor)
    csv_logger = RowKeepingCSVLogger(fold_dir, name="", version="", rows=state.rows)
    checkpoint = EpochCheckpoint(
        fold_dir / "checkpoints", monitor=monitor, mode=mode, rows=csv_logger.all_rows
    )
    if state.finished:
        checkpoint.best_score = state.best_score
    beat = float(os.environ.get("EMOREC_HEARTBEAT_SECONDS") or 30)
    # "last" trains the full budget and keeps its final epoch
    best = cfg.trainer.checkpoint == "best"
    callbacks = [
        Heartbeat(
            fold_dir,
            fold=split.name,
            monitor=monitor,
            mode=mode,
            patience=cfg.trainer.patience if best else None,
            interval=beat,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        BatchSamplerEpoch(),
        checkpoint,
    ]
    if best:
        callbacks.insert(
            1, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.trainer.patience)
        )
    average = weight_average(cfg.trainer, steps_per_epoch=lambda: len(train_loader))
    if average is not None:
        callbacks.insert(0, average)
    if progress:
        from emorec.training.callbacks import OneBasedRichProgressBar

        callbacks.append(OneBasedRichProgressBar(leave=True))
    trainer = (
        L.Trainer(  # its hardware options passed check_hardware before the run folder was made
            **trainer_options(cfg),
            default_root_dir=fold_dir,
            max_epochs=cfg.trainer.epochs,
            min_epochs=cfg.trainer.min_epochs,
            deterministic=cfg.trainer.deterministic,
            callbacks=callbacks,
            logger=[csv_logger, TensorBoardLogger(fold_dir, name="tensorboard", version="")],
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
        )
    )
    return trainer, checkpoint
