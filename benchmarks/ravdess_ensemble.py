"""RAVDESS 6-fold: an ensemble of finished benchmark runs (mean of class probabilities per fold).

    python benchmarks/ravdess_ensemble.py results/ravdess_6fold.json results/ravdess_6fold_seed1.json \\
        results/ravdess_6fold_seed2.json --out results/ravdess_6fold_ensemble.json

Each argument is a committed result of ``ravdess_6fold.py``. Members are averaged from their
committed per-clip probabilities (``results/predictions/<result>.csv.gz``, see ``predictions.py``);
a member without that file is exported first from its ``run_dir`` entries (under the gitignored
``benchmarks/work/``), so an ensemble can be re-scored on any machine once its members have been
exported. Every fold is scored twice: on its validation actors (``val_ua``: what an ensemble may
be chosen by) and on its test actors (``ua``). Nothing is fitted: members weigh equally, so the
test actors select nothing. ``--val-only`` drops every test row on reading and prints the
validation scores alone: how an ensemble is judged before its test score may be seen.

Plan, written down before any ensemble's test score was seen (2026-11-23):
the single Attention CRNN recipe (``configs/ravdess_attn_crnn_cosine.yaml``, 56.6 % UA) is
trained with seeds 0 (the existing headline run), 1 and 2, and the three are averaged. The
reason to expect a gain came from validation actors only: averaging the existing v1 and v2
cosine runs raised mean validation UA from 58.9 % (members alone) to 62.0 %
(``emorec ensemble RUN... --part val``; its committed form is
``results/ravdess_6fold_ensemble_v1_v2.json``, made after the plan's results). The seed count (3) was fixed by the available CPU
budget, not by any score. Also reported, exploratory: the family ensemble of every run under the
fixed-budget protocol (the three seeds + ``ravdess_6fold_v2_cosine.json``, whose recipe was
written after seeing v2's seed-recipe test result), written to
``results/ravdess_6fold_ensemble_family.json``.

Plan, written down before the test score of any ensemble below was seen (2026-11-23,
CPU only): the CPU ensemble averages exactly three members, every one trained on the 2-core CPU
with its per-clip probabilities committed: ``c5_deltas`` and ``c6_v2_mels128`` (the two search
candidates that have them) and a new run of ATTN-CRNN v2's 64-mel recipe with seed 1
(``python ravdess_6fold.py --config ../configs/ravdess_attn_crnn_v2_cosine.yaml --jobs 2 --set
trainer.seed=1 --set run.name=v2_cosine_seed1 --out results/ravdess_6fold_v2_cosine_seed1.json``),
the cheapest recipe on this CPU (30 epochs). Why expect a gain, from validation actors only:
``--val-only`` on c5 + c6 gave 62.1 % mean validation UA against 58.9 % for the members alone.
The member count (3) was fixed by the CPU time available, not by any score. The ensemble is
written to ``results/ravdess_6fold_ensemble_cpu.json`` and becomes the headline only if its mean
validation UA beats the current headline ensemble's (63.8 %); it is reported whatever it scores.
Caveat: the test scores of c5 and c6 alone (57.4 %, 57.2 %) were seen before this plan.

Plan, written down before any run below was trained (2026-11-23, CPU only): weight
averaging. ATTN-CRNN v2's 64-mel recipe is trained with an exponential moving average of its
weights and BatchNorm statistics (``configs/ravdess_attn_crnn_v2_ema.yaml``, decay 0.995), with
exactly two seeds, 0 and 1 (``python ravdess_6fold.py --config ../configs/ravdess_attn_crnn_v2_ema.yaml
--jobs 2 --set trainer.seed=S --set run.name=v2_ema_seedS --out results/ravdess_6fold_v2_ema_seedS.json``),
the number the CPU time available allows. (1) The average is judged against the same recipe
without it, seed for seed, on validation actors: mean validation UA of the two EMA runs against
that of ``ravdess_6fold_v2_cosine.json`` and ``ravdess_6fold_v2_cosine_seed1.json`` (59.9 %, 51.2 %:
55.6 %); test UA is reported beside it whatever it shows. (2) The CPU ensemble grows by the new
runs: every run whose per-clip probabilities are committed, members weighing equally (c5, c6, v2
seed 1 and the EMA runs), written to ``results/ravdess_6fold_ensemble_cpu6.json`` (named for its six members). Amended at
16:58 UTC, before any EMA run had finished an epoch past the first: a third EMA seed (2) is
trained right after seed 1 if seed 1 finishes before 18:20 UTC (the clock is the only
condition), and then joins as a sixth member; the ensemble is scored once, with all its members.
It becomes the headline only if its mean validation UA beats the headline ensemble's 63.8 %; it
is reported whatever it scores. Caveat: the three old members' test scores were seen before.

Plan, written down before any run below was trained (2026-11-23, 20:21 UTC, CPU only):
the recalibration is built into training (``configs/ravdess_attn_crnn_v2_ema_bn.yaml``:
the EMA recipe + ``trainer.recalibrate_bn``) and the CPU ensemble grows by new seeds of it:
seed 3, then seed 4, then seed 5 (``python ravdess_6fold.py --config ../configs/ravdess_attn_crnn_v2_ema_bn.yaml
--jobs 2 --set trainer.seed=S --set run.name=v2_ema_bn_seedS --out results/ravdess_6fold_v2_ema_bn_seedS.json``),
each trained only if it can start before 21:55 UTC (the clock is the only condition). The
ensemble is the headline ensemble's six members plus every new seed, members weighing equally,
written to ``results/ravdess_6fold_ensemble_cpu_bnN.json`` (N = its member count), scored once
with all its members. It becomes the headline only if its mean validation UA beats the
headline's 63.9 %; it is reported whatever it scores. Issue #3's 65 % is judged on this
inductive protocol only. Also measured, if it can start before 22:15 UTC: the same recipe,
seed 3, with per-speaker feature standardisation (``--speaker-norm``, i.e. ``data.normalization=speaker``, run
name ``v2_ema_bn_spk_seed3``): transductive (each test actor's unlabelled clips set its own
statistics), so it is reported beside its inductive twin, seed for seed, and never joins an
inductive ensemble nor counts for the headline or for #3. (Amended at 20:24 UTC while seed 3
was in its second epoch, no score read: the clock stamp corrected, seed 5 added and the
speaker-normalised run moved after it, as seed 3 runs faster than the first draft assumed.)

Plan, written down before any run below was trained (2026-11-23, 22:51 UTC, CPU only):
going from 6 to 9 members with seeds of one recipe moved validation UA by 0.2 points, so the
ensemble now grows by members that differ from the EMA seeds by more than their seed. Two
one-change variants of the recalibrated EMA recipe: delta and delta-delta input planes
(``configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml``) and additive attention pooling
(``configs/ravdess_attn_crnn_v2_ema_bn_attnpool.yaml``). Trained in this order: deltas seed 6,
attnpool seed 6, deltas seed 7, attnpool seed 7 (``python ravdess_6fold.py --config
../configs/ravdess_attn_crnn_v2_ema_bn_V.yaml --jobs 2 --set trainer.seed=S --set
run.name=v2_ema_bn_V_seedS --out results/ravdess_6fold_v2_ema_bn_V_seedS.json``), each only if
it can start before 00:30 UTC (the clock is the only condition). The ensemble is the headline
ensemble's nine members plus every new run, members weighing equally, written to
``results/ravdess_6fold_ensemble_cpu_mixN.json`` (N = its member count) and scored once with all
its members. It becomes the headline only if its mean validation UA beats the headline's 64.1 %;
it is reported whatever it scores. Each variant is also judged alone against the recipe it
changes, on validation actors (mean of its seeds against 61.4 %, the mean of the six recalibrated
EMA seeds), with test UA reported beside it. Issue #3's 65 % is judged on this inductive protocol.

Plan, written down after the ensemble of 13 was scored (2026-11-24, 00:56 UTC, CPU only):
the delta-plane variant led on validation actors (63.5 and 64.1 % against a 61.4 % mean for the six
plain recalibrated EMA seeds), so it gets an ensemble of its own made only of seeds trained after
this plan: seeds 8, 9 and 10 of ``configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml`` (same command as
above, V = deltas), members weighing equally, written to ``results/ravdess_6fold_ensemble_deltas3.json``
and scored once, when all three exist (seed 8 first, then 9 and 10). Seeds 6 and 7 are
left out because their test scores (62.8, 62.9 %) were read before this plan. It becomes the headline
only if its mean validation UA beats the headline's 65.2 %; it is reported whatever it scores.

Plan, written down before the delta-plane ensemble of three was scored and before seeds 11 and 12
were trained (2026-11-24, 01:55 UTC, CPU only; seed 9 was in its first epoch, no score
of 9 or 10 read): the delta-plane ensemble also grows to five, seeds 8 to 12, whatever the ensemble
of three scores. Seeds 11 and 12 (same command, V = deltas) are trained right after seed 10, each
only if it can start before 03:40 UTC (the clock is the only condition). The ensemble of every
delta-plane seed from 8 up, members weighing equally, is written to
``results/ravdess_6fold_ensemble_deltasN.json`` (N = its member count) and scored once with all its
members. It becomes the headline only if its mean validation UA beats the headline's at the time
(65.2 %, or the ensemble of three's if that won); it is reported whatever it scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, command_line
from emorec.atomic import write_json
from emorec.evaluation.metrics import classification_metrics
from predictions import (FoldPart, average_members, export_predictions, load_predictions, predictions_path,
                         run_dirs_of)


def member_predictions(results_json: Path, result: dict) -> Path:
    """The member's committed per-clip probabilities, exported from its run directories if missing."""
    path = REPO / result["predictions"] if result.get("predictions") else predictions_path(results_json)
    if path.is_file():
        return path
    run_dirs = run_dirs_of(result)
    if not all(d.is_dir() for d in run_dirs):
        raise SystemExit(f"{results_json}: no predictions file ({path}) and its run directories are gone")
    export_predictions(run_dirs, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members", nargs="+", help="results JSONs of ravdess_6fold.py runs")
    parser.add_argument("--out", default=str(RESULTS / "ravdess_6fold_ensemble.json"))
    parser.add_argument("--model", default=None, help="model name for the results (default: the members' names)")
    parser.add_argument("--val-only", action="store_true",
                        help="print the validation UA of the average and its members; read no test row, write nothing")
    args = parser.parse_args()
    member_results = [json.loads(Path(m).read_text()) for m in args.members]
    if any(r.get("speaker_norm") for r in member_results):
        raise SystemExit("a member is transductive (speaker_norm); the ensemble would be too: not supported here")
    files = [member_predictions(Path(m), r) for m, r in zip(args.members, member_results)]
    predictions, sources = [load_predictions(f) for f in files], [str(f) for f in files]
    if args.val_only:  # test rows are dropped before anything is averaged or scored
        print_validation(validation_scores(average_members([val_rows(p) for p in predictions], sources)))
        return
    averaged = average_members(predictions, sources)
    val_scores = validation_scores(averaged)
    test_speakers = {f["fold"]: f["test_speakers"] for f in member_results[0]["folds"]}
    member_epochs = [{f["fold"]: f.get("epochs") for f in r["folds"]} for r in member_results]
    folds = []
    for fold in sorted({k for k, _ in averaged}):
        test, test_members = averaged[(fold, "test")]
        val_ua, member_val_ua = val_scores[fold]
        metrics = classification_metrics(test.labels, test.probs, test.class_names, bootstrap=0)
        folds.append({
            "fold": fold, "test_speakers": test_speakers[fold],
            "ua": metrics["ua"], "wa": metrics["wa"], "macro_f1": metrics["macro_f1"],
            "epochs": [epochs[fold] for epochs in member_epochs],  # the epoch each member kept
            "member_ua": [ua(test, p) for p in test_members],
            "val_ua": val_ua, "member_val_ua": member_val_ua,
        })
    fold_ua = np.array([f["ua"] for f in folds])
    names = sorted({r["model"] for r in member_results})
    result = {
        "corpus": member_results[0]["corpus"],
        "features": " | ".join(dict.fromkeys(r["features"] for r in member_results)),  # each distinct one, in order
        "model": args.model or f"ensemble of {len(member_results)}: {' + '.join(names)}",
        "protocol": member_results[0]["protocol"] + "; members averaged with equal weights",
        "speaker_norm": False,
        "folds": folds,
        "mean_ua": float(fold_ua.mean()), "std_ua": float(fold_ua.std(ddof=1)),
        "mean_wa": float(np.mean([f["wa"] for f in folds])),
        "mean_macro_f1": float(np.mean([f["macro_f1"] for f in folds])),
        "mean_member_ua": float(np.mean([f["member_ua"] for f in folds])),
        "mean_val_ua": float(np.mean([f["val_ua"] for f in folds])),
        "mean_member_val_ua": float(np.mean([f["member_val_ua"] for f in folds])),
        "members": [{"results": str(Path(m)), "model": r["model"], "mean_ua": r["mean_ua"], "command": r["command"]}
                    for m, r in zip(args.members, member_results)],
        "mean_train_seconds_per_fold": float(sum(r["mean_train_seconds_per_fold"] for r in member_results)),
        "predictions": [str(f.relative_to(REPO) if f.is_relative_to(REPO) else f) for f in files],
        "command": command_line(),
    }
    write_json(Path(args.out), result)
    print(f"validation UA {result['mean_val_ua']:.3f} (members {result['mean_member_val_ua']:.3f}); "
          f"test UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} (members {result['mean_member_ua']:.3f}) -> {args.out}")


def ua(part: FoldPart, probs: np.ndarray) -> float:
    """Unweighted average recall of ``probs`` on the clips of ``part``."""
    return classification_metrics(part.labels, probs, part.class_names, bootstrap=0)["ua"]


def val_rows(predictions: dict[tuple[int, str], FoldPart]) -> dict[tuple[int, str], FoldPart]:
    """The validation parts of one member's predictions: what ``--val-only`` may read."""
    return {key: part for key, part in predictions.items() if key[1] == "val"}


def validation_scores(averaged: dict) -> dict[int, tuple[float, list[float]]]:
    """``{fold: (validation UA of the average, [each member's])}`` from ``average_members``' output."""
    return {fold: (ua(val, val.probs), [ua(val, p) for p in members])
            for (fold, part), (val, members) in averaged.items() if part == "val"}


def print_validation(scores: dict[int, tuple[float, list[float]]]) -> None:
    """Per-fold validation UA of the average and of each member, then their means over folds."""
    for fold, (ensemble_ua, member_uas) in sorted(scores.items()):
        print(f"fold {fold}: validation UA {ensemble_ua:.3f} (members {' '.join(f'{m:.3f}' for m in member_uas)})")
    print(f"mean validation UA {np.mean([e for e, _ in scores.values()]):.3f} "
          f"(members {np.mean([np.mean(m) for _, m in scores.values()]):.3f})")


if __name__ == "__main__":
    main()
