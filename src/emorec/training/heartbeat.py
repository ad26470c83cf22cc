"""What a training fold says about itself while it runs, for ``emorec monitor`` and ``runs``.

:class:`Heartbeat` writes ``fold_K/heartbeat.json`` (pid, host, status, epoch x of y, latest
metrics, best so far, epoch durations) at start, every epoch, every ~30 s within an epoch, at the
end and on an exception; and ``fold_K/train_summary.json`` when training finishes. Only global
rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from emorec.atomic import write_json
from emorec.runs.epochs import number as _number
from emorec.training.callbacks import flush_log_files

log = logging.getLogger("emorec")

HEARTBEAT = "heartbeat.json"
TRAIN_SUMMARY = "train_summary.json"


# --------------------------------------------------------------------------------- heartbeat
def hardware_info(trainer: L.Trainer | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if trainer is not None:
        info.update(
            accelerator=type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
            devices=trainer.num_devices,
            num_nodes=trainer.num_nodes,
            world_size=trainer.world_size,
            strategy=type(trainer.strategy).__name__,
            precision=str(trainer.precision),
        )
    return info


def gpu_snapshot() -> list[dict[str, Any]]:
    """Memory of each visible CUDA device, from the CUDA runtime (no NVML needed)."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        with contextlib.suppress(Exception):
            free, total = torch.cuda.mem_get_info(i)
            out.append(
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "memory_used_mb": round((total - free) / 2**20),
                    "memory_total_mb": round(total / 2**20),
                    "allocated_by_torch_mb": round(torch.cuda.memory_allocated(i) / 2**20),
                }
            )
    return out


class Heartbeat(Callback):
    """Writes ``heartbeat.json`` and, at the end, ``train_summary.json`` into ``fold_dir``."""

    def __init__(
        self,
        fold_dir: str | os.PathLike,
        *,
        fold: str,
        monitor: str,
        mode: str = "max",
        patience: int | None = None,
        interval: float = 30.0,
        run_dir: str | os.PathLike | None = None,
    ):
        self.fold_dir = Path(fold_dir)
        self.fold = fold
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.interval = interval
        self.run_dir = Path(run_dir) if run_dir else self.fold_dir.parent
        # persisted through checkpoints, so a resumed fold keeps its whole history
        self.history: list[dict[str, Any]] = []  # one dict per finished epoch
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
            "status": status,
            "phase": self._phase,
            "fold": self.fold,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
            "started_at": self.started_at,
            "sessions": self.sessions,
            "epoch": len(self.history),
            "max_epochs": trainer.max_epochs,
            "current_epoch": trainer.current_epoch + 1 if status == "running" else None,
            "batch": self._batch,
            "batches": _num_batches(trainer),
            "monitor": self.monitor,
            "mode": self.mode,
            "best": best,
            "best_epoch": best_epoch,
            "patience": self.patience,
            "early_stop_wait": self._early_stop_wait(trainer),
            "train": {k: v for k, v in latest.items() if k.startswith("train/")},
            "val": {k: v for k, v in latest.items() if k.startswith("val/")},
            "lr": latest.get("lr"),
            "epoch_seconds": seconds,
            "median_epoch_seconds": statistics.median(seconds) if seconds else None,
            "train_phase_seconds": [row.get("train_phase_seconds") for row in self.history],
            "train_seconds": round(sum(seconds), 3),
            "gpu": gpu_snapshot(),
            "world_size": trainer.world_size,
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
            resumed = (
                f", resumed at epoch {trainer.current_epoch + 1} (session {self.sessions})"
                if self.sessions > 1
                else ""
            )
            log.info(
                "%s: training on %s (world size %d)%s",
                self.fold,
                type(trainer.accelerator).__name__,
                trainer.world_size,
                resumed,
            )
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

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if time.monotonic() - self._last_beat >= self.interval:
            self._write(trainer, "running")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        now = time.time()
        started = self._epoch_started or now
        row: dict[str, Any] = {
            "epoch": trainer.current_epoch + 1,
            "seconds": round(now - started, 3),
            "train_phase_seconds": round((self._train_ended or now) - started, 3),
            "batches": _num_batches(trainer),
            "finished_at": now,
        }
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
            log.info(
                "%s epoch %d/%d  %s  (%.1f s)",
                self.fold,
                row["epoch"],
                trainer.max_epochs,
                metrics,
                row["seconds"] or 0.0,
            )
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
            "fold": self.fold,
            "status": "finished",
            "monitor": self.monitor,
            "mode": self.mode,
            "best_epoch": best_epoch,
            "best_score": best,
            "metrics_at_best": {k: v for k, v in at_best.items() if "/" in k},
            "final_metrics": {
                k: v for k, v in (self.history[-1] if self.history else {}).items() if "/" in k
            },
            "epochs_run": len(self.history),
            "max_epochs": trainer.max_epochs,
            "stopped_early": stopped_early,
            "train_seconds": round(sum(seconds), 3),
            "epoch_seconds": seconds,
            "median_epoch_seconds": statistics.median(seconds) if seconds else None,
            "train_phase_seconds": [r.get("train_phase_seconds") for r in self.history],
            "train_batches_per_epoch": _num_batches(trainer),
            "sessions": self.sessions,
            "started_at": self.started_at,
            "finished_at": time.time(),
            "hardware": hardware_info(trainer),
        }
        with contextlib.suppress(OSError):
            write_json(self.fold_dir / TRAIN_SUMMARY, summary)
        # No score here: which weights are kept (and their score, after averaging or BatchNorm
        # recalibration) is decided after training; train_fold logs it as "kept: ...".
        log.info(
            "%s finished training: %d epochs (%.1f s)", self.fold, len(self.history), sum(seconds)
        )
        flush_log_files()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self._write(trainer, status, error=f"{type(exception).__name__}: {exception}"[:500])
        if trainer.is_global_zero:
            log.error("%s %s: %s: %s", self.fold, status, type(exception).__name__, exception)
            flush_log_files()


def _num_batches(trainer: L.Trainer) -> int | None:
    value = trainer.num_training_batches
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
