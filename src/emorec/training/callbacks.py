"""Lightning plumbing for long, resumable, watchable runs.

* :class:`AtomicCheckpointIO` — every ``.ckpt`` is written to a temporary file in the same
  folder, fsynced and renamed over the target. Lightning's own ``TorchCheckpointIO`` goes
  through an fsspec transaction, which writes to the *system* temp dir and then
  ``shutil.move``\\ s the file: atomic only when ``/tmp`` and the run directory share a file
  system; across devices (tmpfs ``/tmp``, a bucket mount) ``shutil.move`` copies into the
  target in place, so a kill mid-copy leaves a truncated ``last.ckpt``.
* :class:`EpochCheckpoint` — writes ``checkpoints/last.ckpt`` (and ``best.ckpt`` when the
  monitored validation metric improved) at ONE point per epoch: when the epoch is completely
  finished — train and validation metrics logged, LR scheduler stepped, early-stopping state
  updated — i.e. at the start of the next epoch and at the end of training. A resume from it
  continues with the next epoch: nothing lost, nothing repeated. (Lightning's
  ``ModelCheckpoint`` saves at ``on_validation_end``, before the epoch's train metrics are
  logged and before ``ReduceLROnPlateau`` steps; a kill in that window loses them.)
  The checkpoint also carries every metrics row logged so far, so ``metrics.csv`` is rebuilt
  from it on resume even when the CSV on disk is older or newer than the checkpoint.
* :class:`Heartbeat` — ``fold_K/heartbeat.json`` (pid, host, status, epoch x of y, latest
  metrics, best so far, epoch durations) at start, every epoch, every ~30 s within an epoch,
  at the end and on an exception; ``fold_K/train_summary.json`` when training finishes.
* :class:`RowKeepingCSVLogger` — Lightning's ``CSVLogger`` that rewrites ``metrics.csv``
  atomically (never appends: bucket mounts refuse appends) and can start from saved rows. It
  keeps Lightning's raw rows (in memory and in every checkpoint) but writes ``metrics.csv`` as
  one row per epoch, numbered from 1: epoch, training and validation metrics, learning rate.
* :class:`HalfLifeEMA` — an EMA of the weights whose horizon is given in epochs, so a recipe
  means the same average on any corpus size.
* :class:`OneBasedRichProgressBar` — the progress bar counts epochs from 1, like everything else.
* :class:`AtomicLogHandler` — ``train.log`` written by whole-file atomic rewrites (same reason).

Only global rank 0 writes files; every rank runs the hooks (saving a checkpoint is collective).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, RichProgressBar
from lightning.pytorch.callbacks.weight_averaging import EMAWeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from emorec.atomic import atomic_open, write_json, write_text
from emorec.runs import ema_decay_per_step, epoch_columns, epoch_table

log = logging.getLogger("emorec")

HEARTBEAT = "heartbeat.json"
TRAIN_SUMMARY = "train_summary.json"
LAST = "last.ckpt"
BEST = "best.ckpt"


# ---------------------------------------------------------------------------------------- io
class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then temp file + fsync + ``os.replace`` beside the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_open(Path(path), "wb") as handle:
            handle.write(buffer.getbuffer())


def copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as source, atomic_open(dst, "wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Our own checkpoints hold tensors, numbers, strings and containers only: no pickle code."""
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------- checkpoints
class EpochCheckpoint(Checkpoint):
    """``last.ckpt`` after every complete epoch; ``best.ckpt`` when ``monitor`` improved.

    Attributes kept for code written against ``ModelCheckpoint``: ``best_model_path``,
    ``last_model_path``, ``best_model_score``. ``best_epoch`` is 1-based.
    """

    def __init__(self, dirpath: str | os.PathLike, *, monitor: str, mode: str = "max",
                 rows: Callable[[], list[dict]] | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.rows = rows or (lambda: [])
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.finished = False
        self._pending: tuple[int, float | None, bool] | None = None
        self._module: L.LightningModule | None = None
        self._world_size = 1
        self._rng_to_restore: dict | None = None

    @property
    def state_key(self) -> str:
        return "EpochCheckpoint"

    @property
    def last_model_path(self) -> str:
        return str(self.dirpath / LAST)

    @property
    def best_model_path(self) -> str:
        return str(self.dirpath / BEST) if self.best_epoch is not None else ""

    @property
    def best_model_score(self) -> torch.Tensor | None:
        return None if self.best_score is None else torch.tensor(self.best_score)

    def _improves(self, score: float | None) -> bool:
        if score is None or math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        score = float(value) if value is not None else None
        self._pending = (trainer.current_epoch + 1, score, self._improves(score))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._module, self._world_size = pl_module, trainer.world_size

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            self._commit(trainer, final=False)
        elif self._rng_to_restore is not None:  # first epoch after a resume: same random draws
            _set_rng_state(self._rng_to_restore, pl_module)
        self._rng_to_restore = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit(trainer, final=True)

    def _commit(self, trainer: L.Trainer, *, final: bool) -> None:
        improved = False
        if self._pending is not None:
            epoch, score, improved = self._pending
            if improved:
                self.best_score, self.best_epoch = score, epoch
            self._pending = None
        self.finished = final
        trainer.save_checkpoint(self.dirpath / LAST, weights_only=False)  # collective: every rank calls it
        if trainer.is_global_zero and (improved or (final and self.best_epoch is None)):
            copy_atomic(self.dirpath / LAST, self.dirpath / BEST)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # At on_train_epoch_start Lightning has already counted the next epoch as "ready". Undo
        # that in the saved copy: the state then reads "K epochs complete, nothing started", and
        # a resume starts epoch K+1 from its first batch like an uninterrupted run would.
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
        for counters in (progress.get("total", {}), progress.get("current", {})):
            if counters and counters.get("ready") == counters.get("started", -1) + 1 == counters.get("processed", -1) + 1 \
                    == counters.get("completed", -1) + 1:
                counters["ready"] = counters["started"]

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "finished": self.finished, "metrics_rows": list(self.rows()),
                "world_size": self._world_size, "rng": _rng_state(self._module)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
        self.finished = bool(state_dict.get("finished", False))
        # Random states are per process; the checkpoint holds rank 0's, so they are restored
        # only for a single-process run resumed single-process (then bit-identical to no kill).
        if state_dict.get("world_size", 1) == 1 and state_dict.get("rng"):
            self._rng_to_restore = state_dict["rng"]


def _rng_state(module: Any) -> dict[str, Any]:
    import random

    import numpy as np

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(module, "_rng", None)
    if generator is not None and hasattr(generator, "bit_generator"):
        state["module"] = generator.bit_generator.state
    return state


def _set_rng_state(state: dict[str, Any], module: Any) -> None:
    import random

    import numpy as np

    with contextlib.suppress(Exception):
        torch.set_rng_state(state["torch"])
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        generator = getattr(module, "_rng", None)
        if "module" in state and generator is not None and hasattr(generator, "bit_generator"):
            generator.bit_generator.state = state["module"]


def repair_best(checkpoint_dir: Path, last: dict[str, Any]) -> None:
    """A kill between writing last.ckpt and copying it to best.ckpt leaves best.ckpt one
    improvement behind; last.ckpt records which epoch was best, so copy it over."""
    state = last.get("callbacks", {}).get("EpochCheckpoint", {})
    best_epoch = state.get("best_epoch")
    if best_epoch is None or best_epoch != last.get("epoch"):
        return
    best = checkpoint_dir / BEST
    if best.is_file():
        with contextlib.suppress(Exception):
            if load_checkpoint(best).get("epoch") == last.get("epoch"):
                return
    copy_atomic(checkpoint_dir / LAST, best)


class BatchSamplerEpoch(Callback):
    """Lightning calls ``set_epoch`` on a *sampler*, never on a custom batch sampler; this does,
    so a resumed run draws the same batches for epoch k as an uninterrupted one."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(trainer.current_epoch)


# ----------------------------------------------------------------------------------- logging
class _RowKeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, rows: list[dict]):
        self.hparams = {}
        self.metrics = []
        self.metrics_keys = []
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        from lightning.fabric.utilities.cloud_io import get_filesystem

        self._fs = get_filesystem(log_dir)
        self._fs.makedirs(log_dir, exist_ok=True)
        self.all_rows: list[dict] = [dict(r) for r in rows]
        if self.all_rows:
            self._write()

    def save(self) -> None:
        if not self.metrics:
            return
        self.all_rows.extend(self.metrics)
        self.metrics = []
        self._write()

    def _write(self) -> None:
        # Users read metrics.csv; Lightning's interleaved rows (train and validation apart, the
        # learning rate on a row of its own, epochs from 0) stay in memory and in the checkpoints.
        table = epoch_table(self.all_rows)
        keys = epoch_columns(table)
        self.metrics_keys = keys
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
        write_text(self.metrics_file_path, buffer.getvalue())


class RowKeepingCSVLogger(CSVLogger):
    """``CSVLogger`` whose rows live in memory too (they go into every checkpoint) and whose
    file is rewritten atomically on each save; ``rows`` seeds it when a run resumes."""

    def __init__(self, *args: Any, rows: list[dict] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._seed_rows = list(rows or [])

    @property
    @rank_zero_experiment
    def experiment(self) -> _RowKeepingWriter:
        if self._experiment is None:
            self._experiment = _RowKeepingWriter(self.log_dir, self._seed_rows)
        return self._experiment

    def all_rows(self) -> list[dict]:
        if self._experiment is None:
            return list(self._seed_rows)
        return list(self._experiment.all_rows) + list(self._experiment.metrics)


class OneBasedRichProgressBar(RichProgressBar):
    """Lightning's bar reads "Epoch 0/29" for the first of 30 epochs; logs, metrics.csv, plots
    and reports count from 1, so the bar does too ("Epoch 1/30")."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs}"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"  # no flicker between bars
        return description


# ------------------------------------------------------------------------------ averaging
class HalfLifeEMA(EMAWeightAveraging):
    """An exponential moving average of the weights (and buffers) whose half-life is given in
    epochs: a step's weight in the average halves after ``half_life_epochs`` epochs whatever the
    corpus size. The per-step decay, ``0.5 ** (1 / (half_life_epochs × steps per epoch))``, is
    fixed when fitting starts, from ``steps_per_epoch()`` (the training loader's length, called
    once the process group exists, so it counts this rank's share of the batches under DDP).
    A resumed run computes the same decay from the same loader; the average itself travels in
    the checkpoint."""

    def __init__(self, half_life_epochs: float, steps_per_epoch: Callable[[], int], **kwargs: Any):
        if not half_life_epochs > 0:
            raise ValueError(f"half_life_epochs must be > 0, got {half_life_epochs!r}")
        super().__init__(**kwargs)
        self.half_life_epochs = float(half_life_epochs)
        self._steps_per_epoch = steps_per_epoch
        self.steps_per_epoch: int | None = None
        self.decay: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            from torch.optim.swa_utils import get_ema_avg_fn

            self.steps_per_epoch = int(self._steps_per_epoch())
            self.decay = ema_decay_per_step(self.half_life_epochs, self.steps_per_epoch)
            self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)
        super().setup(trainer, pl_module, stage)

    def state_dict(self) -> dict[str, Any]:
        # Recorded, not restored: a checkpoint says which decay made its average; a resumed run
        # recomputes the decay from its own loader.
        return {**super().state_dict(), "half_life_epochs": self.half_life_epochs,
                "steps_per_epoch": self.steps_per_epoch, "decay": self.decay}


