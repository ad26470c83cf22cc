"""emorec's own training speed before and after a change of its code, measured side by side now.

    python benchmarks/code_before_after.py --before 9c924cd [--rounds 2] [--epochs 3] [--threads 1]

Timings taken in different sessions differ by more than most speed-ups (other jobs on the machine,
its memory bandwidth), so this runs both versions on the same machine in one go: the revision
``--before`` is checked out into a git worktree under ``benchmarks/work/``, and rounds alternate
``emorec train`` of the headline recipe on RAVDESS fold 1 with that code and with the current
code (the same virtual environment, the same cached features, one process at a time). Throughput
is training clips over the training phase of each epoch after the first (``train_phase_seconds``),
the median over epochs and rounds. Writes ``results/code_before_after.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from common import REPO, RESULTS, WORK, command_line, ravdess_manifest

RECIPE = "configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml"


def worktree(revision: str):
    path = WORK / "before"
    if path.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=False, capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=REPO, check=True, capture_output=True)
    return path


def train_epochs(source: str, *, tag: str, epochs: int, threads: int) -> list[float]:
    run_root = WORK / "before_after" / tag
    shutil.rmtree(run_root, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=source, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "emorec", "train", RECIPE, "--manifest", str(ravdess_manifest()), "--fold", "1",
               "--epochs", str(epochs), "--patience", str(epochs + 1), "--quiet", "--run-dir", str(run_root),
               "--set", f"trainer.threads={threads}", "--set", "run.bootstrap=10", "--set", f"data.cache={WORK / 'cache'}",
               "--set", "split.scheme=ravdess6"]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{tag} failed:\n{proc.stderr[-3000:]}")
    fold = next(run_root.iterdir()) / "fold_1"
    phases = json.loads((fold / "train_summary.json").read_text())["train_phase_seconds"]
    clips = json.loads((fold / "model.json").read_text())["train_clips"]
    return [clips / s for s in phases[1:] if s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the code before the change")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    before_tree = worktree(args.before)
    rates: dict[str, list[float]] = {"before": [], "after": []}
    try:
        for r in range(args.rounds):
            for name, source in (("before", before_tree / "src"), ("after", REPO / "src")):
                rates[name] += train_epochs(str(source), tag=f"{name}_r{r}", epochs=args.epochs, threads=args.threads)
                print(f"round {r + 1} {name}: {statistics.median(rates[name]):.1f} clips/s", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=REPO, check=False,
                       capture_output=True)
    before, after = (statistics.median(rates[k]) for k in ("before", "after"))
    revision = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    result = {"what": "emorec train throughput (clips/s, training phase) of the headline recipe, RAVDESS fold 1, "
                      "code before a change against the current code, alternating on one machine",
              "command": command_line(), "recipe": RECIPE, "before_revision": revision, "threads": args.threads,
              "rounds": args.rounds, "epochs": args.epochs, "before_clips_per_s": before, "after_clips_per_s": after,
              "speedup": after / before, "per_epoch_clips_per_s": rates}
    out = RESULTS / "code_before_after.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"before {before:.1f} clips/s, after {after:.1f} clips/s: {after / before:.2f}x -> {out}")


if __name__ == "__main__":
    main()
