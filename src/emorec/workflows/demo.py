"""``emorec demo``: the whole pipeline on a built-in SYNTHETIC corpus, in a few minutes on a CPU.

The corpus is generated tones whose pitch, energy, tempo and spectral tilt depend on the
emotion label; it is not speech and its numbers say nothing about real emotion recognition.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from emorec.corpora import prepare_corpus
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.corpora.manifest import write_manifest
from emorec.training.config import config_from_dict


def demo_config(out_dir: Path, *, epochs: int) -> dict:
    return {
        "data": {
            "manifest": str(out_dir / "manifest.csv"),
            "cache": str(out_dir / "cache"),
            "features": {"name": "logmel", "n_mels": 40},
        },
        "split": {"scheme": "speaker_kfold", "k": 4, "val_speakers": 1},
        "model": {
            "name": "attn_crnn",
            "channels": [8, 16],
            "time_pool": [2, 2],
            "freq_pool": [2, 2],
            "gru_hidden": 32,
            "attention_dim": 32,
            "dense": 32,
        },
        "optim": {"lr": 3e-3},
        "augment": {"noise": 0.005, "mixup": 0.2},
        "trainer": {"epochs": epochs, "batch_size": 16, "patience": 6},
        "run": {"dir": str(out_dir / "runs"), "name": "demo", "folds": "1"},
    }


def run_demo(
    out_dir: Path, *, epochs: int = 12, progress: bool = True, console: Console | None = None
) -> Path:
    from emorec.workflows.crossval import train

    console = console or Console()
    out_dir = Path(out_dir)
    corpus = out_dir / "corpus"
    console.print(
        f"[bold]emorec demo[/bold]: generating a SYNTHETIC corpus (tones, not speech) in {corpus}"
    )
    generate_synthetic_corpus(corpus, speakers=8, clips_per_emotion=8)
    result = prepare_corpus("synthetic", corpus, progress=progress)
    write_manifest(result.clips, out_dir / "manifest.csv")
    console.print(
        f"prepared {len(result.clips)} clips from {len({c.speaker for c in result.clips})} speakers"
    )
    config = config_from_dict(demo_config(out_dir, epochs=epochs))
    run_dir = train(config, progress=progress)
    report = next(run_dir.glob("fold_*/report/report.md"))
    console.print(
        f"[bold green]done[/bold green]: report at {report} (plots beside it)", soft_wrap=True
    )
    return run_dir
