"""Extraction speed, training throughput, padding with/without bucketing, peak memory.

Real RAVDESS speech clips; every timing is the median of several repeats in this one run.

    python benchmarks/throughput.py [--clips 240]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import time

import numpy as np
import torch

from common import RESULTS, WORK, command_line, ravdess_manifest
from emorec.atomic import write_json
from emorec.data import BucketBatchSampler, ClipDataset, Normalizer, pad_collate, padding_fraction
from emorec.features.base import create_extractor
from emorec.features.extract import extract_features
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import read_manifest
from emorec.models import create_model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def extraction(clips, workers: int, repeats: int) -> dict:
    extractor = create_extractor("logmel", n_mels=64)
    rates, realtime = [], []
    for _ in range(repeats):
        cache = WORK / "throughput_cache"
        shutil.rmtree(cache, ignore_errors=True)
        result = extract_features(clips, extractor, cache, workers=workers, progress=False)
        rates.append(result.extracted / result.seconds)
        realtime.append(result.audio_seconds / result.seconds)
    return {"workers": workers, "clips_per_s": statistics.median(rates), "times_real_time": statistics.median(realtime),
            "repeats": repeats}


def training(clips, batch_size: int, repeats: int) -> dict:
    extractor = create_extractor("logmel", n_mels=64)
    cache = WORK / "throughput_cache"
    store = FeatureStore.for_extractor(cache, extractor)
    labels = sorted({c.emotion for c in clips})
    raw = ClipDataset(clips, {l: i for i, l in enumerate(labels)}, {"audio": store})
    dataset = ClipDataset(clips, {l: i for i, l in enumerate(labels)}, {"audio": store},
                          {"audio": Normalizer.fit(raw.features["audio"])})
    lengths = dataset.lengths()
    out = {"batch_size": batch_size}
    for bucketing in (False, True):
        batches = list(BucketBatchSampler(lengths, batch_size, seed=0, bucketing=bucketing))
        out[f"padding_fraction_{'bucketed' if bucketing else 'random'}"] = padding_fraction(lengths, batches)
    model = create_model("attn_crnn", num_classes=len(labels), audio_dim=64)
    optimizer = torch.optim.Adam(model.parameters())
    for bucketing in (False, True):
        rates = []
        for rep in range(repeats):
            batches = list(BucketBatchSampler(lengths, batch_size, seed=rep, bucketing=bucketing))
            started = time.perf_counter()
            for indices in batches:
                batch = pad_collate([dataset[i] for i in indices])
                loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            rates.append(len(lengths) / (time.perf_counter() - started))
        out[f"train_clips_per_s_{'bucketed' if bucketing else 'random'}"] = statistics.median(rates)
    out["bucketing_speedup"] = out["train_clips_per_s_bucketed"] / out["train_clips_per_s_random"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clips = read_manifest(ravdess_manifest())
    clips = [clips[i] for i in np.random.default_rng(0).permutation(len(clips))[: args.clips]]
    load_before = os.getloadavg()
    result = {
        "clips": len(clips),
        "torch_threads": torch.get_num_threads(),
        "extraction_logmel": [extraction(clips, workers, args.repeats) for workers in (1, 2)],
        "training_attn_crnn": training(clips, 32, args.repeats),
        "peak_rss_mb": peak_rss_mb(),
        # Other work on the machine depresses absolute rates; ratios within this run still hold.
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "command": command_line(),
    }
    write_json(RESULTS / "throughput.json", result)
    print(result)


if __name__ == "__main__":
    main()
