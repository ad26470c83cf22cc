"""Training and judging: ``train``, ``evaluate``, ``robustness``, ``ensemble``, ``compare``,
``fuse``, ``monitor`` and ``runs``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emorec.cli.app import _hush_libraries, app, out
from emorec.errors import EmorecError


@app.command()
def train(
    config: Optional[Path] = typer.Argument(
        None, help="YAML recipe, e.g. configs/attn_crnn.yaml (not with --resume)"
    ),
    manifest: Optional[Path] = typer.Option(None, help="override data.manifest"),
    splits: Optional[Path] = typer.Option(
        None,
        help="use these folds exactly (a splits.json from `emorec split --out`; sets split.file)",
    ),
    epochs: Optional[int] = typer.Option(
        None, help="maximum epochs (default: the recipe's trainer.epochs, else 30)"
    ),
    batch_size: Optional[int] = typer.Option(
        None, help="clips per batch (default: the recipe's trainer.batch_size, else 32)"
    ),
    patience: Optional[int] = typer.Option(
        None,
        help="early-stopping patience in epochs (default: the recipe's trainer.patience, else 6)",
    ),
    noise: Optional[float] = typer.Option(
        None, help="Gaussian feature noise sigma (default: the recipe's augment.noise)"
    ),
    mixup: Optional[float] = typer.Option(
        None, help="MixUp alpha (default: the recipe's augment.mixup)"
    ),
    no_augmentation: bool = typer.Option(
        False, "--no-augmentation", help="disable noise, MixUp and SpecAugment"
    ),
    fold: Optional[int] = typer.Option(None, help="train this fold only"),
    folds: Optional[str] = typer.Option(None, help="'all' for cross-validation, or '1,3'"),
    jobs: Optional[int] = typer.Option(
        None,
        help="train the folds in this many processes side by side, one run "
        "folder (run.jobs; default 1)",
    ),
    seed: Optional[int] = typer.Option(
        None, help="random seed of training (default: the recipe's trainer.seed, else 0)"
    ),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of run directories"),
    set_: list[str] = typer.Option([], "--set", help="any config key: section.key=value"),
    quiet: bool = typer.Option(
        False, help="no progress bars, no library notices (they still reach train.log)"
    ),
    devices: Optional[str] = typer.Option(
        None, help="devices per node: a count (2 = DDP with 2 processes), 'auto', or a list '0,1'"
    ),
    num_nodes: Optional[int] = typer.Option(
        None, help="machines (multi-node DDP; set MASTER_ADDR, MASTER_PORT, NODE_RANK)"
    ),
    accelerator: Optional[str] = typer.Option(None, help="auto, cpu or gpu"),
    precision: Optional[str] = typer.Option(None, help="32-true, bf16-mixed, 16-mixed, ..."),
    resume: Optional[Path] = typer.Option(
        None, help="continue this run directory (after a kill, crash or preemption)"
    ),
) -> None:
    """Train a recipe; every run gets a timestamped directory with checkpoints, logs and reports.

    With --devices/--num-nodes > 1 it trains with DDP (Lightning starts the extra processes);
    with --resume RUN it continues RUN from its last complete epoch, with RUN's own config.
    """
    from emorec.training.config import load_config

    hardware = {
        "devices": _devices(devices),
        "num_nodes": num_nodes,
        "accelerator": accelerator,
        "precision": precision,
    }
    if resume is not None:
        recipe_options = {
            "CONFIG": config,
            "--manifest": manifest,
            "--splits": splits,
            "--epochs": epochs,
            "--batch-size": batch_size,
            "--patience": patience,
            "--noise": noise,
            "--mixup": mixup,
            "--fold": fold,
            "--folds": folds,
            "--jobs": jobs,
            "--seed": seed,
            "--run-dir": run_dir,
            "--set": set_ or None,
            "--no-augmentation": no_augmentation or None,
        }
        given = [name for name, value in recipe_options.items() if value is not None]
        if given:
            raise EmorecError(
                f"--resume continues a run with its own config.yaml; drop {', '.join(given)}"
            )
        if not resume.is_dir():
            raise EmorecError(f"{resume}: no such run directory")
        if quiet:
            _hush_libraries()
        from emorec.workflows.crossval import is_global_zero
        from emorec.workflows.crossval import resume as resume_run

        path = resume_run(
            resume,
            progress=not quiet,
            hardware={k: v for k, v in hardware.items() if v is not None},
        )
        if is_global_zero():
            _print_run_result(path)
        return
    if config is None:
        raise EmorecError("give a recipe (emorec train configs/attn_crnn.yaml) or --resume RUN_DIR")

    extra: dict = {}

    def put(section: str, key: str, value) -> None:
        if value is not None:
            extra.setdefault(section, {})[key] = value

    put("data", "manifest", str(manifest) if manifest else None)
    put("split", "file", str(splits) if splits else None)
    put("trainer", "epochs", epochs)
    put("trainer", "batch_size", batch_size)
    put("trainer", "patience", patience)
    put("trainer", "seed", seed)
    put("augment", "noise", noise)
    put("augment", "mixup", mixup)
    put("augment", "enabled", False if no_augmentation else None)
    put("run", "folds", str(fold) if fold is not None else folds)
    put("run", "dir", str(run_dir) if run_dir else None)
    put("run", "jobs", jobs)
    for key, value in hardware.items():
        put("trainer", key, value)
    cfg = load_config(config, set_, extra)
    # Lightning takes seconds to import: a typo in the recipe is reported before it loads
    if quiet:
        _hush_libraries()
    from emorec.workflows.crossval import is_global_zero
    from emorec.workflows.crossval import train as run_training

    path = run_training(cfg, progress=not quiet)
    if is_global_zero():
        _print_run_result(path)


def _devices(value: Optional[str]):
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else value


def _print_run_result(run_dir: Path) -> None:
    import json

    summary = run_dir / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        m = data.get("mean", {})
        s = data.get("std", {})
        out.print(
            f"cross-validation over {data.get('n_folds', '?')} folds: UA {m.get('ua', 0):.3f} "
            f"± {s.get('ua', 0):.3f}, "
            f"WA {m.get('wa', 0):.3f} ± {s.get('wa', 0):.3f}, macro-F1 {m.get('macro_f1', 0):.3f}",
            soft_wrap=True,
        )
        out.print(f"summary: {run_dir / 'summary.md'}")
    for report in sorted(run_dir.glob("fold_*/report/report.json")):
        data = json.loads(report.read_text())
        out.print(
            f"{report.parent.parent.name}: UA {data['ua']:.3f}  WA {data['wa']:.3f}  macro-F1 "
            f"{data['macro_f1']:.3f}  "
            f"({report.parent / 'report.md'})",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory (all folds) or one fold directory"),
    drop: Optional[str] = typer.Option(
        None, help="evaluate with one modality missing: audio or video"
    ),
    quiet: bool = typer.Option(False),
) -> None:
    """Report WA, UA, macro-F1, per-class scores, confusion matrix, ROC/AUC and CIs with plots."""
    if not run_dir.exists():
        raise EmorecError(f"{run_dir}: no such run directory")
    from emorec.evaluation.run_eval import evaluate_run

    if quiet:
        _hush_libraries()
    reports, summary = evaluate_run(run_dir, drop=drop, progress=not quiet)
    for report in reports:
        out.print(
            f"{report.get('fold', '')}: UA {report['ua']:.3f}  WA {report['wa']:.3f}  macro-F1 "
            f"{report['macro_f1']:.3f}"
        )
    if summary:
        out.print(
            f"mean UA {summary['mean']['ua']:.3f} ± {summary['std']['ua']:.3f} -> "
            f"{run_dir / 'summary.md'}"
        )
    else:
        from emorec.evaluation.run_eval import trained_fold_dirs

        folder = f"report_drop_{drop}" if drop else "report"
        fold_dirs = [run_dir] if (run_dir / "model.json").is_file() else trained_fold_dirs(run_dir)
        for fold_dir in fold_dirs:
            out.print(f"report: {fold_dir / folder / 'report.md'}", highlight=False, soft_wrap=True)


@app.command()
def robustness(
    run_dirs: list[Path] = typer.Argument(
        ..., help="a run directory (or the parts of one run trained side by side)"
    ),
    conditions: Optional[str] = typer.Option(
        None,
        help="comma-separated: clean, gain:DB, band:LOW-HIGH, noise:SNR"
        "[:white|pink|brown], reverb:RT60, opus, mp3 (default: all of the suite)",
    ),
    folds: Optional[str] = typer.Option(None, help="only these folds, e.g. 1,3"),
    part: str = typer.Option(
        "test", help="score the test clips, or 'val' (validation actors) to choose a recipe"
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where robustness.json/.png go (default: the run)"
    ),
    feature: Optional[list[str]] = typer.Option(
        None,
        help="KEY=VALUE over the models' audio features at inference "
        "only, e.g. trim_floor_db=6 (a front-end change, no retraining)",
    ),
    quiet: bool = typer.Option(False),
) -> None:
    """UA of a run's test folds under recording conditions (gain, telephone band, noise, reverb,
    codecs) and the share of predictions per class, beside the clean figure."""
    from emorec.media.conditions import DEFAULT_SUITE, parse_condition
    from emorec.training.config import key_values

    if quiet:
        _hush_libraries()
    chosen = [int(f) for f in folds.split(",")] if folds else None
    suite = [c.strip() for c in conditions.split(",") if c.strip()] if conditions else DEFAULT_SUITE
    for name in suite:  # a bad condition or setting is named before the models load
        parse_condition(name)
    settings = key_values(feature or [], "--feature")
    from emorec.evaluation.robustness import robustness_run

    result = robustness_run(
        run_dirs, suite, folds=chosen, out=out_dir, progress=not quiet, part=part, features=settings
    )
    for name, score in result["conditions"].items():
        out.print(
            f"{name:>14}: UA {score['ua']:.3f} (drop {score['drop_points']:+.1f} points)  "
            f"most predicted {score['top_class']} {score['top_share']:.0%}",
            highlight=False,
        )
    stem = "robustness" if part == "test" else "robustness_val"
    out.print(
        f"robustness: {(out_dir or run_dirs[0]) / f'{stem}.json'}", highlight=False, soft_wrap=True
    )


@app.command()
def ensemble(
    run_dirs: list[Path] = typer.Argument(
        ..., help="run directories; their fold_K models are averaged fold by fold"
    ),
    part: str = typer.Option(
        "test", help="score the test clips, or 'val' (validation actors) to choose an ensemble"
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output directory (default: ensemble-TIMESTAMP)"
    ),
    quiet: bool = typer.Option(False),
) -> None:
    """Average the class probabilities of several trained runs per fold and report the ensemble."""
    from emorec.evaluation.ensemble import ensemble_runs

    if quiet:
        _hush_libraries()
    reports, summary, out_path = ensemble_runs(
        run_dirs, part=part, out_dir=out_dir, progress=not quiet
    )
    for report in reports:
        member_ua = ", ".join(f"{m['ua']:.3f}" for m in report["extra"]["members"])
        out.print(
            f"{report.get('fold', '')}: UA {report['ua']:.3f}; its members alone: {member_ua}"
        )
    out.print(
        f"mean UA {summary['mean']['ua']:.3f} ± {summary['std']['ua']:.3f} on {part} clips "
        f"(members alone: {summary['extra']['mean_member_ua']:.3f}) -> {out_path / 'summary.md'}"
    )


@app.command()
def compare(
    config_a: Path = typer.Argument(..., help="first YAML recipe, e.g. configs/cnn_lstm.yaml"),
    config_b: Path = typer.Argument(..., help="second YAML recipe, e.g. configs/cnn_pooling.yaml"),
    fold: Optional[int] = typer.Option(None, help="train and compare this fold only"),
    folds: Optional[str] = typer.Option(
        None, help="'all' or '1,3' (default: CONFIG_A's run.folds)"
    ),
    manifest: Optional[Path] = typer.Option(None, help="override data.manifest of both"),
    epochs: Optional[int] = typer.Option(None, help="override trainer.epochs of both"),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of both run directories"),
    set_: list[str] = typer.Option([], "--set", help="config key for both: section.key=value"),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="also write the comparison as JSON"
    ),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train two recipes on the same split;
    print their metrics side by side and the one better on validation."""
    from emorec.atomic import write_json
    from emorec.workflows.compare import compare_configs, format_table, verdict

    extra = {"trainer": {"epochs": epochs}} if epochs is not None else None
    if quiet:
        _hush_libraries()
    result = compare_configs(
        config_a,
        config_b,
        fold=fold,
        folds=folds,
        manifest=manifest,
        run_dir=run_dir,
        overrides=set_,
        extra=extra,
        progress=not quiet,
    )
    out.print(format_table(result))
    out.print(verdict(result))
    for model in result["models"]:
        out.print(f"{model['label']}: {model['run_dir']}", highlight=False)
    if out_path:
        write_json(out_path, result)
        out.print(f"comparison -> {out_path}")


