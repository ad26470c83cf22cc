"""emorec against the seeds' own Keras stack (``../shared/peer_keras``), side by side on this machine.

    PEER_PYTHON=~/.peer-venv/bin/python python benchmarks/speed_vs_keras.py [--rounds 3] [--threads 2]

What is measured, interleaved round by round so that the machine's load falls on both alike
(medians over rounds; ratios are emorec / peer within this one run):

* Training clips/s of the real ``emorec train`` step, in its own process: the Lightning loop with
  the recipe's augmentation, EMA and length bucketing, on RAVDESS fold 1 (training actors only),
  for ``configs/attn_crnn.yaml`` (against the peer's v1) and the headline recipe
  ``configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml`` (against the peer's v2). Throughput is training
  clips over the training phase of an epoch (validation excluded: ``train_phase_seconds`` of
  ``train_summary.json``), the median over the epochs after the first (warm-up), as the peer
  skips its first epoch. Peak RSS is the training process's own (``wait4``).
* Inference of the exported fold model on cached features (model forward only, as the peer
  times its compiled forward): batch 1 (one clip at its own length, ms per clip) and batches of
  64 padded to their longest clip (clips/s, 3 passes), under ``torch.inference_mode``.
* Log-mel extraction of all RAVDESS speech clips with 2 workers into an empty cache, with and
  without delta planes (times real time).

The peer runs ``attn_crnn_keras.py --bench`` with the Python named by ``$PEER_PYTHON`` (its own
virtual environment, outside this repository; see its README); without it the peer's columns
are left out and the run says so.
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

from common import REPO, RESULTS, WORK, command_line, data_dir, ravdess_manifest

V1_RECIPE = "configs/attn_crnn.yaml"
V2_RECIPE = "configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml"


def run_measured(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command``; returns its result and its own peak RSS in MB (``wait4`` of that child)."""
    errors = WORK / "speed" / "stderr.txt"
    errors.parent.mkdir(parents=True, exist_ok=True)
    with open(errors, "w") as err:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(command, proc.returncode, out, errors.read_text()), usage.ru_maxrss / 1024.0


