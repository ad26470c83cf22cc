"""Where a training step's time goes: the profile behind the speed work of ``speed_vs_keras.py``.

    python benchmarks/profile_training_step.py [--recipe configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml]
                                               [--steps 20] [--threads 2]

On RAVDESS fold 1's training clips with the recipe's own data pipeline (normalisation, length
bucketing, ``pad_collate``, the recipe's augmentation in ``EmotionClassifier.training_step``),
it times each phase of a step (loading and collating a batch, augmentation + forward + loss,
backward, the optimiser step) and, under ``torch.profiler``, the forward time of each top-level
layer of the architecture and the operators with the most self time. Writes
``benchmarks/results/profile_<recipe>.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from common import REPO, RESULTS, WORK, command_line, ravdess_manifest


def module_timers(model, timings: dict[str, list[float]]):
    """Forward hooks on each direct child (and each conv block) that add its wall time to ``timings``."""
    import torch.nn as nn

    handles = []
    targets = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            targets += [(f"{name}.{i}", block) for i, block in enumerate(child)]
        else:
            targets.append((name, child))
    for name, module in targets:
        def pre(_m, _inp, name=name):
            timings[name + "@start"].append(time.perf_counter())

        def post(_m, _inp, _out, name=name):
            timings[name].append(time.perf_counter() - timings[name + "@start"].pop())
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from emorec.training.experiment import prepare_experiment
    from emorec.training.config import load_config
    from emorec.training.fold import classifier_for, fold_datasets
    from emorec.data import make_loaders

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load_config(REPO / args.recipe, [f"data.manifest={ravdess_manifest()}", f"data.cache={WORK / 'cache'}",
                                              "split.scheme=ravdess6"])
    experiment = prepare_experiment(config, progress=False)
    train_set, val_set, _ = fold_datasets(experiment, experiment.splits[0])
    module = classifier_for(experiment, train_set)
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    loader, _ = make_loaders(train_set, val_set, batch_size=config.trainer.batch_size, seed=0)

    phases: dict[str, list[float]] = defaultdict(list)
    layers: dict[str, list[float]] = defaultdict(list)
    frames: list[int] = []

    def step(batch_iter, timed: bool):
        t0 = time.perf_counter()
        batch = next(batch_iter)
        t1 = time.perf_counter()
        loss = module.training_step(batch, 0)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if timed:
            for name, seconds in (("batch", t1 - t0), ("augment_forward_loss", t2 - t1), ("backward", t3 - t2),
                                  ("optimizer", t4 - t3)):
                phases[name].append(seconds)
            frames.append(int(batch["audio"].shape[1]))

    module.log = lambda *a, **k: None  # no Trainer attached: the step's logging is a no-op here
    batches = iter(loader)
    for _ in range(3):  # warm-up
        step(batches, timed=False)
    handles = module_timers(module.model, layers)
    for _ in range(args.steps):
        try:
            step(batches, timed=True)
        except StopIteration:
            batches = iter(loader)
    for h in handles:
        h.remove()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(min(args.steps, 8)):
            try:
                step(batches, timed=False)
            except StopIteration:
                batches = iter(loader)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in ops) or 1.0

    backward_nodes = sorted((e for e in ops if "Backward" in e.key), key=lambda e: e.cpu_time_total, reverse=True)
    per_step = {k: statistics.median(v) * 1000 for k, v in phases.items()}
    step_ms = sum(per_step.values())
    result = {
        "what": "median milliseconds per training step, by phase and by top-level layer (forward only)",
        "command": command_line(), "recipe": args.recipe, "threads": args.threads, "steps": args.steps,
        "batch_size": config.trainer.batch_size, "median_frames_per_batch": statistics.median(frames),
        "torch": torch.__version__,
        "step_ms": step_ms, "clips_per_s": config.trainer.batch_size / (step_ms / 1000),
        "phases_ms": per_step,
        "layers_forward_ms": {k: statistics.median(v) * 1000 for k, v in layers.items() if not k.endswith("@start")},
        "backward_nodes_share": [{"node": e.key, "share": e.cpu_time_total / total_self, "calls": e.count}
                                 for e in backward_nodes[:12]],
        "top_ops_self_share": [{"op": e.key, "share": e.self_cpu_time_total / total_self, "calls": e.count}
                               for e in ops[:20]],
    }
    out = RESULTS / f"profile_{Path(args.recipe).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.recipe}: {step_ms:.0f} ms/step ({result['clips_per_s']:.1f} clips/s), "
          f"median {result['median_frames_per_batch']} frames")
    for k, v in per_step.items():
        print(f"  {k:24s} {v:8.1f} ms")
    print("forward by layer:")
    for k, v in result["layers_forward_ms"].items():
        print(f"  {k:24s} {v:8.1f} ms")
    print("backward by autograd node (total time):")
    for row in result["backward_nodes_share"]:
        print(f"  {row['node']:40s} {100 * row['share']:5.1f} %  ({row['calls']} calls)")
    print("operators by self time:")
    for row in result["top_ops_self_share"]:
        print(f"  {row['op']:40s} {100 * row['share']:5.1f} %  ({row['calls']} calls)")


if __name__ == "__main__":
    main()
