"""Evaluate a trained run on its test folds: the only place test clips are read.

Used at the end of ``emorec train`` and by ``emorec evaluate RUN_DIR`` (which rebuilds the
data from the run's saved config and splits, so it can run on a copied run directory as long
as the manifest and the feature cache are reachable).
"""

from __future__ import annotations

from pathlib import Path

from emorec.data import ClipDataset
from emorec.errors import EmorecError
from emorec.evaluation.metrics import age_group
from emorec.inference.predictor import MODEL_META, Predictor
from emorec.runs.folder import fold_number


def trained_fold_dirs(run_dir: Path) -> list[Path]:
    """The run's fold directories that hold an exported model, in fold order."""
    fold_dirs = sorted(
        (p.parent for p in Path(run_dir).glob(f"fold_*/{MODEL_META}")), key=fold_number
    )
    if not fold_dirs:
        raise EmorecError(f"{run_dir}: not a run directory (no fold_*/{MODEL_META})")
    return fold_dirs


def experiment_for_run(run_dir: Path, progress: bool = True):
    """The run's data (manifest, features, splits) rebuilt from its saved config and
    ``splits.json``."""
    from emorec.corpora.splits import load_splits
    from emorec.training.config import load_run_config
    from emorec.training.experiment import prepare_experiment

    config = load_run_config(run_dir)
    return prepare_experiment(
        config, extract=True, progress=progress, splits=load_splits(run_dir / "splits.json")
    )


def fold_predictions(
    fold_dir: Path,
    experiment,
    split,
    *,
    part: str = "test",
    drop: str | None = None,
    predictor: Predictor | None = None,
):
    """The fold model's probabilities on one part of its split.

    ``part`` is ``"test"`` (evaluation) or ``"val"`` (the validation actors, which may be used to
    choose a recipe or an ensemble); ``predictor`` is the fold's exported model unless given.
    Returns ``(dataset, probs [N x C], predictor)``; the dataset's clips are in the row order of
    ``probs``.
    """
    if part not in ("test", "val"):
        raise EmorecError(f"part must be 'test' or 'val', got {part!r}")
    predictor = predictor or Predictor.load(fold_dir)
    if list(predictor.class_names) != list(experiment.class_names):
        raise EmorecError(
            f"{fold_dir}: model classes {predictor.class_names} differ from the data's "
            f"{experiment.class_names}"
        )
    dataset = clips_dataset(experiment, getattr(split, part), predictor)
    if len(dataset) == 0:
        raise EmorecError(f"{fold_dir}: no {part} clip has cached features")
    items = [dataset[i] for i in range(len(dataset))]
    if drop:
        items = [_drop_modality(item, drop) for item in items]
    return dataset, predictor.predict_items(items), predictor


def clips_dataset(experiment, clip_ids, predictor: Predictor) -> ClipDataset:
    """The clips ``clip_ids`` as ``predictor`` sees them: its feature normalisers and sizes (a
    speaker-normalised model gets each speaker's statistics from these clips)."""
    meta = predictor.meta
    by_id = experiment.by_id
    clips = [by_id[i] for i in clip_ids if i in by_id]
    label_index = {name: i for i, name in enumerate(experiment.class_names)}
    normalizers = predictor.normalizers()
    speaker_norm = bool(meta.get("speaker_norm"))
    if speaker_norm:
        from emorec.training.experiment import fit_speaker_statistics

        fit_speaker_statistics(normalizers, experiment, clips)
    dims = {m: meta.get(f"{m}_dim") for m in ("audio", "video") if meta.get(f"{m}_dim")}
    return ClipDataset(
        clips, label_index, experiment.stores, normalizers, speaker_norm=speaker_norm, dims=dims
    )


def recalibrated_predictor(fold_dir, experiment, split):
    """The fold's exported model with BatchNorm statistics averaged over its training clips."""
    from emorec.training.batch_norm import recalibrate_batch_norm

    predictor = Predictor.load(fold_dir)
    if predictor.meta.get("speaker_norm"):
        raise EmorecError(
            f"{fold_dir}: BatchNorm recalibration of a speaker-normalised "
            "(transductive) model is not supported"
        )
    recalibrate_batch_norm(predictor.model, clips_dataset(experiment, split.train, predictor))
    return predictor


def fold_split(fold_dir: Path, experiment):
    """The split a fold directory ``fold_K`` was trained on."""
    return experiment.splits[fold_number(fold_dir) - 1]