def peer_bench(python: str, *, v2: bool, threads: int) -> dict:
    script = REPO.parent / "shared" / "peer_keras" / "attn_crnn_keras.py"
    command = [python, str(script), "--data", str(data_dir() / "ravdess-speech-16k"), "--bench",
               "--threads", str(threads), "--cache", str(WORK / "speed" / "peer_cache"), *(["--v2"] if v2 else [])]
    proc, rss = run_measured(command, dict(os.environ))
    if proc.returncode != 0:
        sys.exit(f"peer failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.setdefault("peak_rss_mb", rss)
    return result


def emorec_training(recipe: str, *, threads: int, epochs: int, tag: str) -> dict:
    run_root = WORK / "speed" / "runs" / tag
    shutil.rmtree(run_root, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("EMOREC_RUN_DIR", None)
    command = [sys.executable, "-m", "emorec", "train", recipe, "--manifest", str(ravdess_manifest()),
               "--fold", "1", "--epochs", str(epochs), "--patience", str(epochs + 1), "--quiet",
               "--run-dir", str(run_root), "--set", f"trainer.threads={threads}", "--set", "run.bootstrap=10",
               "--set", f"data.cache={WORK / 'cache'}", "--set", "split.scheme=ravdess6"]
    proc, rss = run_measured(command, env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    fold_dir = next(run_root.iterdir()) / "fold_1"
    summary = json.loads((fold_dir / "train_summary.json").read_text())
    clips = json.loads((fold_dir / "model.json").read_text())["train_clips"]
    phases = [s for s in summary["train_phase_seconds"][1:] if s]
    return {"train_clips": clips, "train_phase_seconds": summary["train_phase_seconds"],
            "train_clips_per_s": clips / statistics.median(phases), "peak_rss_mb": rss, "fold_dir": fold_dir}


def emorec_inference(fold_dir: Path, *, threads: int, clips_batch1: int = 200) -> dict:
    """Forward passes of the exported model over test-fold clips' cached features."""
    import numpy as np
    import torch

    from emorec.data import pad_collate
    from emorec.evaluation.run_eval import clips_dataset, experiment_for_run, fold_split
    from emorec.inference.predictor import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.load(fold_dir)
    experiment = experiment_for_run(fold_dir.parent, progress=False)
    dataset = clips_dataset(experiment, fold_split(fold_dir, experiment).test, predictor)
    model = predictor.model.eval()
    items = [dataset[i] for i in range(len(dataset))]
    order = np.random.default_rng(0).permutation(len(items))[:clips_batch1]
    with torch.inference_mode():
        for i in order[:10]:
            model(pad_collate([items[i]]))  # warm-up
        started = time.perf_counter()
        for i in order:
            model(pad_collate([items[i]]))
        ms_batch1 = (time.perf_counter() - started) * 1000.0 / len(order)
        batches = [pad_collate(items[i:i + 64]) for i in range(0, len(items), 64)]
        model(batches[0])
        started = time.perf_counter()
        for _ in range(3):
            for batch in batches:
                model(batch)
        batch64 = 3 * len(items) / (time.perf_counter() - started)
    return {"infer_ms_per_clip_batch1": ms_batch1, "infer_clips_per_s_batch64": batch64,
            "infer_clips": len(order), "infer_pool_clips": len(items)}


def extraction(*, deltas: bool, workers: int = 2) -> dict:
    from emorec.features.base import create_extractor
    from emorec.features.extract import extract_features
    from emorec.corpora.manifest import read_manifest

    cache = WORK / "speed" / "extraction_cache"
    shutil.rmtree(cache, ignore_errors=True)
    result = extract_features(read_manifest(ravdess_manifest()), create_extractor("logmel", n_mels=64, deltas=deltas),
                              cache, workers=workers, progress=False)
    shutil.rmtree(cache, ignore_errors=True)
    return {"clips": result.extracted, "seconds": result.seconds, "audio_seconds": result.audio_seconds,
            "times_real_time": result.audio_seconds / result.seconds}


def median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def versions(peer_python: str | None) -> dict:
    import lightning
    import torch

    import emorec

    found = {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
             "emorec": emorec.__version__}
    if peer_python:
        code = "import tensorflow as tf, keras, numpy; print(tf.__version__, keras.__version__, numpy.__version__)"
        out = subprocess.run([peer_python, "-c", code], capture_output=True, text=True).stdout.split()
        if len(out) == 3:
            found.update({"peer_tensorflow": out[0], "peer_keras": out[1], "peer_numpy": out[2]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="emorec epochs per training measurement (first is warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "speed_vs_keras.json")
    args = parser.parse_args()
    peer_python = os.environ.get("PEER_PYTHON", "").strip() or None
    if peer_python is None:
        print("PEER_PYTHON is not set: measuring emorec alone (see ../shared/peer_keras/README.md to install the peer)")
    load_before = os.getloadavg()
    rows: dict[str, list[dict]] = {k: [] for k in ("peer_v1", "peer_v2", "emorec_v1", "emorec_v2",
                                                    "emorec_v1_inference", "emorec_v2_inference",
                                                    "extraction_logmel", "extraction_logmel_deltas")}
    for r in range(args.rounds):
        for name, recipe, v2 in (("v1", V1_RECIPE, False), ("v2", V2_RECIPE, True)):
            if peer_python:
                rows[f"peer_{name}"].append(peer_bench(peer_python, v2=v2, threads=args.threads))
            trained = emorec_training(recipe, threads=args.threads, epochs=args.epochs, tag=f"{name}_r{r}")
            rows[f"emorec_{name}_inference"].append(emorec_inference(trained.pop("fold_dir"), threads=args.threads))
            rows[f"emorec_{name}"].append(trained)
            print(f"round {r + 1}: {name} emorec {trained['train_clips_per_s']:.1f} clips/s"
                  + (f", peer {rows[f'peer_{name}'][-1]['train_clips_per_s']:.1f}" if peer_python else ""), flush=True)
        rows["extraction_logmel"].append(extraction(deltas=False))
        rows["extraction_logmel_deltas"].append(extraction(deltas=True))

    summary: dict[str, dict] = {}
    for name in ("v1", "v2"):
        ours, infer = rows[f"emorec_{name}"], rows[f"emorec_{name}_inference"]
        entry = {"recipe": V1_RECIPE if name == "v1" else V2_RECIPE,
                 "emorec_train_clips_per_s": median_of(ours, "train_clips_per_s"),
                 "emorec_peak_rss_mb": median_of(ours, "peak_rss_mb"),
                 "emorec_infer_ms_per_clip_batch1": median_of(infer, "infer_ms_per_clip_batch1"),
                 "emorec_infer_clips_per_s_batch64": median_of(infer, "infer_clips_per_s_batch64")}
        if peer_python:
            peer = rows[f"peer_{name}"]
            entry.update({
                "peer_train_clips_per_s": median_of(peer, "train_clips_per_s"),
                "peer_peak_rss_mb": median_of(peer, "peak_rss_mb"),
                "peer_infer_ms_per_clip_batch1": median_of(peer, "infer_ms_per_clip_batch1"),
                "peer_infer_clips_per_s_batch64": median_of(peer, "infer_clips_per_s_batch64"),
            })
            entry["train_ratio"] = entry["emorec_train_clips_per_s"] / entry["peer_train_clips_per_s"]
            entry["infer_batch64_ratio"] = entry["emorec_infer_clips_per_s_batch64"] / entry["peer_infer_clips_per_s_batch64"]
            entry["infer_batch1_speedup"] = entry["peer_infer_ms_per_clip_batch1"] / entry["emorec_infer_ms_per_clip_batch1"]
            entry["peak_rss_ratio"] = entry["emorec_peak_rss_mb"] / entry["peer_peak_rss_mb"]
        summary[name] = entry
    summary["extraction"] = {"workers": 2,
                             "logmel_times_real_time": median_of(rows["extraction_logmel"], "times_real_time"),
                             "logmel_deltas_times_real_time": median_of(rows["extraction_logmel_deltas"], "times_real_time")}
    result = {
        "what": "emorec vs the seeds' Keras stack (peer_keras): training, inference and extraction speed on this machine",
        "command": command_line() if not peer_python else "PEER_PYTHON=<peer venv python> " + command_line(),
        "rounds": args.rounds, "threads": args.threads, "emorec_epochs": args.epochs,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(peer_python),
        "peer": "absent (PEER_PYTHON not set)" if not peer_python else "attn_crnn_keras.py --bench",
        "summary": summary,
        "rounds_raw": {k: v for k, v in rows.items() if v},
        # Other work on the machine depresses absolute rates; ratios within this run still hold.
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
