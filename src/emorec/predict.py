"""``emorec predict``: probabilities per file as a table, CSV and JSON."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from emorec.atomic import atomic_open, write_json
from emorec.errors import EmorecError
from emorec.inference import EnsemblePredictor, Predictor
from emorec.media import AUDIO_SUFFIXES


def collect_files(inputs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            raise EmorecError(f"{path}: no such file or folder")
    if not files:
        raise EmorecError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {', '.join(map(str, inputs))}")
    return files


def predict_paths(model: Path, inputs: Sequence[Path], out_path: Path | None, *, console: Console,
                  err_console: Console, ensemble_with: Sequence[Path] = ()) -> list[dict]:
    """Probabilities per file from one model, or averaged over ``model`` and ``ensemble_with``."""
    predictor = EnsemblePredictor.load([model, *ensemble_with]) if ensemble_with else Predictor.load(model)
    names = predictor.class_names
    results, skipped = predictor.predict_files(collect_files(inputs))
    rows = [{"path": path, "predicted": names[int(probs.argmax())],
             **{name: float(p) for name, p in zip(names, probs)}} for path, probs in results]
    table = Table(title=f"emotion probabilities ({len(rows)} clip(s))")
    table.add_column("file")
    table.add_column("predicted")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(Path(row["path"]).name, row["predicted"], *(f"{row[n]:.3f}" for n in names))
    console.print(table)
    for item in skipped:
        err_console.print(f"skipped {item.path}: {item.reason}", markup=False, highlight=False)
    if out_path is not None:
        with atomic_open(out_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "predicted", *names])
            writer.writeheader()
            writer.writerows(rows)
        write_json(Path(out_path).with_suffix(".json"), {
            "classes": names, "predictions": rows,
            "skipped": [{"path": s.path, "reason": s.reason} for s in skipped]})
        console.print(f"wrote {out_path} and {Path(out_path).with_suffix('.json')}")
    return rows
