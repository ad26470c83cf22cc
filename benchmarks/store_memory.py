"""Peak memory of `emorec train` over a corpus of tens of thousands of clips, packed or held.

    python benchmarks/store_memory.py                       # 40 000 clips, packs float16 and float32
    python benchmarks/store_memory.py --clips 8000 --packs float16,none

A corpus that size is not on this machine, so its features are made: every clip gets an entry in
the feature cache of the multi-corpus recipe's extractor (64-mel log-mel with deltas: 192 values
a frame), with a length drawn from the clip durations of the real corpora (2.5 s on average,
CREMA-D's), as extraction would have written it. `emorec train` then finds every clip cached and
trains the recipe for one short epoch on them (5 made corpora) (``split.scheme release``: 16 validation speakers,
the rest training), as a child process whose peak resident set (``ru_maxrss``) is the figure.
``data.pack none`` is the loader before packs (every clip's frames held in memory): it is run
only at sizes this machine holds. Writes ``results/store_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, WORK, command_line

RECIPE = REPO / "configs" / "release_crnn_v2_multicorpus.yaml"
CORPORA = 5
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust")


def make_corpus(folder: Path, clips: int, speakers: int, seed: int = 0) -> tuple[Path, int]:
    """A manifest of ``clips`` made clips and their cached features; ``(manifest, bytes of float32)``."""
    from emorec.features.base import extractor_from_spec
    from emorec.features.store import FeatureStore
    from emorec.corpora.manifest import Clip, write_manifest
    from emorec.training.config import load_config

    config = load_config(RECIPE)
    extractor = extractor_from_spec(config.data.features)
    store = FeatureStore.for_extractor(folder / "cache", extractor)
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.gamma(6.0, 2.5 / 6.0, size=clips), 0.8, 12.0)
    rows, total = [], 0
    from tqdm import tqdm

    for i in tqdm(range(clips), desc="made clips", mininterval=2):
        corpus = f"made{i % CORPORA}"  # several corpora, as the recipe's corpus adversary needs
        clip = Clip(clip_id=f"{corpus}/{i}", path=str(folder / "audio" / f"{i}.wav"), corpus=corpus,
                    speaker=f"{corpus}/{i % speakers}", emotion=EMOTIONS[i % len(EMOTIONS)],
                    duration=float(seconds[i]), sample_rate=16000, channels=1, content_hash=f"{i:064x}")
        frames = int(seconds[i] * extractor.frames_per_second)
        if clip not in store:
            store.put(clip, (rng.normal(size=(frames, extractor.n_features)) * 12 - 50).astype(np.float32))
        total += frames * extractor.n_features * 4
        rows.append(clip)
    manifest = folder / "manifest.csv"
    write_manifest(rows, manifest)
    return manifest, total


def peak_rss_of_training(manifest: Path, folder: Path, pack: str, draws: int) -> dict:
    """One `emorec train` child; its peak resident set in MiB and its wall time."""
    command = [sys.executable, "-m", "emorec", "train", str(RECIPE), "--manifest", str(manifest), "--epochs", "1",
               "--quiet", "--run-dir", str(folder / "runs"),
               "--set", f"data.cache={folder / 'cache'}", "--set", f"data.pack={pack}",
               "--set", f"data.epoch_draws={draws}",
               "--set", "split.scheme=release", "--set", "data.workers=1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
    if peak <= before:
        raise RuntimeError("peak RSS not larger than an earlier child's: run each configuration in its own call")
    return {"pack": pack, "peak_rss_mib": peak / 1024, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40000)
    parser.add_argument("--speakers", type=int, default=400)
    parser.add_argument("--packs", default="float16,float32", help="data.pack values to train with, in order")
    parser.add_argument("--draws", type=int, default=2000, help="clips drawn in the one epoch")
    parser.add_argument("--out", default=str(RESULTS / "store_memory.json"))
    args = parser.parse_args()
    folder = WORK / "store_memory" / str(args.clips)
    manifest, held_bytes = make_corpus(folder, args.clips, args.speakers)
    runs = []
    for pack in args.packs.split(","):  # each in its own child so that ru_maxrss is its own
        child = subprocess.run([sys.executable, __file__, "--one", str(manifest), str(folder), pack, str(args.draws)],
                               check=True, capture_output=True, text=True, cwd=Path(__file__).parent)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"data.pack={pack}: peak RSS {runs[-1]['peak_rss_mib']:.0f} MiB, {runs[-1]['seconds']:.0f} s")
    result = {
        "what": "peak resident set of `emorec train` (one epoch) over made clips whose features are cached",
        "clips": args.clips, "speakers": args.speakers, "epoch_draws": args.draws, "recipe": str(RECIPE.relative_to(REPO)),
        "features_float32_mib": held_bytes / 2**20, "runs": runs, "target_mib": 3 * 1024,
        "command": command_line(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"features as float32 arrays: {held_bytes / 2**20:.0f} MiB; wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--one":
        _, _, manifest, folder, pack, draws = sys.argv
        print(json.dumps(peak_rss_of_training(Path(manifest), Path(folder), pack, int(draws))))
    else:
        main()
