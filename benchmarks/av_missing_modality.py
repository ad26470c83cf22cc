"""Audio-visual models against their single-modality variants, and with a modality missing.

On a generated audio-visual corpus (:mod:`emorec.corpora.synthetic_av`: four classes from two
binary factors; audio carries one factor strongly and the other weakly, video the other way
round), for ``bilstm_attention`` and ``hybrid_tcn`` with their seed recipes
(``configs/bilstm_attention_av.yaml``, ``configs/hybrid_tcn.yaml``, both with modality dropout):

* the AV model, the audio-only and the video-only model, trained on the same speaker folds;
* the AV model evaluated with its video dropped (``emorec evaluate --drop video``) against the
  audio-only model, and with its audio dropped against the video-only model.

Every model is chosen on validation speakers; the test speakers are read once per evaluation.
All variants get the same benchmark settings: 3 validation speakers and at least 15 epochs
before early stopping (with the recipes' patience alone, 2 validation speakers stopped some
runs after 4 epochs, and the fold-to-fold spread of a single-modality model was 10 points:
too coarse for a 2-point comparison).

    python benchmarks/av_missing_modality.py [--folds 3] [--speakers 24] [--clips 12]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from common import REPO, RESULTS, WORK, command_line
from emorec.atomic import write_json
from emorec.corpora.synthetic_av import generate_av_feature_corpus
from emorec.evaluation.run_eval import evaluate_run
from emorec.runs.folder import fold_number
from emorec.training.config import load_config
from emorec.workflows.crossval import train

RECIPES = {"bilstm_attention": "bilstm_attention_av.yaml", "hybrid_tcn": "hybrid_tcn.yaml"}
CORPUS = dict(audio_dim=6, video_dim=5, shift=1.0, weak_shift=0.5, clip_noise=1.0)


def run(model: str, modalities: tuple[str, ...], corpus: tuple, args: argparse.Namespace) -> tuple[list[dict], object]:
    manifest, audio_dir, video_dir = corpus
    specs = {"audio": f"{{name: npy, directory: {audio_dir}, modality: audio}}",
             "video": f"{{name: npy, directory: {video_dir}, modality: video}}"}
    first, *rest = modalities
    overrides = [f"data.manifest={manifest}", f"data.cache={WORK / 'av' / 'cache'}", "data.workers=0",
                 f"data.features={specs[first]}", f"data.video_features={specs[rest[0]] if rest else 'null'}",
                 "split.scheme=speaker_kfold", f"split.k={args.folds}", f"split.val_speakers={args.val_speakers}",
                 f"trainer.min_epochs={args.min_epochs}",
                 f"run.dir={WORK / 'av' / 'runs'}", f"run.name={model}-{'+'.join(modalities)}", "run.folds=all",
                 "run.bootstrap=200", "trainer.threads=1", *args.overrides]
    config = load_config(REPO / "configs" / RECIPES[model], overrides)
    run_dir = train(config, progress=False)
    reports = [json.loads((d / "report" / "report.json").read_text())
               for d in sorted(run_dir.glob("fold_*"), key=fold_number)]
    return reports, run_dir


def summary(reports: list[dict]) -> dict:
    ua = [r["ua"] for r in reports]
    return {"mean_ua": float(np.mean(ua)), "folds_ua": ua, "mean_wa": float(np.mean([r["wa"] for r in reports]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--speakers", type=int, default=24)
    parser.add_argument("--val-speakers", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=15)
    parser.add_argument("--clips", type=int, default=12, help="clips per speaker and emotion")
    parser.add_argument("--models", default=",".join(RECIPES))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(RESULTS / "av_missing_modality.json"))
    args = parser.parse_args()
    corpus = generate_av_feature_corpus(WORK / "av" / "corpus", speakers=args.speakers, clips=args.clips, **CORPUS)
    entries = []
    for model in args.models.split(","):
        started = time.time()
        av_reports, av_run = run(model, ("audio", "video"), corpus, args)
        entry = {"model": model, "recipe": f"configs/{RECIPES[model]}", "av": summary(av_reports),
                 "audio_only": summary(run(model, ("audio",), corpus, args)[0]),
                 "video_only": summary(run(model, ("video",), corpus, args)[0])}
        for dropped in ("video", "audio"):
            reports, _ = evaluate_run(av_run, drop=dropped, progress=False)
            entry[f"av_drop_{dropped}"] = summary(reports)
        ua = {k: entry[k]["mean_ua"] for k in ("av", "audio_only", "video_only", "av_drop_video", "av_drop_audio")}
        entry["av_beats_both"] = ua["av"] > max(ua["audio_only"], ua["video_only"])
        entry["drop_video_minus_audio_only"] = ua["av_drop_video"] - ua["audio_only"]
        entry["drop_audio_minus_video_only"] = ua["av_drop_audio"] - ua["video_only"]
        entry["within_2_points"] = (entry["drop_video_minus_audio_only"] >= -0.02
                                    and entry["drop_audio_minus_video_only"] >= -0.02)
        entry["seconds"] = round(time.time() - started, 1)
        entries.append(entry)
        print(f"{model}: " + ", ".join(f"{k} {v:.3f}" for k, v in ua.items()))
    result = {
        "corpus": f"generated AV features (emorec.corpora.synthetic_av, {CORPUS}), {args.speakers} speakers x 4 "
                  f"emotions x {args.clips} clips, speaker k-fold k={args.folds}",
        "metric": "mean test UA over folds; 'within 2 points' = a dropped-modality AV model is at most 0.02 UA below "
                  "the matching single-modality model",
        "models": entries, "machine": platform.platform(), "command": command_line(),
    }
    write_json(args.out, result)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
