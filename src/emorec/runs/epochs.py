"""``metrics.csv``: one row per epoch, epochs numbered from 1, train and validation side by side.

Lightning's CSV logger writes raw interleaved rows; :func:`epoch_table` merges them, and
:func:`read_epoch_metrics` reads either form (older runs kept the raw rows) as columns.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (blank CSV cells, NaN, text)."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def epoch_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lightning's raw CSV rows as one row per epoch, epochs numbered from 1.

    Lightning logs an epoch's training and its validation metrics on separate rows (epoch counted
    from 0), and the learning-rate monitor's row, at the start of an epoch, with no epoch at all:
    such a row belongs to the epoch after the last one seen. Columns: ``epoch``, ``train/*``,
    ``val/*``, then the rest (the learning rate); ``step`` is dropped. Only epochs with a training
    or validation metric appear (an epoch that has just started has its learning rate only).
    """
    merged: dict[int, dict[str, float]] = {}
    upcoming = 0
    for row in rows:
        raw = number(row.get("epoch"))
        if raw is None:
            epoch = upcoming
        else:
            epoch = int(raw)
            upcoming = epoch + 1
        values = merged.setdefault(epoch, {})
        for key, value in row.items():
            cell = number(value)  # blank cells of the CSV read as None
            if key not in ("epoch", "step") and cell is not None:
                values[key] = cell
    return [
        {"epoch": e + 1, **merged[e]} for e in sorted(merged) if any("/" in k for k in merged[e])
    ]


def epoch_columns(table: list[dict[str, Any]]) -> list[str]:
    """``epoch``, then training metrics, validation metrics and the rest, for one row per epoch."""
    keys = {k for row in table for k in row} - {"epoch"}

    def order(key: str) -> tuple[int, str]:
        return (0 if key.startswith("train/") else 1 if key.startswith("val/") else 2, key)

    return ["epoch", *sorted(keys, key=order)]


def read_epoch_table(metrics_csv: str | os.PathLike) -> list[dict[str, Any]]:
    """``metrics.csv`` as one dict per epoch (from 1); a run written before ``metrics.csv`` held
    one row per epoch (Lightning's raw rows, with a ``step`` column) is merged the same way."""
    import csv

    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        fields = reader.fieldnames or []
    if "step" in fields:
        return epoch_table(rows)
    table = []
    for row in rows:
        epoch = number(row.get("epoch"))
        if epoch is not None:
            table.append(
                {
                    "epoch": int(epoch),
                    **{
                        k: number(v)
                        for k, v in row.items()
                        if k != "epoch" and number(v) is not None
                    },
                }
            )
    return table


def read_epoch_metrics(metrics_csv: str | os.PathLike) -> dict[str, list[float]]:
    """``metrics.csv`` as ``{column: values}``, one value per epoch (``epoch`` from 1)."""
    table = read_epoch_table(metrics_csv)
    history = {"epoch": [float(r["epoch"]) for r in table]}
    history.update({k: [r.get(k, float("nan")) for r in table] for k in epoch_columns(table)[1:]})
    return history


def monitor_mode(monitor: str) -> str:
    """``min`` for a loss, ``max`` for a score: which way ``monitor`` improves."""
    return "min" if monitor.endswith("loss") else "max"


def best_epoch(metrics_csv: str | os.PathLike, monitor: str) -> int | None:
    """The epoch (from 1) with the best ``monitor`` value, if any."""
    mode = monitor_mode(monitor)
    history = read_epoch_metrics(metrics_csv)
    values = np.array(history.get(monitor, []), dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    index = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
    return int(history["epoch"][index])


def write_history(metrics_csv: str | os.PathLike, out: Path) -> None:
    """``history.npz``: the per-epoch columns as arrays (``/`` in names becomes ``_``),
    atomically."""
    history = read_epoch_metrics(metrics_csv)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **{k.replace("/", "_"): np.asarray(v) for k, v in history.items()})
    os.replace(tmp, out)
