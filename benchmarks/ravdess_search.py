"""RAVDESS 6-fold: choose among finished candidate recipes by validation actors alone.

    python benchmarks/ravdess_search.py results/search/*.json [--val-only] [--out results/ravdess_search.json]

Each argument is a result of ``ravdess_6fold.py`` (one candidate recipe, all 6 folds, fixed
budget, final epoch kept). A candidate's score is the mean over folds of its final model's UA on
that fold's 2 validation actors (``val_best`` in the result, logged at the last epoch). The
candidate with the highest score is selected; ties go to the cheaper (earlier-listed) one.
Test actors select nothing: ``--val-only`` prints validation scores without reading any test
figure, which is how the search is followed while it runs; the final table lists every
candidate's test UA too, so what selection gained or lost stays visible.

Plan, written down before any candidate of this search was trained (2026-11-23):
the headline recipe (``configs/ravdess_attn_crnn_cosine.yaml``: conv 16-32-64, 60 cosine epochs)
is re-run on a GPU as candidate ``c0``; the other candidates change one thing at a time and are
listed in ``results/ravdess_search.json`` with the command that trained each. The selected
recipe then gets more seeds (its seed ensemble, as in ``ravdess_ensemble.py``), and that
ensemble is the headline if its validation score is above the single runs'. Caveat, stated in
the results: validation actors of one fold are test actors of another, so choosing one recipe
for all folds by mean validation UA lets those actors' clips inform the choice; no test clip of
a fold ever reaches that fold's model, threshold or epoch.

Addition, written before candidate ``c5`` was trained (2026-11-23, CPU only):
``c5_deltas`` (``configs/ravdess_attn_crnn_deltas.yaml``) changes the input representation of the
64-mel headline recipe: log-mel, delta and delta-delta as 3 conv input channels. It joins the
same selection by the same rule; it is trained with seed 0 on the 2-core CPU (``--jobs 2``), so
its comparison with ``c0`` (GPU) mixes devices, as ``c4`` did. If it is selected, the plan above
applies to it unchanged (a seed ensemble, headline only if its validation score beats the
current headline ensemble's); if not, ``c2`` stays selected and nothing else changes.

Addition, written before candidate ``c6`` was trained (2026-11-23, CPU only):
``c6_v2_mels128`` (``configs/ravdess_attn_crnn_v2_mels128.yaml``) is ATTN-CRNN v2's recipe
(``configs/ravdess_attn_crnn_v2_cosine.yaml``: 30 cosine epochs, betas 0.9/0.98) with 128 mel
bands. It combines the side validation actors preferred on two axes: v2 over v1 under the same CPU
protocol (mean validation UA 59.9 % vs 57.8 %, ``results/ravdess_6fold_v2_cosine.json`` and
``results/ravdess_6fold.json``) and 128 over 64 mels (``c2`` over ``c0``). Caveat: v2's recipe was
written after its seed-recipe test result was seen (that config says so). ``c6`` is trained with
seed 0 on the 2-core CPU (``--jobs 2``) and joins the same selection by the same rule. If it is
selected, the plan above applies unchanged: seeds 0-4 (5 members, as ``c2``'s ensemble), averaged
by ``ravdess_ensemble.py`` from their committed predictions (members may come from different
runs), and that ensemble is the headline only if its mean validation UA beats the current
headline ensemble's (63.8 %); every member and the ensemble are reported whatever they score. If
``c6`` is not selected, ``c2`` stays and nothing else changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tables
from common import RESULTS, command_line
from emorec.atomic import write_json


def val_score(result: dict) -> float:
    """Mean final-epoch validation UA over the folds of one candidate; a fold without one stops."""
    score = tables.val_score(result)
    if score is None:
        raise SystemExit(f"{result.get('run_dir')}: a fold has no validation score")
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", nargs="+", help="results JSONs of ravdess_6fold.py, one per recipe")
    parser.add_argument("--val-only", action="store_true", help="print validation scores; read no test figure")
    parser.add_argument("--out", default=str(RESULTS / "ravdess_search.json"))
    args = parser.parse_args()
    results = {Path(p).stem: json.loads(Path(p).read_text()) for p in args.candidates}
    scores = {name: val_score(r) for name, r in results.items()}
    for name, score in scores.items():
        folds = " ".join(f"{f['val_best']:.3f}" for f in results[name]["folds"])
        print(f"{name:>24}  val UA {score:.3f}  ({folds})  {results[name]['command']}")
    if args.val_only:
        return
    chosen = max(scores, key=lambda name: (scores[name], -list(scores).index(name)))
    table = [{"candidate": name, "val_ua": scores[name], "mean_ua": r["mean_ua"], "std_ua": r["std_ua"],
              "mean_wa": r["mean_wa"], "mean_macro_f1": r["mean_macro_f1"], "command": r["command"],
              "model": r["model"], "features": r["features"]} for name, r in results.items()]
    summary = {"selected": chosen, "rule": "highest mean final-epoch validation UA over the 6 folds",
               "selected_test_mean_ua": results[chosen]["mean_ua"], "selected_test_std_ua": results[chosen]["std_ua"],
               "candidates": table, "command": command_line()}
    write_json(Path(args.out), summary)
    print(f"selected {chosen}: val UA {scores[chosen]:.3f}, test UA {results[chosen]['mean_ua']:.3f} "
          f"± {results[chosen]['std_ua']:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