def evaluate_fold(
    fold_dir: Path, *, experiment=None, split=None, drop: str | None = None, progress: bool = True
) -> dict:
    """Predict the fold's test clips with its exported model and write ``fold_dir/report``."""
    from emorec.evaluation.report import write_report

    fold_dir = Path(fold_dir)
    if not (fold_dir / MODEL_META).is_file():
        raise EmorecError(f"{fold_dir}: no trained model ({MODEL_META}); did training finish?")
    if experiment is None:
        experiment = experiment_for_run(fold_dir.parent, progress=progress)
    if split is None:
        split = fold_split(fold_dir, experiment)
    test_set, probs, predictor = fold_predictions(fold_dir, experiment, split, drop=drop)
    meta = predictor.meta
    out_dir = fold_dir / ("report" if not drop else f"report_drop_{drop}")
    extra = {
        "fold": split.name,
        "test_speakers": list(split.test_speakers),
        "val_speakers": list(split.val_speakers),
        "speaker_norm": bool(meta.get("speaker_norm")),
        "features": meta.get("features"),
        "model": meta.get("model"),
        "epochs": meta.get("best_epoch"),
        "epochs_run": meta.get("epochs_run"),
        "train_seconds": meta.get("train_seconds"),
        "missing_test_clips": [c.clip_id for c in test_set.missing],
        "test_clips_missing_a_modality": [
            f"{clip_id} ({m})" for clip_id, m in test_set.missing_modality
        ],
    }
    report = write_report(
        out_dir,
        y_true=test_set.labels(),
        probs=probs,
        class_names=experiment.class_names,
        kept=kept_model(meta, experiment),
        clip_ids=[c.clip_id for c in test_set.clips],
        title=f"{meta.get('model')} — {split.name}",
        split=split.to_dict()
        | {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        history_csv=fold_dir / "metrics.csv" if (fold_dir / "metrics.csv").is_file() else None,
        extra=extra,
        bootstrap=experiment.config.run.bootstrap,
        temperature=predictor.temperature if meta.get("calibration") else None,
        groups={
            "corpus": [c.corpus for c in test_set.clips],
            "gender": [c.gender for c in test_set.clips],
            "age group": [age_group(c.age) for c in test_set.clips],
        },
    )
    return report


def kept_model(meta: dict, experiment=None) -> dict:
    """What report.json/report.md/history.png say about the evaluated weights, from model.json.
    A model.json written before it recorded the weight average gets it from the run's config."""
    from emorec.runs.kept import ema_record, kept_summary

    fallback = None
    if "ema" not in meta and experiment is not None:
        fallback = ema_record(vars(experiment.config.trainer), None)
    label = (
        f"kept: {'last' if meta.get('checkpoint') == 'last' else 'best'} epoch "
        f"({meta.get('best_epoch')})"
    )
    return {
        "summary": kept_summary(meta, ema=fallback),
        "epoch": meta.get("best_epoch"),
        "epochs_run": meta.get("epochs_run"),
        "monitor": meta.get("monitor"),
        "score": meta.get("best_score"),
        "label": label,
    }


def _drop_modality(item: dict, modality: str) -> dict:
    if modality not in item:
        raise EmorecError(
            f"cannot drop {modality!r}: the model's input has "
            f"{sorted(k for k in item if k in ('audio', 'video'))}"
        )
    out = dict(item)
    out.pop(modality)
    return out


def write_run_summary(run_dir: Path, reports: list[dict]) -> dict:
    from emorec.evaluation.report import write_cv_summary

    return write_cv_summary(
        run_dir, reports, title=f"Cross-validation summary — {Path(run_dir).name}"
    )


def evaluate_run(
    run_dir: str | Path, *, drop: str | None = None, progress: bool = True
) -> tuple[list[dict], dict | None]:
    run_dir = Path(run_dir)
    if (run_dir / MODEL_META).is_file():
        return [evaluate_fold(run_dir, drop=drop, progress=progress)], None
    fold_dirs = trained_fold_dirs(run_dir)
    experiment = experiment_for_run(run_dir, progress=progress)
    reports = [
        evaluate_fold(d, experiment=experiment, drop=drop, progress=progress) for d in fold_dirs
    ]
    summary = write_run_summary(run_dir, reports) if len(reports) > 1 else None
    return reports, summary