@app.command()
def fuse(
    audio_run: Path = typer.Argument(
        ..., help="fold directory of the trained audio model, e.g. runs/attn_crnn-.../fold_1"
    ),
    video_run: Path = typer.Argument(
        ..., help="fold directory of the trained video model (same split, same fold)"
    ),
    finetune: bool = typer.Option(
        False, "--finetune", help="then fine-tune the whole fused model end to end"
    ),
    epochs: int = typer.Option(30, help="epochs of the fusion classifier on cached embeddings"),
    finetune_epochs: Optional[int] = typer.Option(
        None, help="epochs of end-to-end fine-tuning (default: --epochs)"
    ),
    lr: float = typer.Option(1e-3, help="learning rate of the fusion classifier"),
    finetune_lr: float = typer.Option(1e-4, help="learning rate of end-to-end fine-tuning"),
    hidden: int = typer.Option(128, help="fusion layer size"),
    freeze_branches: bool = typer.Option(
        False, "--freeze-branches", help="fine-tune the fusion head only"
    ),
    batch_size: Optional[int] = typer.Option(None),
    patience: Optional[int] = typer.Option(None),
    cache: Optional[Path] = typer.Option(
        None, help="feature cache for the embeddings (default: the audio run's)"
    ),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of the new run directories"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Fuse a trained audio model and video model:
    cache their embeddings, train a fusion classifier, optionally fine-tune."""
    from emorec.workflows.fusion import fuse as run_fuse

    if quiet:
        _hush_libraries()
    result = run_fuse(
        audio_run,
        video_run,
        finetune=finetune,
        hidden=hidden,
        epochs=epochs,
        lr=lr,
        finetune_epochs=finetune_epochs,
        finetune_lr=finetune_lr,
        freeze_branches=freeze_branches,
        batch_size=batch_size,
        patience=patience,
        cache=str(cache) if cache else None,
        run_dir=run_dir,
        progress=not quiet,
    )
    table = Table(title="fusion (one fold; the test fold never selects a model)")
    for col in ("model", "val UA", "test UA", "test WA", "test macro-F1"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in result.rows:
        table.add_row(
            row["model"],
            *(f"{row[k]:.3f}" for k in ("val_ua", "test_ua", "test_wa", "test_macro_f1")),
        )
    out.print(table)
    out.print(f"fusion classifier: {result.fusion_run}", highlight=False)
    if result.finetune_run is not None:
        out.print(f"fine-tuned model: {result.finetune_run}", highlight=False)


@app.command()
def monitor(
    run_dir: Path = typer.Argument(
        ..., help="a run directory (local, or copied back from a cloud machine)"
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="keep redrawing until the run stops running"
    ),
    interval: float = typer.Option(5.0, help="seconds between redraws with --follow"),
    lines: int = typer.Option(12, help="last lines of train.log to show"),
) -> None:
    """Status, epoch x of y, latest metrics, best so far, ETA, GPU, last log lines of a run."""
    from emorec.runs.monitor import monitor as show

    show(run_dir, follow=follow, interval=interval, log_lines=lines, console=out)


@app.command()
def runs(
    directory: Path = typer.Argument(
        Path("runs"), help="folder of run directories (default: runs)"
    ),
) -> None:
    """List runs side by side: model, folds done, status, best validation UA, test UA, duration."""
    from emorec.runs.monitor import runs_table

    out.print(runs_table(directory))