class _ShortNameFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.short = record.name.split(".", 1)[0]
        return super().format(record)


class AtomicLogHandler(logging.Handler):
    """Keeps the log in memory and rewrites the file atomically at most every ``interval`` s
    (and on ``flush(force=True)``/``close``). Append-free, so it works on bucket mounts."""

    def __init__(self, path: str | os.PathLike, interval: float = 2.0):
        super().__init__()
        self.path = Path(path)
        self.interval = interval
        self._lines: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            self._lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        self._written = 0.0
        self._dirty = False
        self.setFormatter(_ShortNameFormatter("%(asctime)s %(levelname)s %(short)s: %(message)s", "%Y-%m-%d %H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.extend(self.format(record).splitlines() or [""])
            self._dirty = True
            self.flush()
        except Exception:  # never let logging break training
            self.handleError(record)

    def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._written < self.interval):
            return
        with contextlib.suppress(OSError):
            write_text(self.path, "\n".join(self._lines) + "\n")
            self._written = time.monotonic()
            self._dirty = False

    def close(self) -> None:
        self.flush(force=True)
        super().close()


def attach_log_file(path: Path) -> AtomicLogHandler:
    """Send our messages and Lightning's to ``path`` (``RUN/train.log``)."""
    handler = AtomicLogHandler(path)
    for name in ("emorec", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: AtomicLogHandler) -> None:
    for name in ("emorec", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def flush_log_files() -> None:
    for handler in logging.getLogger("emorec").handlers:
        if isinstance(handler, AtomicLogHandler):
            handler.flush(force=True)


# --------------------------------------------------------------------------------- heartbeat
def hardware_info(trainer: L.Trainer | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "lightning": L.__version__,
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if trainer is not None:
        info.update(accelerator=type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
                    devices=trainer.num_devices, num_nodes=trainer.num_nodes, world_size=trainer.world_size,
                    strategy=type(trainer.strategy).__name__, precision=str(trainer.precision))
    return info


def gpu_snapshot() -> list[dict[str, Any]]:
    """Memory of each visible CUDA device, from the CUDA runtime (no NVML needed)."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        with contextlib.suppress(Exception):
            free, total = torch.cuda.mem_get_info(i)
            out.append({"index": i, "name": torch.cuda.get_device_name(i), "memory_used_mb": round((total - free) / 2**20),
                        "memory_total_mb": round(total / 2**20),
                        "allocated_by_torch_mb": round(torch.cuda.memory_allocated(i) / 2**20)})
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Heartbeat(Callback):
    """Writes ``heartbeat.json`` and, at the end, ``train_summary.json`` into ``fold_dir``."""

    def __init__(self, fold_dir: str | os.PathLike, *, fold: str, monitor: str, mode: str = "max",
                 patience: int | None = None, interval: float = 30.0, run_dir: str | os.PathLike | None = None):
        self.fold_dir = Path(fold_dir)
        self.fold = fold
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.interval = interval
        self.run_dir = Path(run_dir) if run_dir else self.fold_dir.parent
        # persisted through checkpoints, so a resumed fold keeps its whole history
        self.history: list[dict[str, Any]] = []      # one dict per finished epoch
        self.sessions = 0
        self.started_at: float | None = None
        self._epoch_started: float | None = None
        self._last_beat = 0.0
        self._batch = 0
        self._train_ended: float | None = None
        self._phase = "starting"

    @property
    def state_key(self) -> str:
        return "Heartbeat"

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "sessions": self.sessions, "started_at": self.started_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.sessions = int(state_dict.get("sessions", 0))
        self.started_at = state_dict.get("started_at")

    # -------------------------------------------------------------------------------- state
    def _best(self) -> tuple[float | None, int | None]:
        best, epoch = None, None
        for row in self.history:
            value = _number(row.get(self.monitor))
            if value is None:
                continue
            if best is None or (value < best if self.mode == "min" else value > best):
                best, epoch = value, row["epoch"]
        return best, epoch

    def _early_stop_wait(self, trainer: L.Trainer) -> int | None:
        from lightning.pytorch.callbacks import EarlyStopping

        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping):
                return int(callback.wait_count)
        return None

    def _payload(self, trainer: L.Trainer, status: str, **extra: Any) -> dict[str, Any]:
        best, best_epoch = self._best()
        seconds = [row["seconds"] for row in self.history if row.get("seconds") is not None]
        latest = self.history[-1] if self.history else {}
        return {
            "status": status, "phase": self._phase, "fold": self.fold, "pid": os.getpid(), "host": socket.gethostname(),
            "time": time.time(), "started_at": self.started_at, "sessions": self.sessions,
            "epoch": len(self.history), "max_epochs": trainer.max_epochs,
            "current_epoch": trainer.current_epoch + 1 if status == "running" else None,
            "batch": self._batch, "batches": _num_batches(trainer),
            "monitor": self.monitor, "mode": self.mode, "best": best, "best_epoch": best_epoch,
            "patience": self.patience, "early_stop_wait": self._early_stop_wait(trainer),
            "train": {k: v for k, v in latest.items() if k.startswith("train/")},
            "val": {k: v for k, v in latest.items() if k.startswith("val/")},
            "lr": latest.get("lr"),
            "epoch_seconds": seconds, "median_epoch_seconds": statistics.median(seconds) if seconds else None,
            "train_phase_seconds": [row.get("train_phase_seconds") for row in self.history],
            "train_seconds": round(sum(seconds), 3),
            "gpu": gpu_snapshot(), "world_size": trainer.world_size,
            **extra,
        }

    def _write(self, trainer: L.Trainer, status: str, **extra: Any) -> None:
        if not trainer.is_global_zero:
            return
        self._last_beat = time.monotonic()
        with contextlib.suppress(OSError):
            write_json(self.fold_dir / HEARTBEAT, self._payload(trainer, status, **extra))

    # -------------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sessions += 1
        if self.started_at is None:
            self.started_at = time.time()
        self._phase = "train"
        if trainer.is_global_zero:
            resumed = f", resumed at epoch {trainer.current_epoch + 1} (session {self.sessions})" if self.sessions > 1 else ""
            log.info("%s: training on %s (world size %d)%s", self.fold, type(trainer.accelerator).__name__,
                     trainer.world_size, resumed)
        self._write(trainer, "running")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.time()
        self._train_ended = None
        self._batch = 0
        self._phase = "train"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch = batch_idx + 1
        if time.monotonic() - self._last_beat >= self.interval:
            self._write(trainer, "running")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._phase = "validation"
        if self._train_ended is None and not trainer.sanity_checking:
            self._train_ended = time.time()  # validation runs at the end of the epoch

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if time.monotonic() - self._last_beat >= self.interval:
            self._write(trainer, "running")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        now = time.time()
        started = self._epoch_started or now
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1, "seconds": round(now - started, 3),
                               "train_phase_seconds": round((self._train_ended or now) - started, 3),
                               "batches": _num_batches(trainer), "finished_at": now}
        for key, value in trainer.callback_metrics.items():
            number = _number(value)
            if number is not None and (key.startswith("train/") or key.startswith("val/")):
                row[key] = number
        optimizers = trainer.optimizers
        if optimizers:
            row["lr"] = float(optimizers[0].param_groups[0]["lr"])
        # replace a row of the same epoch (never two rows for one epoch)
        self.history = [r for r in self.history if r.get("epoch") != row["epoch"]] + [row]
        self._phase = "epoch end"
        if trainer.is_global_zero:
            metrics = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if "/" in k)
            log.info("%s epoch %d/%d  %s  (%.1f s)", self.fold, row["epoch"], trainer.max_epochs, metrics,
                     row["seconds"] or 0.0)
            flush_log_files()
        self._write(trainer, "running")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._phase = "finished"
        stopped_early = len(self.history) < (trainer.max_epochs or 0)
        self._write(trainer, "finished", stopped_early=stopped_early)
        if not trainer.is_global_zero:
            return
        best, best_epoch = self._best()
        at_best = next((r for r in self.history if r["epoch"] == best_epoch), {})
        seconds = [r["seconds"] for r in self.history if r.get("seconds") is not None]
        summary = {
            "fold": self.fold, "status": "finished", "monitor": self.monitor, "mode": self.mode,
            "best_epoch": best_epoch, "best_score": best,
            "metrics_at_best": {k: v for k, v in at_best.items() if "/" in k},
            "final_metrics": {k: v for k, v in (self.history[-1] if self.history else {}).items() if "/" in k},
            "epochs_run": len(self.history), "max_epochs": trainer.max_epochs, "stopped_early": stopped_early,
            "train_seconds": round(sum(seconds), 3), "epoch_seconds": seconds,
            "median_epoch_seconds": statistics.median(seconds) if seconds else None,
            "train_phase_seconds": [r.get("train_phase_seconds") for r in self.history],
            "train_batches_per_epoch": _num_batches(trainer),
            "sessions": self.sessions, "started_at": self.started_at, "finished_at": time.time(),
            "hardware": hardware_info(trainer),
        }
        with contextlib.suppress(OSError):
            write_json(self.fold_dir / TRAIN_SUMMARY, summary)
        # No score here: which weights are kept (and their score, after averaging or BatchNorm
        # recalibration) is decided after training; train_fold logs it as "kept: ...".
        log.info("%s finished training: %d epochs (%.1f s)", self.fold, len(self.history), sum(seconds))
        flush_log_files()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self._write(trainer, status, error=f"{type(exception).__name__}: {exception}"[:500])
        if trainer.is_global_zero:
            log.error("%s %s: %s: %s", self.fold, status, type(exception).__name__, exception)
            flush_log_files()


def _num_batches(trainer: L.Trainer) -> int | None:
    value = trainer.num_training_batches
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
