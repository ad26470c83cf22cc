"""Train one fold or all folds of a config into a timestamped run directory.

Run directory::

    RUN/config.yaml            resolved config        RUN/splits.json   every fold's clip ids
    RUN/fold_K/checkpoints/    best.ckpt, last.ckpt   RUN/fold_K/metrics.csv  (CSVLogger)
    RUN/fold_K/tensorboard/    TensorBoard logs       RUN/fold_K/history.npz  per-epoch arrays
    RUN/fold_K/model.safetensors + model.json         what predict/evaluate load (no pickle)
    RUN/fold_K/report/         report.json/.md + PNGs (test fold, after training)
    RUN/fold_K/heartbeat.json  live status (pid, host, epoch x of y, metrics, best so far)
    RUN/fold_K/train_summary.json  when the fold's training finished: best epoch, metrics, hardware
    RUN/summary.json/.md       mean ± std over folds (cross-validation)
    RUN/run.json               run status (running / finished / failed), pid, host, sessions
    RUN/train.log              our messages and Lightning's, one line each

The test clips of a fold are read once, after ``fit``, by the checkpoint that validation chose.

Distributed (``trainer.devices × trainer.num_nodes > 1``): Lightning DDP. Its default launcher
re-runs the same command line in one subprocess per extra device; the run directory reaches
them through ``$EMOREC_RUN_DIR`` (set it yourself for multi-node runs so every node agrees).
Each rank trains on a disjoint shard of batches (:class:`ShardedBucketBatchSampler`), metrics
are synced, and only global rank 0 writes files, exports the model and evaluates.

Resume (:func:`resume`): ``emorec train --resume RUN`` reads the run's own ``config.yaml`` and
``splits.json`` (never re-splits), skips finished folds, and continues an interrupted fold from
``fold_K/checkpoints/last.ckpt``, which holds the state after the last *complete* epoch. Only
that file inside the run directory is ever loaded, and with ``torch.load(weights_only=True)``
(tensors, numbers, strings, containers; no pickled code).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rich.console import Console

from emorec.atomic import write_json
from emorec.data import BucketBatchSampler, ClipDataset, Normalizer
from emorec.errors import ConfigError, EmorecError
from emorec.features.base import extractor_from_spec, split_frame_mask
from emorec.features.extract import extract_features, read_skipped, write_skipped
from emorec.features.store import FeatureStore
from emorec.labels import apply_label_policy, resolve_label_set
from emorec.manifest import Clip, read_manifest
from emorec.splits import Split, check_leakage, load_splits, make_splits, save_splits
from emorec.training.config import TrainConfig, load_run_config, save_config
from emorec.training.validate import validate_config

console = Console(stderr=True)
log = logging.getLogger("emorec")

RUN_DIR_ENV = "EMOREC_RUN_DIR"
RUN_STATUS = "run.json"
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "precision")


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
            specs[extractor_from_spec(spec).modality] = spec
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
        extractor = extractor_from_spec(spec)
        if extract:
            result = extract_features(clips, extractor, config.data.cache, workers=config.data.workers, progress=progress)
            skipped.extend(result.skipped)
        stores[modality] = FeatureStore.for_extractor(config.data.cache, extractor)

    if splits is None and config.split.file:
        splits = splits_from_file(config.split.file, clips)
    if splits is None:
        s = config.split
        splits = make_splits(clips, s.scheme, k=s.k, val_speakers=s.val_speakers, test_size=s.test_size, seed=s.seed)
    return Experiment(config, clips, list(class_names), stores, specs, splits, skipped)


def splits_from_file(path: str | os.PathLike, clips: list[Clip]) -> list[Split]:
    """The folds of a ``splits.json`` (``emorec split --out``), used exactly as written; every clip
    they name must be in the manifest, and each fold passes the leakage guard."""
    splits = load_splits(path)
    known = {c.clip_id for c in clips}
    for split in splits:
        missing = [i for i in (*split.train, *split.val, *split.test) if i not in known]
        if missing:
            raise ConfigError(f"{path}: {split.name} names {len(missing)} clip(s) not in the manifest "
                              f"(e.g. {missing[0]}); was it made from another manifest?")
        check_leakage(split, clips)
    return splits


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


def trainer_options(config: TrainConfig) -> dict:
    """The hardware keywords of ``lightning.Trainer`` for ``config``."""
    devices, nodes = config.trainer.devices, config.trainer.num_nodes
    world = devices * nodes if isinstance(devices, int) and devices > 0 else None
    return dict(accelerator=config.trainer.accelerator, devices=devices, num_nodes=nodes,
                strategy="ddp" if world and world > 1 else "auto", precision=config.trainer.precision)


def check_hardware(config: TrainConfig) -> None:
    """A :class:`ConfigError` now, before a run folder exists, if Lightning cannot set up the
    requested accelerator, devices and precision on this machine (a Trainer is built and dropped)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    t = config.trainer
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # its "GPU available" lines are printed by the real Trainer
    try:
        L.Trainer(**trainer_options(config), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False)
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise ConfigError(f"trainer (accelerator={t.accelerator}, devices={t.devices}, num_nodes={t.num_nodes}, "
                          f"precision={t.precision}): {str(error).splitlines()[0]}") from None
    finally:
        lightning_log.setLevel(level)


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


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train the folds ``config.run.folds`` asks for; returns the run directory.

    The run directory is new (``run.dir/NAME-TIMESTAMP``) unless ``$EMOREC_RUN_DIR`` names one
    (DDP subprocesses, multi-node and spot jobs); that folder must not hold a run already.
    """
    rank_zero = is_global_zero()
    env_dir = os.environ.get(RUN_DIR_ENV, "").strip()
    if rank_zero and env_dir and (Path(env_dir) / "config.yaml").is_file():
        raise EmorecError(f"{env_dir} already holds a run (${RUN_DIR_ENV}); continue it with "
                          f"`emorec train --resume {env_dir}`")
    splits = None
    if env_dir and not rank_zero and (Path(env_dir) / "splits.json").is_file():
        splits = load_splits(Path(env_dir) / "splits.json")  # rank 0 wrote them: never re-split
    check_hardware(config)
    experiment = prepare_experiment(config, progress=progress and rank_zero, splits=splits)
    folds = select_folds(config.run.folds, len(experiment.splits))
    if rank_zero:
        if env_dir:
            run_dir = Path(env_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(config)
        save_splits(experiment.splits, run_dir / "splits.json")  # first: config.yaml marks a resumable run
        save_config(config, run_dir / "config.yaml")
        write_skipped(experiment.skipped, run_dir / "skipped.csv")
        if experiment.skipped:
            console.print(f"[yellow]{len(experiment.skipped)} file(s) skipped; see {run_dir / 'skipped.csv'}")
        console.print(f"run directory: {run_dir}")
    else:  # a DDP worker: rank 0 owns the folder (nothing is written here without $EMOREC_RUN_DIR)
        run_dir = Path(env_dir) if env_dir else Path(config.run.dir) / f".rank-{os.getpid()}-unshared"
    return _train_folds(experiment, run_dir, folds, progress=progress, resume=False)


def resume(run_dir: str | os.PathLike, *, progress: bool = True, hardware: dict | None = None) -> Path:
    """Continue a run directory after a crash, a kill or a preemption; returns it.

    Reads ``RUN/config.yaml`` and ``RUN/splits.json``; folds with a report are kept, folds with
    an exported model are only evaluated, an interrupted fold continues from its
    ``checkpoints/last.ckpt`` (the state after its last complete epoch: no epoch is lost or run
    twice, and ``metrics.csv`` is rebuilt from the rows stored in that checkpoint), folds never
    started are trained. ``hardware`` may change ``accelerator``, ``devices``, ``num_nodes``
    and ``precision`` (a spot job recovered on another instance type); nothing else.

    Security: the only checkpoint loaded is ``RUN/fold_K/checkpoints/last.ckpt`` (and
    ``best.ckpt``) of this run, with ``torch.load(weights_only=True)``.
    """
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "splits.json").is_file():
        raise EmorecError(f"{run_dir}: not a run directory (needs config.yaml and splits.json)")
    config = load_run_config(run_dir)
    for key, value in (hardware or {}).items():
        if key not in HARDWARE_KEYS:
            raise ConfigError(f"--resume can change {', '.join(HARDWARE_KEYS)} only, not {key!r}")
        if value is not None:
            setattr(config.trainer, key, value)
    if hardware:
        validate_config(config)
    check_hardware(config)
    rank_zero = is_global_zero()
    experiment = prepare_experiment(config, progress=progress and rank_zero, splits=load_splits(run_dir / "splits.json"))
    folds = select_folds(config.run.folds, len(experiment.splits))
    if rank_zero:
        console.print(f"resuming run directory: {run_dir}")
    return _train_folds(experiment, run_dir, folds, progress=progress, resume=True)


def fold_state(fold_dir: Path) -> str:
    """``evaluated``, ``exported`` (trained, not evaluated), ``checkpoint`` (interrupted) or ``new``."""
    from emorec.inference import MODEL_META
    from emorec.training.callbacks import LAST

    if (fold_dir / MODEL_META).is_file():
        return "evaluated" if (fold_dir / "report" / "report.json").is_file() else "exported"
    return "checkpoint" if (fold_dir / "checkpoints" / LAST).is_file() else "new"


def _write_run_status(run_dir: Path, status: str, folds: list[int], **extra) -> None:
    path = run_dir / RUN_STATUS
    previous: dict = {}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    sessions = list(previous.get("sessions", []))
    now = time.time()
    if status == "running" and sessions and not sessions[-1].get("ended"):
        # the previous session vanished (SIGKILL, preemption): it ended at its last sign of life
        signs = [p.stat().st_mtime for p in [run_dir / "train.log", *run_dir.glob("fold_*/heartbeat.json")] if p.exists()]
        sessions[-1] = {**sessions[-1], "ended": max(signs, default=sessions[-1].get("started", now)), "status": "lost"}
    if status == "running":
        sessions.append({"pid": os.getpid(), "host": socket.gethostname(), "started": now, "argv": sys.argv,
                         "cwd": os.getcwd()})
    elif sessions:
        sessions[-1] = {**sessions[-1], "ended": now, "status": status}
    write_json(path, {
        "status": status, "pid": os.getpid(), "host": socket.gethostname(), "time": now,
        "started": previous.get("started", now), "folds": folds, "sessions": sessions, **extra,
    })


def _train_folds(experiment: Experiment, run_dir: Path, folds: list[int], *, progress: bool, resume: bool) -> Path:
    from emorec.evaluation.run_eval import evaluate_fold, write_run_summary
    from emorec.training.callbacks import attach_log_file, detach_log_file

    rank_zero = is_global_zero()
    given, run_dir = run_dir, Path(run_dir).absolute()
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP subprocesses started during fit() inherit it
    handler = attach_log_file(run_dir / "train.log") if rank_zero else None
    # Every rank decides from the same files, before any of them trains: the same folds train.
    states = {k: fold_state(run_dir / f"fold_{k}") if resume else "new" for k in folds}
    if rank_zero:
        _write_run_status(run_dir, "running", folds, resumed=resume)
        log.info("%s %s: folds %s%s", "resuming" if resume else "starting", run_dir, folds,
                 f" ({', '.join(f'fold {k} {v}' for k, v in states.items())})" if resume else "")
    reports = []
    try:
        pending = [k for k in folds if states[k] in ("new", "checkpoint")]
        if rank_zero and experiment.config.run.jobs > 1 and len(pending) > 1:
            from emorec.training.fold_jobs import run_fold_jobs

            run_fold_jobs(run_dir, pending, experiment.config.run.jobs)
            states.update({k: fold_state(run_dir / f"fold_{k}") for k in pending})
        for fold in folds:
            split = experiment.splits[fold - 1]
            fold_dir = run_dir / f"fold_{fold}"
            state = states[fold]
            if state == "evaluated":
                if rank_zero:
                    log.info("fold %d: already finished and evaluated; kept", fold)
                    reports.append(json.loads((fold_dir / "report" / "report.json").read_text()))
                continue
            if state in ("new", "checkpoint"):
                train_fold(experiment, split, fold_dir, progress=progress, resume=state == "checkpoint")
            if rank_zero:
                reports.append(evaluate_fold(fold_dir, experiment=experiment, split=split))
                log.info("fold %d: test UA %.4f  WA %.4f  macro-F1 %.4f", fold, reports[-1]["ua"], reports[-1]["wa"],
                         reports[-1]["macro_f1"])
        if rank_zero and len(reports) > 1:
            write_run_summary(run_dir, reports)
        if rank_zero:
            _write_run_status(run_dir, "finished", folds)
            log.info("run finished")
    except BaseException as error:
        if rank_zero:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            log.error("run %s: %s: %s", status, type(error).__name__, error)
            _write_run_status(run_dir, status, folds, error=f"{type(error).__name__}: {error}"[:500])
        raise
    finally:
        if handler is not None:
            detach_log_file(handler)
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
    return given


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
    if cfg.data.normalization in ("global", "speaker", "utterance"):
        center = "utterance" if cfg.data.normalization == "utterance" else "global"
        normalizers = {m: Normalizer.fit(raw_train.real_frames(m), center=center) for m in raw_train.modalities}
    elif cfg.data.normalization != "none":
        raise ConfigError(f"data.normalization: expected global, utterance, speaker or none, "
                          f"got {cfg.data.normalization!r}")
    speaker_norm = cfg.data.normalization == "speaker"
    if speaker_norm:
        fit_speaker_statistics(normalizers, experiment, train_clips + val_clips)
    train_set = ClipDataset(train_clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm)
    val_set = ClipDataset(val_clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm)
    if len(val_set) == 0:
        raise EmorecError(f"{split.name}: no validation clip has cached features")
    for name, dataset in (("training", train_set), ("validation", val_set)):
        if dataset.missing_modality:
            log.warning("%s: %d %s clip(s) lack a modality and train with it missing (e.g. %s: %s)", split.name,
                        len(dataset.missing_modality), name, *dataset.missing_modality[0])
    return train_set, val_set, normalizers


def fit_speaker_statistics(normalizers: dict[str, Normalizer], experiment: Experiment, clips: list[Clip]) -> None:
    """Per-speaker mean/std from each speaker's own (unlabelled) clips: transductive."""
    for modality, normalizer in normalizers.items():
        by_speaker: dict[str, list[np.ndarray]] = {}
        for clip in clips:
            features = experiment.stores[modality].get(clip)
            if features is not None:
                features, valid = split_frame_mask(experiment.stores[modality].name, features)
                by_speaker.setdefault(clip.speaker, []).append(features if valid is None else features[valid])
        normalizer.per_speaker.update({spk: Normalizer._stats(a) for spk, a in by_speaker.items()})


