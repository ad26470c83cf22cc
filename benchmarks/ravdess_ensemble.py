"""RAVDESS 6-fold: an ensemble of finished benchmark runs (mean of class probabilities per fold).

    python benchmarks/ravdess_ensemble.py results/ravdess_6fold.json results/ravdess_6fold_seed1.json \\
        results/ravdess_6fold_seed2.json --out results/ravdess_6fold_ensemble.json

Each argument is a committed result of ``ravdess_6fold.py``; its ``run_dir`` entries (under the
gitignored ``benchmarks/work/``) hold the fold models. Every fold is scored twice: on its
validation actors (``val_ua``: what an ensemble may be chosen by) and on its test actors
(``ua``). Nothing is fitted: members weigh equally, so the test actors select nothing.

Plan, written down before any ensemble's test score was seen (2026-11-23, session 3):
the single Attention CRNN recipe (``configs/ravdess_attn_crnn_cosine.yaml``, 56.6 % UA) is
trained with seeds 0 (the existing headline run), 1 and 2, and the three are averaged. The
reason to expect a gain came from validation actors only: averaging the existing v1 and v2
cosine runs raised mean validation UA from 58.9 % (members alone) to 62.0 %
(``emorec ensemble RUN... --part val``; its committed form is
``results/ravdess_6fold_ensemble_v1_v2.json``, made after the plan's results). The seed count (3) was fixed by the session's CPU
budget, not by any score. Also reported, exploratory: the family ensemble of every run under the
fixed-budget protocol (the three seeds + ``ravdess_6fold_v2_cosine.json``, whose recipe was
written after seeing v2's seed-recipe test result), written to
``results/ravdess_6fold_ensemble_family.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, command_line
from emorec.atomic import write_json
from emorec.evaluation.ensemble import ensemble_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members", nargs="+", help="results JSONs of ravdess_6fold.py runs")
    parser.add_argument("--out", default=str(RESULTS / "ravdess_6fold_ensemble.json"))
    parser.add_argument("--model", default=None, help="model name for the results (default: the members' names)")
    args = parser.parse_args()
    member_results = [json.loads(Path(m).read_text()) for m in args.members]
    if any(r.get("speaker_norm") for r in member_results):
        raise SystemExit("a member is transductive (speaker_norm); the ensemble would be too: not supported here")
    run_dirs = []
    for result in member_results:
        dirs = result["run_dir"] if isinstance(result["run_dir"], list) else [result["run_dir"]]
        run_dirs += [REPO / d for d in dirs]
    ensemble_dir = REPO / "benchmarks" / "work" / "ensembles" / Path(args.out).stem
    val_reports, _, _ = ensemble_runs(run_dirs, part="val", out_dir=ensemble_dir / "val", progress=False)
    test_reports, _, _ = ensemble_runs(run_dirs, part="test", out_dir=ensemble_dir / "test", progress=False)
    folds = []
    for val, test in zip(val_reports, test_reports):
        assert val["fold"] == test["fold"]
        folds.append({
            "fold": int(str(test["fold"]).removeprefix("fold")), "test_speakers": test["extra"]["test_speakers"],
            "ua": test["ua"], "wa": test["wa"], "macro_f1": test["macro_f1"],
            "member_ua": [m["ua"] for m in test["extra"]["members"]],
            "val_ua": val["ua"], "member_val_ua": [m["ua"] for m in val["extra"]["members"]],
            "members": [m["fold_dir"] for m in test["extra"]["members"]],
        })
    ua = np.array([f["ua"] for f in folds])
    names = sorted({r["model"] for r in member_results})
    result = {
        "corpus": member_results[0]["corpus"], "features": member_results[0]["features"],
        "model": args.model or f"ensemble of {len(member_results)}: {' + '.join(names)}",
        "protocol": member_results[0]["protocol"] + "; members averaged with equal weights",
        "speaker_norm": False,
        "folds": folds,
        "mean_ua": float(ua.mean()), "std_ua": float(ua.std(ddof=1)),
        "mean_wa": float(np.mean([f["wa"] for f in folds])),
        "mean_macro_f1": float(np.mean([f["macro_f1"] for f in folds])),
        "mean_member_ua": float(np.mean([f["member_ua"] for f in folds])),
        "mean_val_ua": float(np.mean([f["val_ua"] for f in folds])),
        "mean_member_val_ua": float(np.mean([f["member_val_ua"] for f in folds])),
        "members": [{"results": str(Path(m)), "model": r["model"], "mean_ua": r["mean_ua"], "command": r["command"]}
                    for m, r in zip(args.members, member_results)],
        "mean_train_seconds_per_fold": float(sum(r["mean_train_seconds_per_fold"] for r in member_results)),
        "run_dir": [str(d.relative_to(REPO)) for d in run_dirs],
        "command": command_line(),
    }
    write_json(Path(args.out), result)
    print(f"validation UA {result['mean_val_ua']:.3f} (members {result['mean_member_val_ua']:.3f}); "
          f"test UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} (members {result['mean_member_ua']:.3f}) -> {args.out}")


if __name__ == "__main__":
    main()
