"""Data in: ``prepare`` a corpus into a manifest, ``merge`` manifests, ``split`` into folds,
``extract`` features."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emorec.cli.app import _options, app, err, out


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
    option: list[str] = typer.Option(
        [],
        "--option",
        "-O",
        help=r"corpus option key=value, e.g. include=\[speech,song], label_source=voice, "
        "labels_csv=labels.csv (all of them below)",
    ),
) -> None:
    """Scan a corpus and write its manifest (one row per clip); bad files are listed, not fatal."""
    from emorec.corpora import prepare_corpus
    from emorec.corpora.base import plural
    from emorec.features.skipped import write_skipped
    from emorec.corpora.manifest import write_manifest

    result = prepare_corpus(corpus, path, **_options(option))
    write_manifest(result.clips, out_path)
    skipped_path = out_path.with_suffix(".skipped.csv")
    write_skipped(result.skipped, skipped_path)
    speakers = len({c.speaker for c in result.clips})
    out.print(
        f"{plural(len(result.clips), 'clip')} from {plural(speakers, 'speaker')} -> {out_path}",
        highlight=False,
    )
    for line in result.warnings[:10]:
        err.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if len(result.warnings) > 10:
        warnings_path = out_path.with_suffix(".warnings.txt")
        warnings_path.write_text("".join(f"{line}\n" for line in result.warnings), encoding="utf-8")
        err.print(
            f"warning: {plural(len(result.warnings) - 10, 'more warning')}, all "
            f"listed in {warnings_path}",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if result.skipped:
        err.print(
            f"[yellow]{plural(len(result.skipped), 'file')} skipped, listed in {skipped_path}:"
        )
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
    from emorec.corpora.manifest import merge_manifests, write_manifest

    clips = merge_manifests(manifests)
    write_manifest(clips, out_path)
    counts = Counter(c.corpus for c in clips)
    out.print(
        f"{plural(len(clips), 'clip')} -> {out_path} ("
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        + ")",
        markup=False,
        highlight=False,
    )


@app.command()
def split(
    manifest: Path = typer.Argument(...),
    scheme: str = typer.Option(
        "auto",
        help="auto, ravdess6, crema5, speaker_kfold, cross_corpus or stratified "
        "(speaker-dependent)",
    ),
    k: int = typer.Option(5, help="folds for speaker_kfold"),
    test_corpora: Optional[str] = typer.Option(
        None, help="cross_corpus: comma-separated corpora to test on"
    ),
    val_speakers: int = typer.Option(
        2, help="validation speakers per fold, drawn from training speakers"
    ),
    seed: int = typer.Option(0),
    out_path: Path = typer.Option(Path("splits.json"), "--out", "-o"),
) -> None:
    """Make speaker-independent folds (with the leakage guard) and print them."""
    from emorec.corpora.manifest import read_manifest
    from emorec.corpora.splits import make_splits, save_splits

    splits = make_splits(
        read_manifest(manifest),
        scheme,
        k=k,
        val_speakers=val_speakers,
        seed=seed,
        test_corpora=[c for c in (test_corpora or "").split(",") if c],
    )
    save_splits(splits, out_path)
    table = Table(title=f"{len(splits)} fold(s) -> {out_path}")
    for col in ("fold", "train", "val", "test", "test speakers", "speaker-independent"):
        table.add_column(col)
    for s in splits:
        table.add_row(
            s.name,
            str(len(s.train)),
            str(len(s.val)),
            str(len(s.test)),
            ", ".join(s.test_speakers) or "-",
            "yes" if s.speaker_independent else "NO",
        )
    out.print(table)


@app.command()
def extract(
    manifest: Path = typer.Argument(...),
    features: str = typer.Option(
        "logmel", help="extractor name (emorec models-like list: logmel, mfcc, egemaps, ssl, npy)"
    ),
    option: list[str] = typer.Option(
        [], "--option", "-O", help="extractor option key=value, e.g. n_mels=80, layer=6"
    ),
    cache: Path = typer.Option(Path(".cache/emorec"), help="feature cache folder"),
    workers: Optional[int] = typer.Option(None, help="processes (default: all cores)"),
) -> None:
    """Extract features for every clip into the cache;
    cached clips are skipped, bad files listed."""
    from emorec.features.base import create_extractor
    from emorec.features.extract import extract_features
    from emorec.features.skipped import write_skipped
    from emorec.corpora.manifest import read_manifest

    extractor = create_extractor(features, **_options(option))
    result = extract_features(read_manifest(manifest), extractor, cache, workers=workers)
    # Identical files share one cache entry, computed once:
    # counted apart, "extracted" is what the bar counted.
    many = result.duplicates > 1
    duplicates = (
        (
            f", {result.duplicates} duplicate{'s' if many else ''} of another clip "
            f"(share{'' if many else 's'} its cache entry)"
        )
        if result.duplicates
        else ""
    )
    out.print(
        f"{features}: {result.extracted} extracted, {result.cached} already cached{duplicates}, "
        f"{len(result.skipped)} skipped ({result.seconds:.1f} s)"
    )
    if result.skipped:
        path = manifest.with_suffix(f".{features}.skipped.csv")
        write_skipped(result.skipped, path)
        err.print(f"[yellow]skipped files listed in {path}")
