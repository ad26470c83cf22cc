"""The ``emorec`` command line: one small function per verb, the work lives in the package.

Longer than the package's 400-line guide: the verbs' typed option declarations are the CLI's
reference (names, defaults, help) and read best side by side in one typer app; each function only
turns options into one library call."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from emorec.errors import EmorecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Emotion recognition from speech and face video.")
out = Console()
err = Console(stderr=True)
config_app = typer.Typer(no_args_is_help=True, help="Recipes: what a YAML file resolves to.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    recipe: Path = typer.Argument(..., help="a recipe YAML (its base: chain is followed)"),
    overrides: list[str] = typer.Option([], "--set", help="section.key=value, as train takes it"),
    against: Optional[Path] = typer.Option(None, help="print only what differs from this recipe"),
) -> None:
    """The recipe resolved: every setting training will use, its base: chain followed and defaults filled in."""
    import yaml

    from emorec.training.config import differences, load_config, recipe_chain

    config = load_config(recipe, overrides).to_dict()
    err.print("recipe: " + " <- ".join(p.name for p in recipe_chain(recipe)), highlight=False, soft_wrap=True)
    if against is None:
        out.print(yaml.safe_dump(config, sort_keys=False).rstrip(), highlight=False, markup=False, soft_wrap=True)
        return
    changed = differences(config, load_config(against).to_dict())
    for key, old, new in changed:
        out.print(f"{key}: {old!r} -> {new!r}", highlight=False, markup=False, soft_wrap=True)
    if not changed:
        out.print(f"{recipe.name} and {against.name} resolve to the same settings", highlight=False)


def _version(value: bool) -> None:
    if value:
        from emorec.version import __version__

        out.print(f"emorec {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Emotion recognition from speech and face video."""


def _hush_libraries() -> None:
    """``--quiet``: Lightning's info lines and tips, and libraries' deprecation notices, stay off the
    terminal (train.log still gets Lightning's lines: only the terminal handlers are raised).

    Lightning gives its loggers a terminal handler on import unless the root logger has one (then
    they pass their lines up, and the ``lightning`` package logger prints them at INFO). So the
    root gets a handler at WARNING and Lightning's loggers their own terminal handler at WARNING,
    not passing lines up, before it loads: it stays quiet without being imported (seconds) in a
    command that never trains."""
    import logging
    import warnings

    def terminal() -> logging.Handler:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        return handler

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(terminal())
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in streams:  # Lightning already imported: raise the handler it added
            handler.setLevel(logging.WARNING)
        if not streams:
            logger.addHandler(terminal())
        logger.propagate = False
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def _options(pairs: list[str]) -> dict:
    import yaml

    parsed = {}
    for pair in pairs:
        if "=" not in pair:
            raise EmorecError(f"option {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return parsed


def _prepare_epilog() -> str:
    from rich.markup import escape

    from emorec.corpora import OPTION_HELP

    lines = ["Corpus options, -O key=value (repeatable):"]
    for kind, options in OPTION_HELP.items():
        if options:
            lines.append(f"{kind}: " + "; ".join(f"{key}: {text}" for key, text in options) + ".")
    # rich markup would eat bracketed lists such as [speech,song]
    return "\n\n".join(escape(line) for line in lines)


@app.command(epilog=_prepare_epilog())
def prepare(
    corpus: str = typer.Argument(..., help="ravdess, crema-d, folder or synthetic"),
    path: Path = typer.Argument(..., help="the corpus folder"),
    out_path: Path = typer.Option(Path("manifest.csv"), "--out", "-o", help="manifest to write"),
    option: list[str] = typer.Option([], "--option", "-O",
                                     help=r"corpus option key=value, e.g. include=\[speech,song], label_source=voice, "
                                          "labels_csv=labels.csv (all of them below)"),
) -> None:
    """Scan a corpus and write its manifest (one row per clip); bad files are listed, not fatal."""
    from emorec.corpora import prepare_corpus
    from emorec.corpora.base import plural
    from emorec.features.extract import write_skipped
    from emorec.manifest import write_manifest

    result = prepare_corpus(corpus, path, **_options(option))
    write_manifest(result.clips, out_path)
    skipped_path = out_path.with_suffix(".skipped.csv")
    write_skipped(result.skipped, skipped_path)
    speakers = len({c.speaker for c in result.clips})
    out.print(f"{plural(len(result.clips), 'clip')} from {plural(speakers, 'speaker')} -> {out_path}", highlight=False)
    for line in result.warnings[:10]:
        err.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if len(result.warnings) > 10:
        warnings_path = out_path.with_suffix(".warnings.txt")
        warnings_path.write_text("".join(f"{line}\n" for line in result.warnings), encoding="utf-8")
        err.print(f"warning: {plural(len(result.warnings) - 10, 'more warning')}, all listed in {warnings_path}", style="yellow",
                  markup=False, highlight=False, soft_wrap=True)
    if result.skipped:
        err.print(f"[yellow]{plural(len(result.skipped), 'file')} skipped, listed in {skipped_path}:")
        for item in result.skipped[:10]:
            err.print(f"  {item.path}: {item.reason}", markup=False, highlight=False)


@app.command()
def merge(
    manifests: list[Path] = typer.Argument(..., help="manifests from `emorec prepare`"),
    out_path: Path = typer.Option(..., "--out", "-o", help="the merged manifest"),
) -> None:
    """One manifest from several corpora (for multi-corpus training; clip ids must not repeat)."""
    from collections import Counter

    from emorec.corpora.base import plural
    from emorec.manifest import merge_manifests, write_manifest

    clips = merge_manifests(manifests)
    write_manifest(clips, out_path)
    counts = Counter(c.corpus for c in clips)
    out.print(f"{plural(len(clips), 'clip')} -> {out_path} (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")",
              markup=False, highlight=False)


