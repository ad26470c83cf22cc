"""``emorec predict``: probabilities per file as a table, CSV and JSON."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from emorec.atomic import atomic_open, write_json
from emorec.corpora.base import plural
from emorec.errors import EmorecError
from emorec.inference.predictor import MODEL_META, MODEL_WEIGHTS, EnsemblePredictor, Predictor
from emorec.inference.long_input import CLIP, WINDOWED
from emorec.media.audio import AUDIO_SUFFIXES
from emorec.media.video import VIDEO_SUFFIXES

#: What a folder given to ``predict`` expands to: every file the media loader decodes.
MEDIA_SUFFIXES: tuple[str, ...] = (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)


def collect_files(inputs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            files.extend(
                sorted(
                    p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()
                )
            )
        elif path.exists():
            files.append(path)
        else:
            raise EmorecError(f"{path}: no such file or folder")
    if not files:
        raise EmorecError(
            f"no audio or video files ({', '.join(MEDIA_SUFFIXES)}) under "
            f"{', '.join(map(str, inputs))}"
        )
    return files


def probability_table(rows: list[dict], names: Sequence[str], *, width: int) -> Table:
    """One row per file: every class's probability when that fits in ``width`` columns, else the
    three most likely classes in one column. File names are never cut (the CSV has every value)."""
    files = [Path(row["path"]).name for row in rows]
    title = f"emotion probabilities ({plural(len(rows), 'clip')})"
    name_width = max([len("file"), *map(len, files)])
    label_width = max([len("predicted"), *map(len, names)])
    full = name_width + label_width + sum(max(len(n), 5) for n in names) + 3 * (len(names) + 2) + 1
    table = Table(title=title)
    table.add_column("file", no_wrap=True, min_width=name_width)
    table.add_column("predicted", no_wrap=True)
    if full <= width:
        for name in names:
            table.add_column(name, justify="right", no_wrap=True)
        for file, row in zip(files, rows):
            table.add_row(file, row["predicted"], *(f"{row[n]:.3f}" for n in names))
        return table
    table.add_column("most likely", overflow="fold")
    for file, row in zip(files, rows):
        top = sorted(names, key=lambda n: -row[n])[:3]
        table.add_row(file, row["predicted"], "  ".join(f"{n} {row[n]:.2f}" for n in top))
    return table


def is_model_path(path: Path) -> bool:
    """Whether ``path`` is a trained model (a folder with model.json, or its model.safetensors)."""
    return (
        (path / MODEL_META).is_file()
        or (path.is_file() and path.name == MODEL_WEIGHTS)
        or (path.is_dir() and len(list(path.glob(f"fold_*/{MODEL_META}"))) == 1)
    )


def predict_paths(
    model: Path | None,
    inputs: Sequence[Path],
    out_path: Path | None,
    *,
    console: Console,
    err_console: Console,
    ensemble_with: Sequence[Path] = (),
    onnx: Path | None = None,
    show_segments: bool = False,
) -> list[dict]:
    """Probabilities per file from one model (``None``: the released one; ``onnx``: an ONNX file
    through onnxruntime), or averaged over ``model`` and ``ensemble_with``. Input over 6 s is
    windowed over its speech (:mod:`emorec.inference.long_input`); ``show_segments`` prints its
    segments."""
    if onnx is not None:
        from emorec.inference.onnx_runtime import OnnxPredictor

        predictor = OnnxPredictor(onnx)
    else:
        if model is None:
            from emorec.inference.released import default_model_dir

            model = default_model_dir()
        predictor = (
            EnsemblePredictor.load([model, *ensemble_with])
            if ensemble_with
            else Predictor.load(model)
        )
    names = predictor.class_names
    answers: dict = {}  # path -> WindowedAnswer of each input longer than a training clip
    results, skipped = predictor.predict_files(collect_files(inputs), answers)
    rows = [
        {
            "path": path,
            "predicted": names[int(probs.argmax())],
            **{name: float(p) for name, p in zip(names, probs)},
            "method": WINDOWED if path in answers else CLIP,
        }
        for path, probs in results
    ]
    console.print(probability_table(rows, names, width=console.width))
    for path, answer in answers.items():
        console.print(
            f"{Path(path).name}: {len(answer.segments)} speech segment(s), "
            f"{answer.speech_seconds:.1f} s of speech; its answer is the {WINDOWED}"
            + ("" if show_segments else " (--segments lists them)"),
            highlight=False,
        )
        if show_segments:
            for seg in answer.segments:
                console.print(
                    f"  {seg.start:7.2f}-{seg.end:7.2f} s  {seg.label} "
                    f"({seg.probabilities[seg.label]:.2f})",
                    highlight=False,
                )
    for item in skipped:
        err_console.print(
            f"skipped {item.path}: {item.reason}", markup=False, highlight=False, soft_wrap=True
        )
    if not rows:
        raise EmorecError(
            f"no input could be predicted: all {len(skipped)} file(s) skipped (reasons above)"
        )
    if out_path is not None:
        with atomic_open(out_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "predicted", *names, "method"])
            writer.writeheader()
            writer.writerows(rows)
        write_json(
            Path(out_path).with_suffix(".json"),
            {
                "classes": names,
                "predictions": [
                    row | {"segments": [s.to_dict() for s in answers[row["path"]].segments]}
                    if row["path"] in answers
                    else row
                    for row in rows
                ],
                "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
            },
        )
        console.print(f"wrote {out_path} and {Path(out_path).with_suffix('.json')}")
    return rows
