"""Training throughput with 2 DDP CPU processes (gloo) versus 1 process, on this machine.

Each configuration is a real ``emorec train`` run (fold 1, a few epochs) in its own process
tree; throughput = training clips / seconds of the epoch's training phase (validation
excluded; ``train_phase_seconds`` in ``train_summary.json``), median over the epochs after
the first. The single process is measured with as many torch threads as cores (its best) and
with 1 thread; DDP with 2 processes of cores/2 threads each. The ratio is DDP over the best
single process: an honest figure, whatever it is.

    python benchmarks/ddp.py                 # RAVDESS speech, the benchmark recipe -> results/ddp.json
    python benchmarks/ddp.py --quick         # tiny synthetic corpus, a smoke test -> work/ddp_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import REPO, RESULTS, WORK, command_line


def quick_project(root: Path) -> tuple[Path, Path]:
    from emorec.corpora.synthetic import generate_synthetic_corpus
    from emorec.corpora import prepare_corpus
    from emorec.corpora.manifest import write_manifest

    corpus = generate_synthetic_corpus(root / "corpus", speakers=6, clips_per_emotion=6, emotions=("happy", "sad", "angry"))
    manifest = root / "manifest.csv"
    write_manifest(prepare_corpus("synthetic", corpus).clips, manifest)
    recipe = {
        "base": str(REPO / "configs" / "base.yaml"),
        "data": {"manifest": str(manifest), "cache": str(root / "cache"), "features": {"name": "logmel", "n_mels": 32}},
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "model": {"name": "attn_crnn", "channels": [8, 16], "time_pool": [2, 2], "freq_pool": [2, 2], "gru_hidden": 32, "attention_dim": 16, "dense": 32},
        "trainer": {"batch_size": 8},
        "run": {"name": "ddp_quick", "bootstrap": 10},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, manifest


def measure(recipe: Path, manifest: Path | None, out: Path, *, processes: int, threads: int, epochs: int) -> dict:
    run_root = out / f"p{processes}-t{threads}"
    shutil.rmtree(run_root, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("EMOREC_RUN_DIR", None)
    cmd = [sys.executable, "-m", "emorec", "train", str(recipe), "--fold", "1", "--epochs", str(epochs),
           "--patience", str(epochs + 1), "--accelerator", "cpu", "--devices", str(processes), "--quiet",
           "--run-dir", str(run_root), "--set", f"trainer.threads={threads}", "--set", "run.bootstrap=10"]
    if manifest is not None:
        cmd += ["--manifest", str(manifest)]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    run_dir = next(run_root.iterdir())
    summary = json.loads((run_dir / "fold_1" / "train_summary.json").read_text())
    meta = json.loads((run_dir / "fold_1" / "model.json").read_text())
    phases = [s for s in summary["train_phase_seconds"][1:] if s] or summary["train_phase_seconds"]
    seconds = statistics.median(phases)
    clips = meta["train_clips"]
    return {"processes": processes, "threads_per_process": threads, "train_clips": clips,
            "batches_per_epoch_per_process": summary.get("train_batches_per_epoch"),
            "epochs": summary["epochs_run"], "train_phase_seconds": summary["train_phase_seconds"],
            "median_train_epoch_seconds": round(seconds, 3), "clips_per_s": round(clips / seconds, 2),
            "wall_seconds": round(time.time() - started, 1), "run": str(run_dir.relative_to(REPO))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny synthetic corpus: a smoke test, not a result")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per configuration (default 4, quick 3)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    work = WORK / ("ddp_quick" if args.quick else "ddp")
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        recipe, manifest = quick_project(work)
        epochs = args.epochs or 3
    else:
        from common import ravdess_manifest

        recipe, manifest = REPO / "configs" / "ravdess_attn_crnn.yaml", ravdess_manifest()
        epochs = args.epochs or 4
    configs = [(1, cores), (1, 1), (2, max(1, cores // 2))]
    rows = [measure(recipe, manifest, work / "runs", processes=p, threads=t, epochs=epochs) for p, t in configs]
    single = max((r for r in rows if r["processes"] == 1), key=lambda r: r["clips_per_s"])
    ddp = next(r for r in rows if r["processes"] == 2)
    result = {
        "what": "training throughput (clips/s, training phase of an epoch) with 2 DDP CPU processes (gloo) vs 1 process",
        "command": command_line(),
        "corpus": "synthetic (quick smoke test)" if args.quick else "RAVDESS speech, fold 1 of the standard 6 folds",
        "recipe": str(recipe.relative_to(REPO)) if recipe.is_relative_to(REPO) else recipe.name,
        "machine": {"cpu_count": cores, "platform": platform.platform(), "python": platform.python_version()},
        "configurations": rows,
        "ddp_over_best_single_process": round(ddp["clips_per_s"] / single["clips_per_s"], 3),
        "ddp_over_single_process_same_total_threads": round(
            ddp["clips_per_s"] / next(r for r in rows if r["processes"] == 1 and r["threads_per_process"] == cores)["clips_per_s"], 3),
        "note": ("DDP halves each process's batches per epoch (disjoint shards) and adds one gradient all-reduce per "
                 "step over gloo; on a CPU machine both processes share the same cores and memory bandwidth."),
    }
    out = args.out or (WORK / "ddp_quick.json" if args.quick else RESULTS / "ddp.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['processes']} process(es) x {r['threads_per_process']} thread(s): {r['clips_per_s']:.1f} clips/s "
              f"({r['median_train_epoch_seconds']:.2f} s per training epoch)")
    print(f"DDP / best single process: {result['ddp_over_best_single_process']:.3f}  -> {out}")


if __name__ == "__main__":
    main()
