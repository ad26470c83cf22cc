"""Train two recipes on the same split and say which is better on validation (seed 003's habit).

``emorec compare CONFIG_A CONFIG_B [--fold K] [--manifest M]`` trains each recipe with the normal
:func:`emorec.workflows.crossval.train` into its own run directory, then reads back

* validation UA / WA / macro-F1 of the checkpoint each run selected (its best epoch by
  ``trainer.monitor``, from ``metrics.csv``), and
* test UA / WA / macro-F1 from each fold's ``report/report.json``,

averaged over the folds trained. The better model is named by **validation UA** (ties broken by
validation macro-F1): the test fold never selects a model, its numbers are printed for
information only.

Both recipes use the same split: recipe B gets recipe A's ``split`` section, the same manifest
and the same folds, and the split membership (every fold's train/val/test clip ids) of both is
checked to be identical before anything trains and again in both runs' ``splits.json``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emorec.errors import EmorecError
from emorec.inference.model_files import ModelMeta
from emorec.training.config import TrainConfig, load_config

METRICS = ("ua", "wa", "macro_f1")
#: validation metric name in metrics.csv for each reported metric
VAL_KEYS = {"ua": "val/ua", "wa": "val/acc", "macro_f1": "val/macro_f1"}


@dataclass
class ModelResult:
    label: str  # what the table calls it (config stem, made unique)
    config: str
    model: str
    run_dir: str
    parameters: int = 0
    val: dict[str, float] = field(default_factory=dict)  # mean over folds
    test: dict[str, float] = field(default_factory=dict)  # mean over folds (information only)
    train_seconds: float = 0.0
    folds: list[dict[str, Any]] = field(default_factory=list)


def _split_signature(splits) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "train": sorted(s.train), "val": sorted(s.val), "test": sorted(s.test)}
        for s in splits
    ]


def check_same_splits(config_a: TrainConfig, config_b: TrainConfig) -> None:
    """Refuse when the two configs would split the data differently (EmorecError naming the
    first difference)."""
    from emorec.training.experiment import prepare_experiment

    a = _split_signature(prepare_experiment(config_a, extract=False, progress=False).splits)
    b = _split_signature(prepare_experiment(config_b, extract=False, progress=False).splits)
    if a != b:
        raise EmorecError(
            "the two configs give different splits "
            f"({_first_difference(a, b)}); make data.manifest, "
            "data.label_policy, data.labels and the split section the same"
        )


def _first_difference(a: list[dict], b: list[dict]) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} folds"
    for fa, fb in zip(a, b):
        for part in ("train", "val", "test"):
            if fa[part] != fb[part]:
                return f"{fa['name']} {part}: {len(fa[part])} vs {len(fb[part])} clips"
    return "fold names differ"


def read_fold(fold_dir: Path) -> dict[str, Any]:
    """Validation metrics at the selected epoch and test metrics of one trained fold."""
    from emorec.runs.epochs import read_epoch_metrics

    meta = ModelMeta.read(fold_dir)
    report_path = fold_dir / "report" / "report.json"
    if not report_path.is_file():
        raise EmorecError(f"{fold_dir}: no test report (report/report.json)")
    report = json.loads(report_path.read_text())
    best = meta.get("best_epoch")
    # the kept weights' own scores (after averaging or recalibration)
    kept = meta.get("val_metrics")
    if kept:
        val = {m: float(kept.get(key, math.nan)) for m, key in VAL_KEYS.items()}
    else:  # a model exported before val_metrics was recorded: the kept epoch's logged scores
        history = read_epoch_metrics(fold_dir / "metrics.csv")
        epochs = history.get("epoch", [])
        row = epochs.index(float(best)) if best is not None and float(best) in epochs else None
        val = {
            m: (history[key][row] if row is not None and key in history else math.nan)
            for m, key in VAL_KEYS.items()
        }
    return {
        "fold": meta.get("fold", fold_dir.name),
        "best_epoch": best,
        "val": val,
        "test": {m: float(report[m]) for m in METRICS},
        "train_seconds": float(meta.get("train_seconds") or 0.0),
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def collect(run_dir: Path, label: str, config_path: str) -> ModelResult:
    from emorec.evaluation.run_eval import trained_fold_dirs
    from emorec.inference.predictor import Predictor

    fold_dirs = trained_fold_dirs(run_dir)
    folds = [read_fold(d) for d in fold_dirs]
    model = Predictor.load(fold_dirs[0]).model
    meta = ModelMeta.read(fold_dirs[0])
    return ModelResult(
        label=label,
        config=config_path,
        model=meta.model,
        run_dir=str(run_dir),
        parameters=sum(p.numel() for p in model.parameters()),
        val={m: _mean([f["val"][m] for f in folds]) for m in METRICS},
        test={m: _mean([f["test"][m] for f in folds]) for m in METRICS},
        train_seconds=sum(f["train_seconds"] for f in folds),
        folds=folds,
    )


def better_on_validation(a: ModelResult, b: ModelResult) -> str | None:
    """The label of the model with higher validation UA (then macro-F1); ``None`` for a tie."""
    for metric in ("ua", "macro_f1"):
        va, vb = a.val.get(metric, math.nan), b.val.get(metric, math.nan)
        if math.isnan(va) or math.isnan(vb) or abs(va - vb) < 1e-9:
            continue
        return a.label if va > vb else b.label
    return None


def _labels(path_a: Path, path_b: Path) -> tuple[str, str]:
    a, b = path_a.stem, path_b.stem
    return (a, b) if a != b else (f"A:{a}", f"B:{b}")


def compare_configs(
    config_a: str | os.PathLike,
    config_b: str | os.PathLike,
    *,
    fold: int | None = None,
    folds: str | None = None,
    manifest: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train both recipes on the same split(s) and return the comparison (see the module doc).

    ``fold`` / ``folds`` choose the folds (default: recipe A's ``run.folds``); ``manifest`` and
    ``run_dir`` override ``data.manifest`` and ``run.dir`` of both; ``overrides``
    (``section.key=value``) and ``extra`` (a nested dict) apply to both recipes.
    """
    from emorec.corpora.splits import load_splits
    from emorec.workflows.crossval import console, train

    path_a, path_b = Path(config_a), Path(config_b)
    shared: dict[str, Any] = copy.deepcopy(extra or {})
    if manifest is not None:
        shared.setdefault("data", {})["manifest"] = str(manifest)
    if run_dir is not None:
        shared.setdefault("run", {})["dir"] = str(run_dir)
    cfg_a = load_config(path_a, list(overrides or []), shared)
    cfg_b = load_config(path_b, list(overrides or []), shared)
    chosen = str(fold) if fold is not None else (folds or cfg_a.run.folds)
    notes = []
    if cfg_b.split != cfg_a.split:
        notes.append(
            f"{path_b.name} uses the split settings of {path_a.name} (both "
            "models see the same folds)"
        )
    cfg_b.split = copy.deepcopy(cfg_a.split)
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    cfg_a.run.folds = cfg_b.run.folds = chosen
    check_same_splits(cfg_a, cfg_b)

    label_a, label_b = _labels(path_a, path_b)
    run_a = train(cfg_a, progress=progress)
    run_b = train(cfg_b, progress=progress)
    if _split_signature(load_splits(run_a / "splits.json")) != _split_signature(
        load_splits(run_b / "splits.json")
    ):
        raise EmorecError(
            f"{run_a} and {run_b} were trained on different splits; the comparison is void"
        )
    a, b = collect(run_a, label_a, str(path_a)), collect(run_b, label_b, str(path_b))
    winner = better_on_validation(a, b)
    return {
        "models": [_as_dict(a), _as_dict(b)],
        "folds": chosen,
        "better_on_validation": winner,
        "selected_by": "validation UA (then validation macro-F1); test metrics "
        "are for information only",
        "notes": notes,
    }


