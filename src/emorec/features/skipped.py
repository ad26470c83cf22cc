"""The skipped-files CSV (``path,stage,reason``) that ``prepare`` and ``extract`` write beside
their output: every file left out, and why."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from emorec.atomic import atomic_open
from emorec.errors import SkippedFile


def read_skipped(path: str | os.PathLike) -> list[SkippedFile]:
    """The rows of a skipped-files CSV (``[]`` when there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            SkippedFile(row["path"], row["reason"], row.get("stage", ""))
            for row in csv.DictReader(handle)
        ]


def write_skipped(skipped: Iterable[SkippedFile], path: str | os.PathLike) -> Path:
    """Write ``path,stage,reason`` rows as CSV, atomically. Returns the path."""
    path = Path(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "stage", "reason"])
        for item in skipped:
            writer.writerow([item.path, item.stage, item.reason])
    return path