@app.command()
def split(
    manifest: Path = typer.Argument(...),
    scheme: str = typer.Option("auto", help="auto, ravdess6, crema5, speaker_kfold, cross_corpus or stratified "
                               "(speaker-dependent)"),
    k: int = typer.Option(5, help="folds for speaker_kfold"),
    test_corpora: Optional[str] = typer.Option(None, help="cross_corpus: comma-separated corpora to test on"),
    val_speakers: int = typer.Option(2, help="validation speakers per fold, drawn from training speakers"),
    seed: int = typer.Option(0),
    out_path: Path = typer.Option(Path("splits.json"), "--out", "-o"),
) -> None:
    """Make speaker-independent folds (with the leakage guard) and print them."""
    from emorec.manifest import read_manifest
    from emorec.splits import make_splits, save_splits

    splits = make_splits(read_manifest(manifest), scheme, k=k, val_speakers=val_speakers, seed=seed,
                         test_corpora=[c for c in (test_corpora or "").split(",") if c])
    save_splits(splits, out_path)
    table = Table(title=f"{len(splits)} fold(s) -> {out_path}")
    for col in ("fold", "train", "val", "test", "test speakers", "speaker-independent"):
        table.add_column(col)
    for s in splits:
        table.add_row(s.name, str(len(s.train)), str(len(s.val)), str(len(s.test)),
                      ", ".join(s.test_speakers) or "-", "yes" if s.speaker_independent else "NO")
    out.print(table)


