"""Judging trained runs: ``evaluate`` the test folds, their ``robustness`` under recording
conditions, and an ``ensemble`` of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emorec.cli.app import _hush_libraries, app, out
from emorec.errors import EmorecError


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
    from emorec.training.recipe_files import key_values

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
