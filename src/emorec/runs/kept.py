"""How a fold's kept weights were made, in numbers (``model.json``'s ``ema``) and in words
(:func:`kept_summary`): which epoch, the weight average and its horizon, BatchNorm recalibration,
and the kept model's own validation score."""

from __future__ import annotations

import math
from typing import Any

from emorec.runs.epochs import number as _number

_METRIC_WORDS = {
    "val/ua": "validation UA",
    "val/acc": "validation accuracy (WA)",
    "val/loss": "validation loss",
    "val/macro_f1": "validation macro-F1",
}


def metric_words(monitor: str) -> str:
    return _METRIC_WORDS.get(monitor, monitor)


def ema_half_life_epochs(decay: float, steps_per_epoch: float) -> float:
    """The horizon of a per-step decay in epochs: after it, a step's weight in the average
    halves."""
    return math.log(0.5) / math.log(decay) / steps_per_epoch


def ema_decay_per_step(half_life_epochs: float, steps_per_epoch: float) -> float:
    """The per-step decay whose average halves a step's weight after ``half_life_epochs`` epochs
    of ``steps_per_epoch`` optimisation steps: ``0.5 ** (1 / (half_life_epochs *
    steps_per_epoch))``."""
    if half_life_epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(
            f"half-life {half_life_epochs} epochs of {steps_per_epoch} steps: both must be > 0"
        )
    return 0.5 ** (1.0 / (half_life_epochs * steps_per_epoch))


def ema_record(trainer: dict[str, Any], steps_per_epoch: int | None) -> dict[str, Any] | None:
    """What ``model.json`` records about the weight average of a run's ``trainer`` section."""
    decay, half_life = (
        float(trainer.get("ema_decay") or 0.0),
        float(trainer.get("ema_half_life_epochs") or 0.0),
    )
    if not decay and not half_life:
        return None
    if half_life:
        return {
            "set_as": "ema_half_life_epochs",
            "half_life_epochs": half_life,
            "steps_per_epoch": steps_per_epoch,
            "decay_per_step": ema_decay_per_step(half_life, steps_per_epoch)
            if steps_per_epoch
            else None,
        }
    return {
        "set_as": "ema_decay",
        "decay_per_step": decay,
        "steps_per_epoch": steps_per_epoch,
        "half_life_epochs": ema_half_life_epochs(decay, steps_per_epoch)
        if steps_per_epoch
        else None,
    }


def kept_summary(meta: dict[str, Any], *, ema: dict[str, Any] | None = None) -> str:
    """How the kept weights were made, in words, from ``model.json``: e.g. ``last epoch (30 of 30),
    EMA of weights (half-life 2 epochs), BatchNorm statistics recomputed on training clips; its
    validation UA 0.477``. ``ema`` stands in for a ``model.json`` written before it recorded one."""
    epoch, run = meta.get("best_epoch"), meta.get("epochs_run")
    of = f" of {run}" if run is not None else ""
    monitor = str(meta.get("monitor") or "val/ua")
    if meta.get("checkpoint") == "last":
        parts = [f"last epoch ({epoch}{of})"]
    else:
        parts = [f"epoch {epoch}{of}, the best {metric_words(monitor)}"]
    ema = meta.get("ema", ema)
    if ema:
        if ema.get("set_as") == "ema_half_life_epochs":
            half_life = float(ema["half_life_epochs"])
            parts.append(
                f"EMA of weights (half-life {half_life:g} epoch{'' if half_life == 1 else 's'})"
            )
        elif ema.get("half_life_epochs"):
            parts.append(
                f"EMA of weights (decay {ema['decay_per_step']:g} per step: half-life "
                f"{ema['half_life_epochs']:.1f} epochs of {ema['steps_per_epoch']} steps)"
            )
        else:
            parts.append(f"EMA of weights (decay {ema['decay_per_step']:g} per step)")
    if meta.get("bn_recalibrated"):
        parts.append("BatchNorm statistics recomputed on training clips")
    score = _number(meta.get("best_score"))
    digits = 4 if monitor.endswith("loss") else 3
    return ", ".join(parts) + (
        f"; its {metric_words(monitor)} {score:.{digits}f}" if score is not None else ""
    )
