"""Checkpoints a kill cannot corrupt, written when an epoch is complete.

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

Checkpoints are loaded with ``torch.load(weights_only=True)`` only. Only global rank 0 writes
files; every rank runs the hooks (saving a checkpoint is collective).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from emorec.atomic import atomic_open

log = logging.getLogger("emorec")

LAST = "last.ckpt"
BEST = "best.ckpt"


# ---------------------------------------------------------------------------------------- io
class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then temp file + fsync + ``os.replace`` beside the target."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
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

    def __init__(
        self,
        dirpath: str | os.PathLike,
        *,
        monitor: str,
        mode: str = "max",
        rows: Callable[[], list[dict]] | None = None,
    ):
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
        # collective: every rank calls it
        trainer.save_checkpoint(self.dirpath / LAST, weights_only=False)
        if trainer.is_global_zero and (improved or (final and self.best_epoch is None)):
            copy_atomic(self.dirpath / LAST, self.dirpath / BEST)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # At on_train_epoch_start Lightning has already counted the next epoch as "ready". Undo
        # that in the saved copy: the state then reads "K epochs complete, nothing started", and
        # a resume starts epoch K+1 from its first batch like an uninterrupted run would.
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
        for counters in (progress.get("total", {}), progress.get("current", {})):
            if (
                counters
                and counters.get("ready")
                == counters.get("started", -1) + 1
                == counters.get("processed", -1) + 1
                == counters.get("completed", -1) + 1
            ):
                counters["ready"] = counters["started"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "finished": self.finished,
            "metrics_rows": list(self.rows()),
            "world_size": self._world_size,
            "rng": _rng_state(self._module),
        }

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
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
    }
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
        if (
            "cuda" in state
            and torch.cuda.is_available()
            and len(state["cuda"]) == torch.cuda.device_count()
        ):
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
