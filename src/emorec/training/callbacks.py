"""Lightning plumbing for long, resumable, watchable runs (checkpoints: :mod:`.checkpoints`,
heartbeat: :mod:`.heartbeat`).

* :class:`RowKeepingCSVLogger` — Lightning's ``CSVLogger`` that rewrites ``metrics.csv``
  atomically (never appends: bucket mounts refuse appends) and can start from saved rows. It
  keeps Lightning's raw rows (in memory and in every checkpoint) but writes ``metrics.csv`` as
  one row per epoch, numbered from 1: epoch, training and validation metrics, learning rate.
* :class:`HalfLifeEMA` — an EMA of the weights whose horizon is given in epochs, so a recipe
  means the same average on any corpus size; :func:`weight_average` picks the one a config asks for.
* :class:`OneBasedRichProgressBar` — the progress bar counts epochs from 1, like everything else.
* :class:`AtomicLogHandler` — ``train.log`` written by whole-file atomic rewrites (same reason).
* :class:`BatchSamplerEpoch` — tells the bucketing sampler which epoch it is drawing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.callbacks.weight_averaging import EMAWeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from emorec.atomic import write_text
from emorec.runs.epochs import epoch_columns, epoch_table
from emorec.runs.kept import ema_decay_per_step

log = logging.getLogger("emorec")


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
            description = (
                f"{description:{len(self.validation_description)}}"  # no flicker between bars
            )
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
        return {
            **super().state_dict(),
            "half_life_epochs": self.half_life_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "decay": self.decay,
        }


def weight_average(
    trainer_config: Any, *, steps_per_epoch: Callable[[], int]
) -> EMAWeightAveraging | None:
    """The exponential moving average a ``trainer`` config section asks for
    (``ema_half_life_epochs`` or ``ema_decay``), or ``None``. It averages the weights and
    BatchNorm's running statistics every step: validation, both checkpoints' ``state_dict`` and the
    export hold the average (the raw weights travel in the checkpoint for resuming)."""
    if trainer_config.ema_half_life_epochs:
        return HalfLifeEMA(trainer_config.ema_half_life_epochs, steps_per_epoch, use_buffers=True)
    if trainer_config.ema_decay:
        return EMAWeightAveraging(decay=trainer_config.ema_decay, use_buffers=True)
    return None


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
        self.setFormatter(
            _ShortNameFormatter(
                "%(asctime)s %(levelname)s %(short)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )

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
