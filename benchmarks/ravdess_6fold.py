"""RAVDESS speech, 8 classes, the standard 6 speaker-independent folds: log-mel + Attention CRNN.

Inductive: normalisation statistics come from each fold's training actors, checkpoints are
chosen on validation actors drawn from the training actors, the 4 test actors are read once.

    python benchmarks/ravdess_6fold.py [--config configs/ravdess_attn_crnn.yaml] [--speaker-norm]

``--speaker-norm`` (per-speaker standardisation, which reads the test actors' unlabelled clips)
is transductive; its result goes to a separate file and is never the headline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import REPO, RESULTS, WORK, command_line, ravdess_manifest, run_to_result
from emorec.atomic import write_json
from emorec.training.config import load_config
from emorec.training.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(REPO / "configs" / "ravdess_attn_crnn.yaml"))
    parser.add_argument("--speaker-norm", action="store_true")
    parser.add_argument("--folds", default="all")
    parser.add_argument("--out", default=None, help="results JSON (default by model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    manifest = ravdess_manifest()
    overrides = [f"data.manifest={manifest}", f"data.cache={WORK / 'cache'}", f"run.dir={WORK / 'runs'}",
                 f"run.folds={args.folds}", *args.overrides]
    if args.speaker_norm:
        overrides.append("data.normalization=speaker")
    config = load_config(args.config, overrides)
    run_dir = train(config)
    features = ", ".join(f"{k}={v}" for k, v in config.data.features.items())
    result = run_to_result(run_dir, corpus="RAVDESS speech (audio-only, 1440 clips, 24 actors, 8 classes)",
                           features=features, model=config.model["name"], command=command_line(),
                           speaker_norm=args.speaker_norm)
    default = "ravdess_6fold_speaker_norm.json" if args.speaker_norm else "ravdess_6fold.json"
    out = Path(args.out) if args.out else RESULTS / default
    write_json(out, result)
    print(f"mean UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} -> {out}")


if __name__ == "__main__":
    main()
