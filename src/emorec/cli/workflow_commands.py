"""Workflows over whole runs: ``compare`` two recipes on one split, ``fuse`` an audio and a
video model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emorec.cli.app import _hush_libraries, app, out


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
