"""Ensembles of trained runs: average the members' class probabilities fold by fold.

Members are the ``fold_K`` model directories of the given run directories, grouped by fold
number. A benchmark that trained its folds in parallel jobs leaves one recipe's folds spread
over several run directories, so a member is "one model per fold", not "one run directory":
``emorec ensemble A1 A2 B1 B2`` averages two models per fold when A1/A2 and B1/B2 each hold
half of the folds of recipes A and B.

Every member of a fold must have been trained on the same split (the same test and
validation clips), otherwise averaging would mix models that saw the test speakers.
``part="val"`` scores the validation actors instead of the test actors: that is the score to
choose an ensemble (or whether to ensemble at all) by; the test score only reports it.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from pathlib import Path

import numpy as np

from emorec.errors import EmorecError


def ensemble_runs(
    run_dirs: list[str | Path],
    *,
    part: str = "test",
    out_dir: str | Path | None = None,
    min_members: int = 2,
    progress: bool = True,
) -> tuple[list[dict], dict, Path]:
    """Average the members' probabilities on each fold's ``part`` clips and write reports.

    Returns ``(fold reports, cross-validation summary, output directory)``. The output holds
    ``fold_K/report/`` (as ``emorec evaluate`` writes) and ``summary.json``/``summary.md``;
    each fold report's ``extra`` lists its members and every member's own UA on the same clips.
    """
    from emorec.evaluation.metrics import classification_metrics
    from emorec.evaluation.report import write_cv_summary, write_report
    from emorec.evaluation.run_eval import (
        experiment_for_run,
        fold_predictions,
        fold_split,
        trained_fold_dirs,
    )
    from emorec.runs.folder import fold_number

    if part not in ("test", "val"):
        raise EmorecError(f"part must be 'test' or 'val', got {part!r}")
    run_dirs = [Path(r) for r in run_dirs]
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise EmorecError(f"{run_dir}: no such run directory")
    if len(set(map(Path.resolve, run_dirs))) != len(run_dirs):
        raise EmorecError("a run directory is given twice; each member must be a different model")
    members: dict[int, list[Path]] = defaultdict(list)
    for run_dir in run_dirs:
        for fold_dir in trained_fold_dirs(run_dir):
            members[fold_number(fold_dir)].append(fold_dir)
    thin = {k: len(v) for k, v in members.items() if len(v) < min_members}
    if thin:
        raise EmorecError(
            f"folds {sorted(thin)} have fewer than {min_members} members "
            f"({', '.join(f'fold {k}: {n}' for k, n in sorted(thin.items()))}); "
            "give every fold's runs"
        )
    experiments = {run_dir: experiment_for_run(run_dir, progress=progress) for run_dir in run_dirs}
    out = (
        Path(out_dir)
        if out_dir
        else run_dirs[0].parent / f"ensemble-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    )
    reports = []
    for fold_no in sorted(members):
        fold_probs, first, member_scores = [], None, []
        for fold_dir in members[fold_no]:
            experiment = experiments[fold_dir.parent]
            split = fold_split(fold_dir, experiment)
            dataset, probs, predictor = fold_predictions(fold_dir, experiment, split, part=part)
            ids = [c.clip_id for c in dataset.clips]
            if first is None:
                first = (split, ids, dataset.labels(), experiment.class_names)
            elif (sorted(split.test), sorted(split.val)) != (
                sorted(first[0].test),
                sorted(first[0].val),
            ):
                raise EmorecError(
                    f"{fold_dir}: trained on a different split than {members[fold_no][0]}; "
                    "ensemble members of a fold must share its test and validation clips"
                )
            elif list(experiment.class_names) != list(first[3]):
                raise EmorecError(
                    f"{fold_dir}: classes {experiment.class_names} differ from {first[3]}"
                )
            elif ids != first[1]:
                raise EmorecError(
                    f"{fold_dir}: predicts a different set of {part} clips than "
                    f"{members[fold_no][0]} (features missing for some clips?)"
                )
            fold_probs.append(probs)
            member_scores.append(
                {
                    "fold_dir": str(fold_dir),
                    "model": predictor.meta.get("model"),
                    "ua": classification_metrics(first[2], probs, first[3], bootstrap=0)["ua"],
                }
            )
        split, ids, labels, class_names = first
        mean_probs = np.mean(fold_probs, axis=0)  # (N, C): members weigh equally
        extra = {
            "fold": split.name,
            "part": part,
            "test_speakers": list(split.test_speakers),
            "val_speakers": list(split.val_speakers),
            "members": member_scores,
            "mean_member_ua": float(np.mean([m["ua"] for m in member_scores])),
        }
        reports.append(
            write_report(
                out / f"fold_{fold_no}" / "report",
                y_true=labels,
                probs=mean_probs,
                class_names=class_names,
                clip_ids=ids,
                title=f"ensemble of {len(fold_probs)} — {split.name} ({part} clips)",
                split=split.to_dict()
                | {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
                extra=extra,
                bootstrap=experiments[run_dirs[0]].config.run.bootstrap,
            )
        )
    summary = write_cv_summary(
        out,
        reports,
        title=f"Ensemble of {', '.join(r.name for r in run_dirs)} ({part} clips)",
        extra={
            "part": part,
            "runs": [str(r) for r in run_dirs],
            "mean_member_ua": float(np.mean([r["extra"]["mean_member_ua"] for r in reports])),
        },
    )
    return reports, summary, out