def _as_dict(result: ModelResult) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(result)


def format_table(comparison: dict[str, Any]):
    """A rich Table: one row per metric, one column per model, and which is higher."""
    from rich.table import Table

    a, b = comparison["models"]
    table = Table(title=f"compare (folds {comparison['folds']})")
    table.add_column("metric")
    for model in (a, b):
        title = (
            model["label"]
            if model["label"] == model["model"]
            else f"{model['label']} ({model['model']})"
        )
        table.add_column(title, justify="right")
    table.add_column("higher")

    def row(name: str, va: float, vb: float, fmt: str = "{:.3f}") -> None:
        higher = (
            "-"
            if math.isnan(va) or math.isnan(vb) or va == vb
            else (a["label"] if va > vb else b["label"])
        )
        table.add_row(name, fmt.format(va), fmt.format(vb), higher)

    for split in ("val", "test"):
        for metric in METRICS:
            row(
                f"{split} {metric.replace('_', '-')}"
                + (" (selects)" if split == "val" and metric == "ua" else ""),
                a[split][metric],
                b[split][metric],
            )
    table.add_row("parameters", f"{a['parameters']:,}", f"{b['parameters']:,}", "")
    table.add_row("train seconds", f"{a['train_seconds']:.1f}", f"{b['train_seconds']:.1f}", "")
    return table


def verdict(comparison: dict[str, Any]) -> str:
    a, b = comparison["models"]
    winner = comparison["better_on_validation"]
    if winner is None:
        return "no winner: validation UA and macro-F1 are tied (test metrics never decide)"
    best, other = (a, b) if winner == a["label"] else (b, a)
    return (
        f"better on validation: {best['label']} ({best['model']}), val UA "
        f"{best['val']['ua']:.3f} vs "
        f"{other['val']['ua']:.3f}; test metrics are shown for information, "
        "they do not select a model"
    )
