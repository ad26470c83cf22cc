"""Batch-64 inference of the v1 and v2 architectures with the code of a past revision and with the
current code, alternating in one run on one machine.

    python benchmarks/inference_before_after.py --before REVISION [--rounds 5] [--threads 1]

The revision is checked out into a git worktree under ``benchmarks/work/`` and each round runs one
fresh process per code version (``PYTHONPATH`` pointing at that tree's ``src``), versions
alternating. A process builds each architecture from its recipe (``configs/attn_crnn.yaml``;
``configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml`` with its three delta planes), seeds its weights,
and times forward passes in eval mode under ``torch.inference_mode`` over one batch of 64 clips of
250-400 log-mel frames (RAVDESS's range at 100 frames/s), padded to the longest. Both the wall time
and the process's CPU time per batch are kept: CPU time is the figure to compare on a shared
machine, where other jobs stretch wall time. The sum of the outputs must agree between the two
versions (same seed, same batch), so a speed-up that changed the numbers shows. Medians over rounds;
writes ``results/inference_before_after.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from code_before_after import worktree
from common import REPO, RESULTS, command_line

RECIPES = {"v1": ("configs/attn_crnn.yaml", 1), "v2": ("configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml", 3)}

CHILD = """
import json, sys, time
import torch
from emorec.models.registry import create_model
from emorec.training.config import load_config
torch.set_num_threads(int(sys.argv[1]))
found = {}
for key, (recipe, planes) in json.loads(sys.argv[2]).items():
    model_config = dict(load_config(recipe).model)
    name = model_config.pop("name")
    torch.manual_seed(0)
    model = create_model(name, num_classes=8, audio_dim=64 * planes, **model_config).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(250, 401, (64,), generator=generator)
    frames = int(lengths.max())
    batch = {"audio": torch.randn(64, frames, 64 * planes, generator=generator),
             "audio_mask": torch.arange(frames)[None] < lengths[:, None]}
    with torch.inference_mode():
        logits = model(batch)  # warm-up
        wall, cpu = [], []
        for _ in range(5):
            w, c = time.perf_counter(), time.process_time()
            model(batch)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    found[key] = {"wall_ms": 1000 * sorted(wall)[2], "cpu_ms": 1000 * sorted(cpu)[2],
                  "output_sum": float(logits.double().sum())}
print(json.dumps(found))
"""


def measure(source: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": source, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), json.dumps(RECIPES)], cwd=REPO, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision of the code before the change")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "inference_before_after.json"))
    args = parser.parse_args()
    before_tree = worktree(args.before)
    sources = {"before": str(before_tree / "src"), "after": str(REPO / "src")}
    rounds: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for version in (("before", "after") if r % 2 == 0 else ("after", "before")):
            rounds[version].append(measure(sources[version], args.threads))
            print(f"round {r + 1} {version}: " + ", ".join(
                f"{k} {v['cpu_ms']:.0f} ms cpu" for k, v in rounds[version][-1].items()), flush=True)
    summary = {}
    for key in RECIPES:
        entry = {}
        for version in ("before", "after"):
            entry[f"{version}_cpu_ms"] = statistics.median(m[key]["cpu_ms"] for m in rounds[version])
            entry[f"{version}_wall_ms"] = statistics.median(m[key]["wall_ms"] for m in rounds[version])
        entry["cpu_speedup"] = entry["before_cpu_ms"] / entry["after_cpu_ms"]
        entry["wall_speedup"] = entry["before_wall_ms"] / entry["after_wall_ms"]
        sums = {rounds[v][0][key]["output_sum"] for v in ("before", "after")}
        entry["outputs_agree"] = max(sums) - min(sums) <= 1e-3 * max(1.0, abs(max(sums)))
        summary[key] = entry
    result = {"before_revision": args.before, "threads": args.threads, "rounds": args.rounds, "batch": 64,
              "frames": "250-400 per clip, 64 mel bands", "recipes": {k: v[0] for k, v in RECIPES.items()},
              "summary": summary, "command": command_line()}
    from emorec.atomic import write_json

    write_json(args.out, result)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
