"""Training: ``train`` a recipe (or ``--resume`` a run) and print what its folds scored."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

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
