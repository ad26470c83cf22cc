"""Per-clip probabilities of a benchmark run, committed next to its results.

Run directories (fold models) live in the gitignored ``benchmarks/work/`` and do not outlive the
machine that trained them; a gzipped CSV of every fold's validation and test probabilities does,
so ensembles can be re-scored or grown later, and anyone can recompute a committed ensemble figure
without retraining. Columns: ``fold, part, clip_id, true, prob_<class>...`` (``part`` is ``val``
or ``test``; ``true`` is the class name). ``ravdess_6fold.py`` writes it for every new result;

    python benchmarks/predictions.py results/x.json   # export an older result whose run directories exist
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import REPO
from emorec.atomic import atomic_open



@dataclass(frozen=True)
class FoldPart:
    """One fold's clips of one part: ``probs [N x C]`` in the row order of ``clip_ids``."""

    clip_ids: tuple[str, ...]
    labels: np.ndarray  # (N,) class indices
    probs: np.ndarray  # (N, C)
    class_names: tuple[str, ...]


def predictions_path(results_json: Path) -> Path:
    """``results/X.json`` -> ``results/predictions/X.csv.gz`` (beside the results file, wherever it is)."""
    path = Path(results_json).resolve()
    return path.parent / "predictions" / f"{path.stem}.csv.gz"


def run_dirs_of(result: dict) -> list[Path]:
    """A result's run directories (``run_dir`` is one path or a list, relative to the repo)."""
    dirs = result["run_dir"] if isinstance(result["run_dir"], list) else [result["run_dir"]]
    return [REPO / d for d in dirs]


def export_predictions(run_dirs: list[Path], out: Path, *, parts: tuple[str, ...] = ("val", "test"),
                       predictor_for: Callable | None = None) -> str:
    """Write every fold's probabilities on ``parts`` of ``run_dirs`` to ``out``; returns its repo path.
    ``predictor_for(fold_dir, experiment, split)`` gives the model to use instead of the fold's export."""
    from emorec.evaluation.run_eval import experiment_for_run, fold_predictions, fold_split, trained_fold_dirs
    from emorec.runs.folder import fold_number

    text, header = io.StringIO(), None
    writer = csv.writer(text)
    for run_dir in run_dirs:
        experiment = experiment_for_run(run_dir, progress=False)
        names = list(experiment.class_names)
        if header is None:
            header = ["fold", "part", "clip_id", "true", *[f"prob_{c}" for c in names]]
            writer.writerow(header)
        elif header[4:] != [f"prob_{c}" for c in names]:
            raise SystemExit(f"{run_dir}: classes {names} differ from the first run's")
        for fold_dir in trained_fold_dirs(run_dir):
            split = fold_split(fold_dir, experiment)
            predictor = predictor_for(fold_dir, experiment, split) if predictor_for else None
            for part in parts:
                dataset, probs, _ = fold_predictions(fold_dir, experiment, split, part=part, predictor=predictor)
                for clip, label, row in zip(dataset.clips, dataset.labels(), probs):
                    writer.writerow([fold_number(fold_dir), part, clip.clip_id, names[label],
                                     *[f"{p:.6f}" for p in row]])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        handle.write(gzip.compress(text.getvalue().encode(), mtime=0))
    return str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out)


def load_predictions(path: Path) -> dict[tuple[int, str], FoldPart]:
    """``{(fold, part): FoldPart}`` from a file written by :func:`export_predictions`."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{path}: no predictions")
    class_names = tuple(k.removeprefix("prob_") for k in rows[0] if k.startswith("prob_"))
    index = {name: i for i, name in enumerate(class_names)}
    grouped: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(int(row["fold"]), row["part"])].append(row)
    return {key: FoldPart(clip_ids=tuple(r["clip_id"] for r in group),
                          labels=np.array([index[r["true"]] for r in group]),
                          probs=np.array([[float(r[f"prob_{c}"]) for c in class_names] for r in group]),
                          class_names=class_names)
            for key, group in grouped.items()}


def write_parts(parts: dict[tuple[int, str], FoldPart], out: Path) -> str:
    """Write ``{(fold, part): FoldPart}`` in :func:`export_predictions`' format; returns its repo path."""
    text = io.StringIO()
    writer = csv.writer(text)
    names = next(iter(parts.values())).class_names
    writer.writerow(["fold", "part", "clip_id", "true", *[f"prob_{c}" for c in names]])
    for (fold, kind), part in sorted(parts.items()):
        for clip, label, row in zip(part.clip_ids, part.labels, part.probs):
            writer.writerow([fold, kind, clip, names[label], *[f"{p:.6f}" for p in row]])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        handle.write(gzip.compress(text.getvalue().encode(), mtime=0))
    return str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out)


def average_members(members: list[dict[tuple[int, str], FoldPart]], sources: list[str]
                    ) -> dict[tuple[int, str], tuple[FoldPart, list[np.ndarray]]]:
    """Equal-weight mean of the members' probabilities per (fold, part), checked to cover the same
    clips with the same labels and classes. Returns ``{key: (mean FoldPart, member probs)}``."""
    keys = set(members[0])
    for member, source in zip(members[1:], sources[1:]):
        if set(member) != keys:
            raise SystemExit(f"{source}: folds/parts {sorted(set(member) ^ keys)} differ from {sources[0]}'s")
    out = {}
    for key in sorted(keys):
        first = members[0][key]
        member_probs = []
        for member, source in zip(members, sources):
            part = member[key]
            order = {clip: i for i, clip in enumerate(part.clip_ids)}
            if set(order) != set(first.clip_ids) or part.class_names != first.class_names:
                raise SystemExit(f"{source}: fold {key[0]} {key[1]} clips or classes differ from {sources[0]}'s")
            rows = [order[clip] for clip in first.clip_ids]
            if not np.array_equal(part.labels[rows], first.labels):
                raise SystemExit(f"{source}: fold {key[0]} labels differ from {sources[0]}'s")
            member_probs.append(part.probs[rows])
        mean = FoldPart(first.clip_ids, first.labels, np.mean(member_probs, axis=0), first.class_names)
        out[key] = (mean, member_probs)
    return out


def main() -> None:
    """``python predictions.py RESULT.json ...``: export runs trained before results carried predictions."""
    import argparse
    import json

    from emorec.atomic import write_json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", nargs="+", help="results JSONs of ravdess_6fold.py whose run directories exist")
    for results_json in map(Path, parser.parse_args().results):
        result = json.loads(results_json.read_text())
        result["predictions"] = export_predictions(run_dirs_of(result), predictions_path(results_json))
        write_json(results_json, result)
        print(f"{results_json} -> {result['predictions']}")


if __name__ == "__main__":
    main()
