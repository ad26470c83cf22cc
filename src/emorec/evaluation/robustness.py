"""How a trained run holds up under recording conditions it may not have seen: every test clip of
every fold is decoded, passed through each condition of the suite (``emorec.media.conditions``), and
predicted by its own fold's model; UA per condition with its bootstrap CI, the drop from clean, and
the share of predictions each class takes, so a collapse onto one class is visible.

Only the test clips of the run's own folds are read (or, with ``part="val"``, its validation
actors), with the weights the run kept; nothing here selects anything. Writes ``robustness.json``
and ``robustness.png`` (``robustness_val.*``) into the (first) run folder, or ``out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emorec.atomic import write_json
from emorec.media.conditions import DEFAULT_SUITE, parse_condition
from emorec.errors import BadInputError, EmorecError
from emorec.evaluation.metrics import classification_metrics
from emorec.evaluation.run_eval import experiment_for_run, fold_split, trained_fold_dirs
from emorec.inference.predictor import Predictor
from emorec.media.audio import load_audio
from emorec.runs.folder import fold_number


def condition_scores(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *, bootstrap: int
) -> dict:
    """UA, WA, macro-F1 with CIs, and the share of predictions per class, of one condition."""
    metrics = classification_metrics(y_true, probs, class_names, bootstrap=bootstrap)
    counts = np.bincount(probs.argmax(axis=1), minlength=len(class_names))
    share = counts / max(1, counts.sum())
    top = int(share.argmax())
    return {
        "ua": metrics["ua"],
        "wa": metrics["wa"],
        "macro_f1": metrics["macro_f1"],
        "ci": metrics["ci"],
        "predicted_share": {name: float(s) for name, s in zip(class_names, share)},
        "top_class": class_names[top],
        "top_share": float(share[top]),
    }


def robustness_run(
    run_dirs: Sequence[str | Path],
    conditions: Sequence[str] = DEFAULT_SUITE,
    *,
    folds: Sequence[int] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    bootstrap: int = 1000,
    part: str = "test",
    features: dict | None = None,
) -> dict:
    """Score the fold models of ``run_dirs`` (one run, or the parts of one run trained side by side,
    whose folds differ) on their test clips under each of ``conditions``; ``part="val"`` scores the
    validation actors instead (to choose a recipe for robustness without reading a test clip).

    ``features``: settings laid over every model's audio feature spec at inference only (e.g.
    ``{"trim_floor_db": 6}``), to measure a front-end change on trained models; the result names
    them."""
    if part not in ("test", "val"):
        raise EmorecError(f"part must be 'test' or 'val', got {part!r}")
    from emorec.evaluation.plots import plot_robustness

    run_dirs = [Path(d) for d in run_dirs]
    names = [
        "clean",
        *[c for c in conditions if c != "clean"],
    ]  # clean first: the reference of every drop
    suite = [parse_condition(name) for name in names]
    fold_jobs = []
    for run_dir in run_dirs:
        experiment = experiment_for_run(run_dir, progress=progress)
        fold_jobs += [
            (d, experiment)
            for d in trained_fold_dirs(run_dir)
            if folds is None or fold_number(d) in set(folds)
        ]
    if not fold_jobs:
        raise EmorecError(f"{run_dirs[0]}: none of folds {list(folds or [])} has a trained model")
    numbers = [fold_number(d) for d, _ in fold_jobs]
    if len(set(numbers)) != len(numbers):
        raise EmorecError(
            f"fold numbers repeat across {', '.join(map(str, run_dirs))}: give the parts of one run"
        )
    class_names = list(fold_jobs[0][1].class_names)
    label_index = {name: i for i, name in enumerate(class_names)}
    labels: list[int] = []
    probs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    skipped: list[dict] = []
    for fold_dir, experiment in sorted(fold_jobs, key=lambda job: fold_number(job[0])):
        predictor = Predictor.load(fold_dir)
        if features:
            predictor.meta["features"]["audio"] = {
                **predictor.meta["features"]["audio"],
                **features,
            }
        if predictor.class_names != class_names:
            raise EmorecError(
                f"{fold_dir}: model classes {predictor.class_names} differ from "
                f"the data's {class_names}"
            )
        rate = int(next(iter(predictor.meta["features"].values())).get("sample_rate", 16000))
        clips = [
            experiment.by_id[i]
            for i in getattr(fold_split(fold_dir, experiment), part)
            if i in experiment.by_id
        ]
        for clip in _progress(clips, f"{fold_dir.name}: {len(names)} conditions", progress):
            try:
                wave = load_audio(clip.path, rate)
                items = [
                    predictor.features_for_wave(
                        c.apply(wave, rate, seed=clip.clip_id), name=clip.path
                    )
                    for c in suite
                ]
            except BadInputError as err:
                skipped.append({"clip": clip.clip_id, "reason": err.reason})
                continue
            rows = predictor.predict_items(items, batch_size=len(items))  # (conditions, C)
            labels.append(label_index[clip.emotion])
            for name, row in zip(names, rows):
                probs[name].append(row)
    if not labels:
        raise EmorecError(f"{run_dirs[0]}: no test clip could be read")
    y = np.asarray(labels)
    scores = {
        name: condition_scores(y, np.stack(probs[name]), class_names, bootstrap=bootstrap)
        for name in names
    }
    clean_ua = scores["clean"]["ua"]
    for entry in scores.values():
        entry["drop_points"] = round(100.0 * (clean_ua - entry["ua"]), 2)
    result = {
        "run": ", ".join(d.name for d in run_dirs),
        "part": part,
        "folds": sorted(numbers),
        "n_clips": int(y.size),
        "class_names": class_names,
        "chance_ua": 1.0 / len(class_names),
        "conditions": scores,
        "skipped": skipped,
        **({"inference_features": dict(features)} if features else {}),
    }
    out_dir = Path(out) if out else run_dirs[0]
    stem = "robustness" if part == "test" else "robustness_val"
    write_json(out_dir / f"{stem}.json", result)
    plot_robustness(result, out_dir / f"{stem}.png")
    return result


def _progress(items: list, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)