class ShardedBucketBatchSampler(BucketBatchSampler):
    """:class:`~emorec.data.BucketBatchSampler` that, under DDP, gives each rank a disjoint
    shard of the epoch's batches, the same number of batches on every rank.

    Single process: exactly the parent's batches. World size W > 1: the epoch's clip order
    (the same on every rank: same seed, same epoch) is sorted by jittered length and cut into
    ``W × m`` contiguous chunks of near-equal size (``m = ceil(N / (W × batch_size))``, so no
    chunk exceeds ``batch_size``; only when ``N < W × m`` is ``m`` lowered to ``N // W`` and a
    chunk may hold a clip more); the chunks are shuffled and dealt round-robin. Every clip is
    seen exactly once per epoch across all ranks, nothing is duplicated or dropped (unlike
    ``DistributedSampler``'s padding), and validation metrics stay exact. Rank and world size
    are read from ``torch.distributed`` when iterating, so the sampler can be built before
    Lightning starts the process group.
    """

    def __init__(self, lengths, batch_size: int, *, shuffle: bool = True, seed: int = 0, bucketing: bool = True,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__(lengths, batch_size, shuffle=shuffle, seed=seed, bucketing=bucketing)
        self._rank, self._world = rank, world_size

    def _world_rank(self) -> tuple[int, int]:
        if self._world is not None:
            return self._world, self._rank or 0
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _per_rank(self, world: int) -> int:
        n = len(self.lengths)
        if n < world:
            raise EmorecError(f"{n} clips cannot be shared by {world} processes: use fewer devices")
        return min(math.ceil(n / (world * self.batch_size)), n // world)

    def __len__(self) -> int:
        world, _ = self._world_rank()
        return super().__len__() if world == 1 else self._per_rank(world)

    def __iter__(self) -> Iterator[list[int]]:
        world, rank = self._world_rank()
        if world == 1:
            yield from super().__iter__()
            return
        order, rng = self._epoch_order()
        chunks = [list(map(int, c)) for c in np.array_split(np.asarray(order), world * self._per_rank(world))]
        if self.shuffle:
            rng.shuffle(chunks)
        yield from chunks[rank::world]


def train_fold(experiment: Experiment, split: Split, fold_dir: Path, *, progress: bool = True,
               resume: bool = False) -> Path:
    """Train one fold into ``fold_dir``; with ``resume`` continue from its ``last.ckpt``."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader

    from emorec.data import pad_collate
    from emorec.inference import export_model
    from emorec.training.callbacks import (BEST, LAST, AtomicCheckpointIO, BatchSamplerEpoch, EpochCheckpoint,
                                           Heartbeat, RowKeepingCSVLogger, load_checkpoint, repair_best)
    from emorec.training.losses import inverse_frequency_weights
    from emorec.training.module import EmotionClassifier

    cfg = experiment.config
    fold_dir = Path(fold_dir).absolute()
    rank_zero = is_global_zero()
    check_leakage(split, experiment.clips)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if cfg.trainer.deterministic:
        # Deterministic cuBLAS needs a fixed workspace, read when CUDA first makes a handle:
        # without it Lightning's deterministic mode stops at the first matmul on a GPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    train_set, val_set, normalizers = _datasets(experiment, split)
    labels = train_set.labels()
    num_classes = len(experiment.class_names)
    weights = inverse_frequency_weights(labels, num_classes).tolist() if cfg.loss.class_weights == "balanced" else None
    aug = cfg.augment
    dims = {m: train_set.features[m][0].shape[1] for m in train_set.modalities}
    model_kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    module = EmotionClassifier(
        model_name=cfg.model.get("name", "attn_crnn"), model_kwargs=model_kwargs, num_classes=num_classes,
        audio_dim=dims.get("audio"), video_dim=dims.get("video"),
        lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay,
        lr_factor=cfg.optim.lr_factor, lr_patience=cfg.optim.lr_patience, schedule=cfg.optim.schedule,
        warmup_epochs=cfg.optim.warmup_epochs, max_epochs=cfg.trainer.epochs,
        focal_gamma=cfg.loss.gamma if cfg.loss.name == "focal" else 0.0, class_weights=weights,
        label_smoothing=cfg.loss.label_smoothing,
        noise=aug.noise if aug.enabled else 0.0, mixup_alpha=aug.mixup if aug.enabled else 0.0,
        spec_augment=dict(time_masks=aug.spec_time_masks, freq_masks=aug.spec_freq_masks,
                          time_width=aug.spec_time_width, freq_width=aug.spec_freq_width)
        if aug.enabled and (aug.spec_time_masks or aug.spec_freq_masks) else None,
        freq_shift=aug.freq_shift if aug.enabled else 0, time_stretch=aug.time_stretch if aug.enabled else 0.0,
        modality_dropout=aug.modality_dropout if aug.enabled else 0.0,
        feature_planes=extractor_from_spec(experiment.feature_specs["audio"]).planes
        if "audio" in experiment.feature_specs else 1,
        seed=cfg.trainer.seed,
    )
    first = train_set.modalities[0]
    # Own generators: creating a loader iterator then draws nothing from the global RNG, whose
    # state the checkpoint carries (a resumed single-process run is then bit-identical).
    train_loader = DataLoader(
        train_set, collate_fn=pad_collate, num_workers=cfg.trainer.num_workers,
        generator=torch.Generator().manual_seed(cfg.trainer.seed),
        batch_sampler=ShardedBucketBatchSampler(train_set.lengths(first), cfg.trainer.batch_size, shuffle=True,
                                                seed=cfg.trainer.seed, bucketing=cfg.trainer.bucketing))
    val_loader = DataLoader(
        val_set, collate_fn=pad_collate, num_workers=cfg.trainer.num_workers,
        generator=torch.Generator().manual_seed(cfg.trainer.seed),
        batch_sampler=ShardedBucketBatchSampler(val_set.lengths(first), cfg.trainer.batch_size, shuffle=False))

    monitor = cfg.trainer.monitor  # a val/ metric (validate.py): the test fold never selects a checkpoint
    mode = "min" if monitor.endswith("loss") else "max"

    ckpt_dir = fold_dir / "checkpoints"
    last_ckpt, rows, finished = None, [], False
    if resume:
        last_ckpt = ckpt_dir / LAST
        state = load_checkpoint(last_ckpt)
        saved = state.get("callbacks", {}).get("EpochCheckpoint", {})
        done, step = int(state.get("epoch", 0)), int(state.get("global_step", 0))  # complete epochs, steps
        finished = bool(saved.get("finished"))
        best_score = saved.get("best_score")
        # the rows of the complete epochs; the next epoch's learning-rate row is logged again
        rows = [r for r in saved.get("metrics_rows", []) if finished or int(r.get("step", 0)) < step]
        if rank_zero:
            repair_best(ckpt_dir, state)
            log.info("%s: resuming after epoch %d from %s%s", split.name, done, last_ckpt,
                     " (training had finished)" if finished else "")
        del state
    elif rank_zero and (fold_dir / "tensorboard").is_dir():
        shutil.rmtree(fold_dir / "tensorboard", ignore_errors=True)  # left by a start killed in epoch 1

    csv_logger = RowKeepingCSVLogger(fold_dir, name="", version="", rows=rows)
    checkpoint = EpochCheckpoint(ckpt_dir, monitor=monitor, mode=mode, rows=csv_logger.all_rows)
    if finished:  # nothing left to fit: only the export below
        checkpoint.best_score = best_score
    beat = float(os.environ.get("EMOREC_HEARTBEAT_SECONDS") or 30)
    patience = cfg.trainer.patience if cfg.trainer.checkpoint == "best" else None
    callbacks = [Heartbeat(fold_dir, fold=split.name, monitor=monitor, mode=mode, patience=patience,
                           interval=beat),
                 LearningRateMonitor(logging_interval="epoch"), BatchSamplerEpoch(), checkpoint]
    if cfg.trainer.checkpoint == "best":  # "last" trains the full budget and keeps its final epoch
        callbacks.insert(1, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.trainer.patience))
    if cfg.trainer.ema_decay or cfg.trainer.ema_half_life_epochs:
        # An exponential moving average of the weights and of BatchNorm's running statistics,
        # updated every step: validation, both checkpoints' ``state_dict`` and the export hold
        # the average (the raw weights travel in the checkpoint for resuming).
        from lightning.pytorch.callbacks.weight_averaging import EMAWeightAveraging

        from emorec.training.callbacks import HalfLifeEMA

        callbacks.insert(0, HalfLifeEMA(cfg.trainer.ema_half_life_epochs, lambda: len(train_loader), use_buffers=True)
                         if cfg.trainer.ema_half_life_epochs else
                         EMAWeightAveraging(decay=cfg.trainer.ema_decay, use_buffers=True))
    if progress:
        from emorec.training.callbacks import OneBasedRichProgressBar

        callbacks.append(OneBasedRichProgressBar(leave=True))
    trainer = L.Trainer(  # its hardware options passed check_hardware before the run folder was made
        **trainer_options(cfg), default_root_dir=fold_dir, max_epochs=cfg.trainer.epochs,
        min_epochs=cfg.trainer.min_epochs, deterministic=cfg.trainer.deterministic, callbacks=callbacks,
        logger=[csv_logger, TensorBoardLogger(fold_dir, name="tensorboard", version="")],
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    started = time.time()
    if not finished:
        trainer.fit(module, train_loader, val_loader, ckpt_path=last_ckpt, weights_only=True)
    seconds = time.time() - started

    if trainer.is_global_zero:
        if finished:
            csv_logger.experiment._write()  # metrics.csv from the checkpoint's rows
        keep_last = cfg.trainer.checkpoint == "last" or not (ckpt_dir / BEST).is_file()
        state = load_checkpoint(ckpt_dir / (LAST if keep_last else BEST))["state_dict"]
        module.load_state_dict(state)
        summary = _read_json(fold_dir / "train_summary.json")
        history = read_epoch_metrics(fold_dir / "metrics.csv")
        if cfg.trainer.checkpoint == "last":
            best_epoch = int(summary.get("epochs_run") or trainer.current_epoch)
        else:
            best_epoch = _best_epoch(fold_dir / "metrics.csv", monitor, mode)
        # The kept model's own validation metrics: the logged epoch's (the average, with EMA),
        # or measured again after BatchNorm recalibration changed the weights' statistics.
        row = history["epoch"].index(float(best_epoch)) if best_epoch is not None and float(best_epoch) in history["epoch"] else None
        val_metrics = {k: v[row] for k, v in history.items() if k.startswith("val/") and row is not None}
        if cfg.trainer.recalibrate_bn:  # the kept weights' own statistics; the checkpoints keep the trained ones
            from emorec.training.batch_norm import recalibrate_batch_norm

            recalibrate_batch_norm(module.model, train_set, batch_size=cfg.trainer.batch_size, seed=cfg.trainer.seed)
            val_metrics = validation_metrics(module, val_set, experiment.class_names, batch_size=cfg.trainer.batch_size)
        score = val_metrics.get(monitor, checkpoint.best_score if cfg.trainer.checkpoint == "best" else None)
        from emorec.runs import ema_record, kept_summary

        steps = summary.get("train_batches_per_epoch") or len(train_loader)  # per rank, as the average counted them
        extra = {"fold": split.name, "best_epoch": best_epoch,
                 "epochs_run": summary.get("epochs_run", trainer.current_epoch),
                 "train_seconds": round(summary.get("train_seconds") or seconds, 2),
                 "train_clips": len(train_set), "monitor": monitor,
                 "best_score": float(score if score is not None else float("nan")),
                 "val_metrics": {k: float(v) for k, v in val_metrics.items()},
                 "checkpoint": cfg.trainer.checkpoint, "bn_recalibrated": cfg.trainer.recalibrate_bn,
                 "ema": ema_record(vars(cfg.trainer), steps), "world_size": trainer.world_size}
        export_model(module, fold_dir, class_names=experiment.class_names, feature_specs=experiment.feature_specs,
                     normalizers=normalizers, speaker_norm=cfg.data.normalization == "speaker", extra=extra)
        log.info("%s kept: %s", split.name, kept_summary(extra))
        write_history(fold_dir / "metrics.csv", fold_dir / "history.npz")
    return fold_dir


def validation_metrics(module, val_set: ClipDataset, class_names, *, batch_size: int = 32) -> dict[str, float]:
    """``val/loss``, ``val/acc``, ``val/ua``, ``val/macro_f1`` of ``module`` as it is now (eval mode),
    for weights changed after the last logged validation. Every validation clip, in this process
    (the training loader is sharded under DDP)."""
    from torch.utils.data import DataLoader

    from emorec.data import pad_collate
    from emorec.evaluation.metrics import classification_metrics

    val_loader = DataLoader(val_set, collate_fn=pad_collate, batch_sampler=BucketBatchSampler(
        val_set.lengths(val_set.modalities[0]), batch_size, shuffle=False))
    module.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in val_loader:
            logits.append(module.model(batch).float())
            labels.append(batch["label"])
    logits, labels = torch.cat(logits), torch.cat(labels)
    probs = logits.softmax(-1).numpy()
    metrics = classification_metrics(labels.numpy(), probs, list(class_names), bootstrap=0)
    return {"val/loss": float(module.eval_loss_fn(logits, labels)), "val/acc": metrics["wa"],
            "val/ua": metrics["ua"], "val/macro_f1": metrics["macro_f1"]}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_epoch_metrics(metrics_csv: Path) -> dict[str, list[float]]:
    """``metrics.csv`` (one row per epoch, epochs from 1) as ``{column: values}``; an older
    run's raw Lightning CSV (train and val rows apart, epochs from 0) is merged the same way."""
    from emorec.runs import epoch_columns, read_epoch_table

    table = read_epoch_table(metrics_csv)
    history = {"epoch": [float(r["epoch"]) for r in table]}
    history.update({k: [r.get(k, float("nan")) for r in table] for k in epoch_columns(table)[1:]})
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