@app.command()
def extract(
    manifest: Path = typer.Argument(...),
    features: str = typer.Option("logmel", help="extractor name (emorec models-like list: logmel, mfcc, egemaps, ssl, npy)"),
    option: list[str] = typer.Option([], "--option", "-O", help="extractor option key=value, e.g. n_mels=80, layer=6"),
    cache: Path = typer.Option(Path(".cache/emorec"), help="feature cache folder"),
    workers: Optional[int] = typer.Option(None, help="processes (default: all cores)"),
) -> None:
    """Extract features for every clip into the cache; cached clips are skipped, bad files listed."""
    from emorec.features.base import create_extractor
    from emorec.features.extract import extract_features, write_skipped
    from emorec.manifest import read_manifest

    extractor = create_extractor(features, **_options(option))
    result = extract_features(read_manifest(manifest), extractor, cache, workers=workers)
    # Identical files share one cache entry, computed once: counted apart, "extracted" is what the bar counted.
    many = result.duplicates > 1
    duplicates = (f", {result.duplicates} duplicate{'s' if many else ''} of another clip "
                  f"(share{'' if many else 's'} its cache entry)") if result.duplicates else ""
    out.print(f"{features}: {result.extracted} extracted, {result.cached} already cached{duplicates}, "
              f"{len(result.skipped)} skipped ({result.seconds:.1f} s)")
    if result.skipped:
        path = manifest.with_suffix(f".{features}.skipped.csv")
        write_skipped(result.skipped, path)
        err.print(f"[yellow]skipped files listed in {path}")


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML recipe, e.g. configs/attn_crnn.yaml (not with --resume)"),
    manifest: Optional[Path] = typer.Option(None, help="override data.manifest"),
    splits: Optional[Path] = typer.Option(None, help="use these folds exactly (a splits.json from `emorec split --out`; sets split.file)"),
    epochs: Optional[int] = typer.Option(None, help="maximum epochs (default: the recipe's trainer.epochs, else 30)"),
    batch_size: Optional[int] = typer.Option(None, help="clips per batch (default: the recipe's trainer.batch_size, else 32)"),
    patience: Optional[int] = typer.Option(None, help="early-stopping patience in epochs (default: the recipe's trainer.patience, else 6)"),
    noise: Optional[float] = typer.Option(None, help="Gaussian feature noise sigma (default: the recipe's augment.noise)"),
    mixup: Optional[float] = typer.Option(None, help="MixUp alpha (default: the recipe's augment.mixup)"),
    no_augmentation: bool = typer.Option(False, "--no-augmentation", help="disable noise, MixUp and SpecAugment"),
    fold: Optional[int] = typer.Option(None, help="train this fold only"),
    folds: Optional[str] = typer.Option(None, help="'all' for cross-validation, or '1,3'"),
    jobs: Optional[int] = typer.Option(None, help="train the folds in this many processes side by side, one run folder (run.jobs; default 1)"),
    seed: Optional[int] = typer.Option(None, help="random seed of training (default: the recipe's trainer.seed, else 0)"),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of run directories"),
    set_: list[str] = typer.Option([], "--set", help="any config key: section.key=value"),
    quiet: bool = typer.Option(False, help="no progress bars, no library notices (they still reach train.log)"),
    devices: Optional[str] = typer.Option(None, help="devices per node: a count (2 = DDP with 2 processes), 'auto', or a list '0,1'"),
    num_nodes: Optional[int] = typer.Option(None, help="machines (multi-node DDP; set MASTER_ADDR, MASTER_PORT, NODE_RANK)"),
    accelerator: Optional[str] = typer.Option(None, help="auto, cpu or gpu"),
    precision: Optional[str] = typer.Option(None, help="32-true, bf16-mixed, 16-mixed, ..."),
    resume: Optional[Path] = typer.Option(None, help="continue this run directory (after a kill, crash or preemption)"),
) -> None:
    """Train a recipe; every run gets a timestamped directory with checkpoints, logs and reports.

    With --devices/--num-nodes > 1 it trains with DDP (Lightning starts the extra processes);
    with --resume RUN it continues RUN from its last complete epoch, with RUN's own config.
    """
    from emorec.training.config import load_config

    hardware = {"devices": _devices(devices), "num_nodes": num_nodes, "accelerator": accelerator, "precision": precision}
    if resume is not None:
        recipe_options = {"CONFIG": config, "--manifest": manifest, "--splits": splits, "--epochs": epochs,
                          "--batch-size": batch_size,
                          "--patience": patience, "--noise": noise, "--mixup": mixup, "--fold": fold, "--folds": folds, "--jobs": jobs,
                          "--seed": seed, "--run-dir": run_dir, "--set": set_ or None,
                          "--no-augmentation": no_augmentation or None}
        given = [name for name, value in recipe_options.items() if value is not None]
        if given:
            raise EmorecError(f"--resume continues a run with its own config.yaml; drop {', '.join(given)}")
        if not resume.is_dir():
            raise EmorecError(f"{resume}: no such run directory")
        if quiet:
            _hush_libraries()
        from emorec.crossval import is_global_zero, resume as resume_run

        path = resume_run(resume, progress=not quiet, hardware={k: v for k, v in hardware.items() if v is not None})
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
    from emorec.crossval import is_global_zero, train as run_training

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
        out.print(f"cross-validation over {data.get('n_folds', '?')} folds: UA {m.get('ua', 0):.3f} ± {s.get('ua', 0):.3f}, "
                  f"WA {m.get('wa', 0):.3f} ± {s.get('wa', 0):.3f}, macro-F1 {m.get('macro_f1', 0):.3f}", soft_wrap=True)
        out.print(f"summary: {run_dir / 'summary.md'}")
    for report in sorted(run_dir.glob("fold_*/report/report.json")):
        data = json.loads(report.read_text())
        out.print(f"{report.parent.parent.name}: UA {data['ua']:.3f}  WA {data['wa']:.3f}  macro-F1 {data['macro_f1']:.3f}  "
                  f"({report.parent / 'report.md'})", highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory (all folds) or one fold directory"),
    drop: Optional[str] = typer.Option(None, help="evaluate with one modality missing: audio or video"),
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
        out.print(f"{report.get('fold', '')}: UA {report['ua']:.3f}  WA {report['wa']:.3f}  macro-F1 {report['macro_f1']:.3f}")
    if summary:
        out.print(f"mean UA {summary['mean']['ua']:.3f} ± {summary['std']['ua']:.3f} -> {run_dir / 'summary.md'}")
    else:
        from emorec.evaluation.run_eval import trained_fold_dirs

        folder = f"report_drop_{drop}" if drop else "report"
        fold_dirs = [run_dir] if (run_dir / "model.json").is_file() else trained_fold_dirs(run_dir)
        for fold_dir in fold_dirs:
            out.print(f"report: {fold_dir / folder / 'report.md'}", highlight=False, soft_wrap=True)


@app.command()
def robustness(
    run_dirs: list[Path] = typer.Argument(..., help="a run directory (or the parts of one run trained side by side)"),
    conditions: Optional[str] = typer.Option(None, help="comma-separated: clean, gain:DB, band:LOW-HIGH, noise:SNR"
                                             "[:white|pink|brown], reverb:RT60, opus, mp3 (default: all of the suite)"),
    folds: Optional[str] = typer.Option(None, help="only these folds, e.g. 1,3"),
    part: str = typer.Option("test", help="score the test clips, or 'val' (validation actors) to choose a recipe"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="where robustness.json/.png go (default: the run)"),
    feature: Optional[list[str]] = typer.Option(None, help="KEY=VALUE over the models' audio features at inference "
                                                "only, e.g. trim_floor_db=6 (a front-end change, no retraining)"),
    quiet: bool = typer.Option(False),
) -> None:
    """UA of a run's test folds under recording conditions (gain, telephone band, noise, reverb, codecs) and
    the share of predictions per class, beside the clean figure."""
    from emorec.conditions import DEFAULT_SUITE, parse_condition
    from emorec.training.config import key_values

    if quiet:
        _hush_libraries()
    chosen = [int(f) for f in folds.split(",")] if folds else None
    suite = [c.strip() for c in conditions.split(",") if c.strip()] if conditions else DEFAULT_SUITE
    for name in suite:  # a bad condition or setting is named before the models load
        parse_condition(name)
    settings = key_values(feature or [], "--feature")
    from emorec.evaluation.robustness import robustness_run

    result = robustness_run(run_dirs, suite, folds=chosen, out=out_dir, progress=not quiet, part=part,
                            features=settings)
    for name, score in result["conditions"].items():
        out.print(f"{name:>14}: UA {score['ua']:.3f} (drop {score['drop_points']:+.1f} points)  "
                  f"most predicted {score['top_class']} {score['top_share']:.0%}", highlight=False)
    stem = "robustness" if part == "test" else "robustness_val"
    out.print(f"robustness: {(out_dir or run_dirs[0]) / f'{stem}.json'}", highlight=False, soft_wrap=True)


@app.command()
def ensemble(
    run_dirs: list[Path] = typer.Argument(..., help="run directories; their fold_K models are averaged fold by fold"),
    part: str = typer.Option("test", help="score the test clips, or 'val' (validation actors) to choose an ensemble"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default: ensemble-TIMESTAMP)"),
    quiet: bool = typer.Option(False),
) -> None:
    """Average the class probabilities of several trained runs per fold and report the ensemble."""
    from emorec.evaluation.ensemble import ensemble_runs

    if quiet:
        _hush_libraries()
    reports, summary, out_path = ensemble_runs(run_dirs, part=part, out_dir=out_dir, progress=not quiet)
    for report in reports:
        member_ua = ", ".join(f"{m['ua']:.3f}" for m in report["extra"]["members"])
        out.print(f"{report.get('fold', '')}: UA {report['ua']:.3f}; its members alone: {member_ua}")
    out.print(f"mean UA {summary['mean']['ua']:.3f} ± {summary['std']['ua']:.3f} on {part} clips "
              f"(members alone: {summary['extra']['mean_member_ua']:.3f}) -> {out_path / 'summary.md'}")


@app.command()
def predict(
    paths: list[Path] = typer.Argument(..., help="[MODEL] FILES...: audio or video files or folders; a first argument "
                                          "that is a trained model (fold directory, model.safetensors) names the model"),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="a trained model (default: the released model)"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="an exported ONNX model, run with onnxruntime"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (a .json beside it too)"),
    ensemble_with: list[Path] = typer.Option([], "--ensemble-with", "-e",
                                             help="another model to average with (repeatable)"),
    segments: bool = typer.Option(False, "--segments", help="list the speech segments of input longer than 6 s "
                                                            "(its answer is their duration-weighted mean)"),
) -> None:
    """Emotion probabilities per clip, as a table and as CSV/JSON (the released model unless told otherwise).
    Input longer than a training clip (6 s) is windowed over its speech; input over 10 minutes is refused."""
    from emorec.predict import MEDIA_SUFFIXES, is_model_path, predict_paths

    if model is None and onnx is None and len(paths) > 1 and is_model_path(paths[0]):
        model, paths = paths[0], paths[1:]
    elif model is None and onnx is None and not paths[0].exists() and paths[0].suffix.lower() not in MEDIA_SUFFIXES:
        raise EmorecError(f"{paths[0]}: no such model or input (a model is a trained fold directory or model.safetensors)")
    if model is not None and onnx is not None:
        raise EmorecError("give --model or --onnx, not both")
    predict_paths(model, paths, out_path, console=out, err_console=err, ensemble_with=ensemble_with, onnx=onnx,
                  show_segments=segments)


@app.command()
def timeline(
    inputs: list[Path] = typer.Argument(..., help="recordings of any length (audio, or video with sound)"),
    model: Optional[Path] = typer.Option(None, help="a trained model (fold directory); default: the released model"),
    out_dir: Path = typer.Option(Path("timeline"), "--out", "-o", help="where FILE.csv/.json/.vtt/.png go"),
    window: float = typer.Option(3.0, help="window seconds (the clip length the model learned from)"),
    hop: float = typer.Option(1.0, help="seconds between windows in long speech"),
    min_segment: float = typer.Option(1.0, help="shorter label runs merge into a neighbour"),
    context: float = typer.Option(1.0, help="seconds a speech region's windows reach past the VAD's edges"),
    formats: str = typer.Option("csv,json,vtt,png", help="comma-separated: csv, json, vtt, png"),
    quiet: bool = typer.Option(False),
) -> None:
    """Emotion over time: speech regions (Silero VAD), windowed calibrated probabilities, smoothed segments."""
    from rich.progress import Progress

    from emorec.api import load
    from emorec.errors import BadInputError
    from emorec.timeline_files import write_timeline

    rec = load(model)
    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    failed = 0
    for path in inputs:
        try:
            with Progress(transient=True, disable=quiet) as bar:
                task = bar.add_task(f"{path.name}: windows", total=None)
                result = rec.timeline(path, window=window, hop=hop, min_segment=min_segment, context=context,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
        except BadInputError as problem:
            err.print(f"skipped {problem.path}: {problem.reason}", markup=False, highlight=False, soft_wrap=True)
            failed += 1
            continue
        written = write_timeline(result, out_dir, chosen)
        out.print(f"{path}: {len(result.segments)} segment(s) in {result.duration:.1f} s -> "
                  + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
        for s in result.segments[:20]:
            out.print(f"  {s.start:8.2f}-{s.end:8.2f}  {s.label:<10} {s.probabilities[s.label]:.0%}", highlight=False)
    if failed == len(inputs):
        raise EmorecError(f"no input could be processed: all {failed} file(s) skipped (reasons above)")


@app.command()
def listen(
    simulate: Optional[Path] = typer.Option(None, help="play this file at real time instead of the microphone"),
    model: Optional[Path] = typer.Option(None, help="a trained model (fold directory); default: the released model"),
    speed: float = typer.Option(1.0, help="with --simulate: times real time (0 = as fast as it decodes)"),
    device: Optional[str] = typer.Option(None, help="the input device (sounddevice's name or number)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per update (JSON lines) on stdout"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="write the final timeline here (as `timeline`)"),
) -> None:
    """Emotion while you speak: speech start and end, an interim answer every second of speech, and
    each stretch of speech's final segments (the same as `emorec timeline` gives the recording). Ctrl-C ends it."""
    import json

    from emorec.api import load
    from emorec.live import microphone, played_file
    from emorec.streaming import EmotionStream
    from emorec.timeline_files import write_timeline

    from emorec.media import probe_duration

    if simulate:
        probe_duration(simulate)  # a missing file is one line before anything starts
    rec = load(model)
    blocks = played_file(simulate, speed=speed) if simulate else microphone(device=device)
    stream = EmotionStream(rec)

    def show(events) -> None:
        for event in events:
            if as_json:
                out.print(json.dumps(event.to_dict() if event.kind != "end" else {"type": "end", "time": event.time}),
                          highlight=False, soft_wrap=True)
            elif event.kind == "window":
                out.print(f"{event.time:8.1f} s  now {event.label:<10} {event.probabilities[event.label]:.0%}",
                          highlight=False)
            elif event.kind == "speech_start":
                out.print(f"{event.time:8.1f} s  speech from {event.start:.2f} s", highlight=False)
            elif event.kind == "segments":
                for s in event.segments:
                    out.print(f"{event.time:8.1f} s  segment {s.start:.2f}-{s.end:.2f}  {s.label:<10} "
                              f"{s.probabilities[s.label]:.0%}", highlight=False)
    if not as_json:
        err.print("listening to " + (str(simulate) if simulate else "the microphone") + " (Ctrl-C ends)",
                  highlight=False, soft_wrap=True)
    try:
        for block in blocks:
            show(stream.feed(block))
    except KeyboardInterrupt:
        pass
    show(stream.close())
    result = stream.timeline
    result.source = str(simulate) if simulate else "microphone"
    if out_dir is not None:
        written = write_timeline(result, out_dir, ["csv", "json", "vtt", "png"])
        err.print(f"{len(result.segments)} segment(s) in {result.duration:.1f} s -> " + ", ".join(map(str, written)),
                  highlight=False, soft_wrap=True)


@app.command()
def export(
    model: Path = typer.Argument(..., help="a trained model (fold directory, model.safetensors) or a released model's name"),
    out_path: Path = typer.Argument(..., help="the file to write, e.g. model.onnx"),
    format: str = typer.Option("onnx", "--format", help="onnx (waveform in, calibrated probabilities out)"),
    quantize: bool = typer.Option(False, help="also write OUT.int8.onnx with int8 dynamic quantisation of the weights"),
) -> None:
    """Export a model as a self-contained ONNX graph (front end inside: onnxruntime alone serves it)."""
    from emorec.onnx_export import export_onnx
    from emorec.released import released_model_dir

    if format != "onnx":
        raise EmorecError(f"unknown export format {format!r}; known: onnx")
    if not model.exists() and released_model_dir(str(model)) is not None:
        model = released_model_dir(str(model))
    written = export_onnx(model, out_path, quantize=quantize)
    out.print(f"{written['onnx']} ({written['bytes'] / 1e6:.1f} MB); onnxruntime vs torch on a test batch: "
              f"max |difference| {written['check']['max_abs_diff']:.1e}", highlight=False, soft_wrap=True)
    if quantize:
        out.print(f"{written['int8']} ({written['int8_bytes'] / 1e6:.1f} MB, int8 weights)", highlight=False, soft_wrap=True)


@app.command()
def serve(
    model: Optional[Path] = typer.Argument(None, help="a trained model, a released model's name or an .onnx file "
                                                      "(default: the released model)"),
    host: str = typer.Option("127.0.0.1", help="listen address (loopback by default; 0.0.0.0 exposes it)"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="inference threads (each job decodes and predicts one upload)"),
    queue: int = typer.Option(8, help="jobs that may wait for a thread; more are answered 503"),
    max_mb: float = typer.Option(25.0, help="largest upload (413 above)"),
    max_seconds: float = typer.Option(600.0, help="longest recording (413 above; predict and the Python API refuse "
                                                  "past 600 s too)"),
    timeout: float = typer.Option(60.0, help="per-request limit (503 past it)"),
    api_key: Optional[str] = typer.Option(None, envvar="EMOREC_API_KEY", help="require this key (or $EMOREC_API_KEY)"),
    cors_origin: list[str] = typer.Option([], help="allow browser pages from this origin (repeatable; off by default)"),
    max_streams: int = typer.Option(8, help="live WebSocket streams at once (/v1/stream); the next is refused"),
) -> None:
    """Serve the model over HTTP: POST /v1/predict and /v1/timeline, WS /v1/stream, GET /v1/model, /healthz,
    /metrics, a web page at /."""
    import uvicorn

    from emorec.released import released_model_dir
    from emorec.serve.app import ServeSettings, create_app

    if model is not None and not model.exists() and released_model_dir(str(model)) is not None:
        model = released_model_dir(str(model))
    import torch

    torch.set_num_threads(max(1, (torch.get_num_threads() or 1) // max(1, workers)))
    settings = ServeSettings(max_bytes=int(max_mb * 1e6), max_seconds=max_seconds, workers=workers, queue=queue,
                             timeout=timeout, api_key=api_key or None, cors_origins=tuple(cors_origin),
                             max_streams=max_streams)
    app_ = create_app(model, settings)
    out.print(f"emorec serving {app_.state.service.model_id} at http://{host}:{port}/  (API docs: /docs)", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level="warning", h11_max_incomplete_event_size=settings.max_header_bytes)


@app.command()
def models() -> None:
    """Released models (ready to use) and every registered architecture: name, modalities, parameters, seed."""
    from emorec.model_files import ModelMeta
    from emorec.models.registry import describe_models
    from emorec.released import DEFAULT, released_model_dir, released_models

    released = Table(title="released models (emorec.load(NAME); the default needs no name)")
    for col in ("name", "classes", "architecture", "recipe", "weights sha256"):
        released.add_column(col)
    for name in released_models():
        meta = ModelMeta.read(released_model_dir(name))
        released.add_row(name + (" (default)" if name == DEFAULT else ""), ", ".join(meta["class_names"]), meta["model"],
                         meta.get("recipe", ""), (meta.get("weights_sha256") or "")[:16])
    if released_models():
        out.print(released)
    else:
        out.print("no released model in this installation", highlight=False)
    table = Table(title="architectures (train them with a recipe)")
    for col in ("name", "modalities", "parameters", "seed", "summary"):
        table.add_column(col)
    for row in describe_models():
        table.add_row(row["name"], ", ".join(row["modalities"]), f"{row['parameters']:,}", row["seed"], row["summary"])
    out.print(table)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("emorec-demo"), "--out", "-o", help="where the corpus, cache and runs go"),
    epochs: int = typer.Option(12),
    quiet: bool = typer.Option(False),
) -> None:
    """Generate a SYNTHETIC corpus, then prepare -> extract -> train -> evaluate it end to end."""
    from emorec.demo import run_demo

    if quiet:
        _hush_libraries()
    run_demo(out_dir, epochs=epochs, progress=not quiet, console=out)


@app.command()
def compare(
    config_a: Path = typer.Argument(..., help="first YAML recipe, e.g. configs/cnn_lstm.yaml"),
    config_b: Path = typer.Argument(..., help="second YAML recipe, e.g. configs/cnn_pooling.yaml"),
    fold: Optional[int] = typer.Option(None, help="train and compare this fold only"),
    folds: Optional[str] = typer.Option(None, help="'all' or '1,3' (default: CONFIG_A's run.folds)"),
    manifest: Optional[Path] = typer.Option(None, help="override data.manifest of both"),
    epochs: Optional[int] = typer.Option(None, help="override trainer.epochs of both"),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of both run directories"),
    set_: list[str] = typer.Option([], "--set", help="config key for both: section.key=value"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the comparison as JSON"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train two recipes on the same split; print their metrics side by side and the one better on validation."""
    from emorec.atomic import write_json
    from emorec.compare import compare_configs, format_table, verdict

    extra = {"trainer": {"epochs": epochs}} if epochs is not None else None
    if quiet:
        _hush_libraries()
    result = compare_configs(config_a, config_b, fold=fold, folds=folds, manifest=manifest, run_dir=run_dir,
                             overrides=set_, extra=extra, progress=not quiet)
    out.print(format_table(result))
    out.print(verdict(result))
    for model in result["models"]:
        out.print(f"{model['label']}: {model['run_dir']}", highlight=False)
    if out_path:
        write_json(out_path, result)
        out.print(f"comparison -> {out_path}")


@app.command()
def fuse(
    audio_run: Path = typer.Argument(..., help="fold directory of the trained audio model, e.g. runs/attn_crnn-.../fold_1"),
    video_run: Path = typer.Argument(..., help="fold directory of the trained video model (same split, same fold)"),
    finetune: bool = typer.Option(False, "--finetune", help="then fine-tune the whole fused model end to end"),
    epochs: int = typer.Option(30, help="epochs of the fusion classifier on cached embeddings"),
    finetune_epochs: Optional[int] = typer.Option(None, help="epochs of end-to-end fine-tuning (default: --epochs)"),
    lr: float = typer.Option(1e-3, help="learning rate of the fusion classifier"),
    finetune_lr: float = typer.Option(1e-4, help="learning rate of end-to-end fine-tuning"),
    hidden: int = typer.Option(128, help="fusion layer size"),
    freeze_branches: bool = typer.Option(False, "--freeze-branches", help="fine-tune the fusion head only"),
    batch_size: Optional[int] = typer.Option(None),
    patience: Optional[int] = typer.Option(None),
    cache: Optional[Path] = typer.Option(None, help="feature cache for the embeddings (default: the audio run's)"),
    run_dir: Optional[Path] = typer.Option(None, help="parent folder of the new run directories"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Fuse a trained audio model and video model: cache their embeddings, train a fusion classifier, optionally fine-tune."""
    from emorec.fusion_workflow import fuse as run_fuse

    if quiet:
        _hush_libraries()
    result = run_fuse(audio_run, video_run, finetune=finetune, hidden=hidden, epochs=epochs, lr=lr,
                      finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, freeze_branches=freeze_branches,
                      batch_size=batch_size, patience=patience, cache=str(cache) if cache else None,
                      run_dir=run_dir, progress=not quiet)
    table = Table(title="fusion (one fold; the test fold never selects a model)")
    for col in ("model", "val UA", "test UA", "test WA", "test macro-F1"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in result.rows:
        table.add_row(row["model"], *(f"{row[k]:.3f}" for k in ("val_ua", "test_ua", "test_wa", "test_macro_f1")))
    out.print(table)
    out.print(f"fusion classifier: {result.fusion_run}", highlight=False)
    if result.finetune_run is not None:
        out.print(f"fine-tuned model: {result.finetune_run}", highlight=False)


@app.command()
def monitor(
    run_dir: Path = typer.Argument(..., help="a run directory (local, or copied back from a cloud machine)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep redrawing until the run stops running"),
    interval: float = typer.Option(5.0, help="seconds between redraws with --follow"),
    lines: int = typer.Option(12, help="last lines of train.log to show"),
) -> None:
    """Status, epoch x of y, latest metrics, best so far, ETA, GPU, last log lines of a run."""
    from emorec.monitor import monitor as show

    show(run_dir, follow=follow, interval=interval, log_lines=lines, console=out)


@app.command()
def runs(
    directory: Path = typer.Argument(Path("runs"), help="folder of run directories (default: runs)"),
) -> None:
    """List runs side by side: model, folds done, status, best validation UA, test UA, duration."""
    from emorec.monitor import runs_table

    out.print(runs_table(directory))


def main() -> None:
    try:
        app()
    except EmorecError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
