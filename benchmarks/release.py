"""Train the released model and put it in the package: one command, whose output is exactly what ships.

    python release.py --config ../configs/release_crnn_v2_ravdess_crema_d.yaml \\
        --cv results/ravdess_6fold_v2_ema_bn_deltas_seed8_speed.json --cv results/crema_d_5fold_v2.json \\
        [--crosscorpus results/crosscorpus.json]
    python release.py --config ../configs/release_crnn_v2_multicorpus.yaml --corpora ravdess,crema-d,tess,emovo,urdu \\
        --name emorec-crnn-v2-multicorpus --loco results/loco_attn_crnn_v2_balanced.json --out results/release_multicorpus.json

``--front-end KEY=VALUE`` lays inference-only settings over the trained model's audio features before
it ships (``trim_to_sample=true``: ``trim_shift.py``); with ``--card-only`` it sets them on the shipped
model, whose weights stay as trained, and records them in the result.

It trains the recipe's single ``release`` fold (every speaker of RAVDESS speech and CREMA-D but a few
validation speakers, who fit the calibration temperature), copies ``model.safetensors`` and
``model.json`` into ``src/emorec/inference/released/<name>/``, writes its ``MODEL_CARD.md`` (training data and
licences, labels, recipe and this command, the SHA-256 of the weights, and the speaker-independent
figures of the cross-validation results given with ``--cv``, which measure the recipe, not these
weights), and records all of it in ``results/release.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from emorec.inference.model_files import ModelMeta

from common import REPO, RESULTS, WORK, command_line, recipe_of

LICENCES = {
    "ravdess": ("RAVDESS speech (Livingstone & Russo 2018)", "CC BY-NC-SA 4.0"),
    "crema-d": ("CREMA-D (Cao et al. 2014)", "Open Database License 1.0 (database), Database Contents License 1.0"),
    "tess": ("TESS (Dupuis & Pichora-Fuller 2010), copy in docs/CORPORA.md", "CC BY-NC-ND 4.0"),
    "emovo": ("EMOVO (Costantini et al. 2014), copy in docs/CORPORA.md", "research use (the authors' terms)"),
    "urdu": ("URDU (Latif et al. 2018), copy in docs/CORPORA.md", "research use only"),
}
#: Corpora whose terms forbid commercial use: weights learned from any of them inherit that.
NON_COMMERCIAL = {"ravdess", "tess", "emovo", "urdu"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cv_lines(paths: list[Path]) -> list[str]:
    lines = []
    for path in paths:
        result = json.loads(path.read_text())
        ci = result.get("pooled_ci_ua") or result.get("ci_ua")
        ci_text = f" [95 % CI {100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
        recipe = recipe_of(result.get("command", "")) or "?"
        lines.append(f"| {result['corpus']} | `{Path(recipe).name}` | {result.get('protocol', '')} | {100 * result['mean_ua']:.1f} ± "
                     f"{100 * result['std_ua']:.1f}{ci_text} | `{path.name}` |")
    return lines


def crosscorpus_lines(path: Path | None) -> list[str]:
    if path is None:
        return ["Not measured for this release."]
    matrix = json.loads(path.read_text())
    return [f"UA on the {len(matrix['classes'])} classes both corpora share ({', '.join(matrix['classes'])}), "
            f"`{path.name}`:", "", matrix["table"]]


def loco_lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    loco = json.loads(path.read_text())
    shares = [f"- {c['held_out']}: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in
                                                   sorted(c["predicted_share"].items(), key=lambda kv: -kv[1]))
              for c in loco["cells"]]
    uas = [c["ua"] for c in loco["cells"]]
    return ["## On a corpus it never heard (leave one corpus out)", "",
            f"**In short: on recordings unlike its training corpora, expect about {100 * loco['mean_ua']:.0f} % UA on "
            f"6 classes (chance 17 %), {100 * min(uas):.0f}-{100 * max(uas):.0f} % across the held-out corpora, and one "
            f"class may take up to {100 * loco['max_top_share']:.0f} % of the answers.** Its top answer is a hint, "
            "not a verdict; read the probabilities.", "",
            "What to expect on a new recording: for each corpus, a model of this recipe trained on all the others",
            "(the LOCO model of that corpus stands in for these weights, which heard every corpus) reads every clip of",
            f"it once, over the classes it shares with the model (`{path.name}`, recipe `{Path(loco['recipe']).name}`):", "",
            loco["table"], "", "Share of each predicted class on each held-out corpus:", "", *shares, ""]


def licence_lines(corpora: list[str]) -> list[str]:
    restricted = [LICENCES.get(c, (c, ""))[0].split(" (")[0] + f" ({LICENCES.get(c, ('', 'its terms'))[1]})"
                  for c in corpora if c in NON_COMMERCIAL]
    if not restricted:
        return ["**Licence of the weights:** they follow the terms of their training corpora (below).", ""]
    return ["**Licence of the weights: non-commercial (research) use only.** They are learned from "
            + ", ".join(restricted) + ", whose terms forbid commercial use: these weights inherit them.", ""]


def model_card(*, name: str, meta: dict, counts: dict, digest: str, recipe: str, command: str, cv: list[Path],
               crosscorpus: Path | None, trained: str, train_seconds: float, loco: Path | None = None,
               front_end: dict | None = None, trim_shift: str | None = None) -> str:
    calibration = meta.get("calibration") or {}
    classes = meta["class_names"]
    few = [c for c in classes if c in ("calm", "surprised")]
    labels_note = (f"{', '.join(few).capitalize()} come from one or two corpora only." if few else
                   "The core six that every training corpus shares but URDU (which has neutral, happy, sad and angry): "
                   "calm (RAVDESS alone) and surprised (RAVDESS, TESS, EMOVO) are left out, so that a class few "
                   "corpora teach cannot draw another corpus's speech to it.")
    data_rows = [f"| {LICENCES.get(c, (c, 'see its own terms'))[0]} | {n['clips']} | {n['speakers']} | "
                 f"{LICENCES.get(c, ('', 'see its own terms'))[1]} |" for c, n in sorted(counts.items())]
    lines = [
        f"# {name}", "",
        "A speech emotion recogniser that ships with emorec: `emorec predict clip.wav`, `emorec.load().predict(...)`,",
        "`emorec timeline recording.wav`, `emorec export " + name + " model.onnx`.", "",
        *licence_lines(sorted(counts)),
        "## Training data", "",
        "| corpus | clips | speakers | licence |", "|---|---:|---:|---|", *data_rows, "",
        f"Validation speakers (held out of training; they fit the calibration temperature and select nothing, the last "
        f"epoch is kept): "
        f"{', '.join(meta.get('val_speakers', [])) or 'see model.json'}.", "",
        "## Labels", "", ", ".join(f"`{c}`" for c in classes) + ".", labels_note, "",
        "## How it was made", "",
        f"- Architecture `{meta['model']}` ({meta.get('parameters', '?')} parameters), features "
        f"`{json.dumps(meta['features']['audio'])}`.",
        *([FRONT_END_NOTES[meta["features"]["audio"]["name"]]] if meta["features"]["audio"]["name"] in FRONT_END_NOTES else []),
        f"- Recipe `{recipe}`; trained {trained} in {train_seconds / 60:.0f} min on a CPU.",
        f"- Command (from `benchmarks/`): `{command}`",
        *([f"- Front end set after training, weights unchanged: `{json.dumps(front_end)}` (why, and what it moved on "
           "the validation speakers: `benchmarks/trim_shift.py`" + (f", `{trim_shift}`" if trim_shift else "") + ")."]
          if front_end else []),
        f"- `model.safetensors` SHA-256: `{digest}`", "",
        *loco_lines(loco),
        "## How well the recipe does (speaker-independent cross-validation)", "",
        *(["These figures measure the recipe on folds whose test speakers it never saw; the shipped weights saw every",
           "speaker, so they have no test figure of their own.", "",
           "| corpus | recipe | protocol | mean UA % ± std over folds | result |", "|---|---|---|---:|---|", *cv_lines(cv)]
          if cv else ["Not measured yet: the in-corpus folds (RAVDESS 6, CREMA-D 5) with the other corpora added to "
                      "training have not been run with this recipe."]), "",
        *([] if loco and crosscorpus is None else ["## Across corpora", "", *crosscorpus_lines(crosscorpus), ""]),
        "## Calibration", "",
        f"Probabilities are divided by the temperature {calibration.get('temperature', 1.0):.3f}, fitted on the "
        f"validation speakers (expected calibration error there {calibration.get('val_ece_before', float('nan')):.3f} "
        f"before, {calibration.get('val_ece_after', float('nan')):.3f} after).", "",
        "## Known limits", "",
        *(["- Acted English speech from two studios' corpora; spontaneous speech, other languages and other recording",
           "  conditions are outside what it learned (see `emorec robustness` for how recording conditions move it)."]
          if sorted(counts) == ["crema-d", "ravdess"] else
          [f"- Mostly acted speech from {len(counts)} corpora ({', '.join(LICENCES.get(c, (c,))[0].split(' (')[0] for c in sorted(counts))}); "
           "the table above is the best guide to a corpus it never heard."]),
        f"- {len(classes)} labels only; anything else is forced into one of them.",
        "- Learned from clips of 1-5 s; input over 6 s is windowed over its speech and answered with the "
        "duration-weighted mean of its speech segments (`emorec predict --segments` lists them).",
        "- Acted emotion is not felt emotion; do not use it to judge people.",
    ]
    return "\n".join(lines) + "\n"


def rewrite_card(args: argparse.Namespace) -> None:
    """The card of the model ``release.json`` records, from its run and the figures now given; the
    shipped weights must still be the ones that release trained (their digest is checked)."""
    from emorec.inference.released import DEFAULT

    record = json.loads(Path(args.out).read_text())
    name = args.name or record["name"] or DEFAULT
    shipped = Path(args.dest) / name
    if sha256(shipped / "model.safetensors") != record["weights_sha256"]:
        raise SystemExit(f"{shipped}: its weights are not the ones {args.out} records; retrain instead")
    meta = ModelMeta.read(shipped)
    front_end = set_front_end(meta, args.front_end, record.get("front_end_after_training"))
    if args.front_end:
        from emorec.atomic import write_json

        meta.write(shipped)
        record["front_end_after_training"] = front_end
        record["front_end_command"] = command_line()
        write_json(Path(args.out), record)
    counts = record["training_clips"]
    card = model_card(name=name, meta=meta, counts=counts, digest=record["weights_sha256"], recipe=record["recipe"],
                      command=record["command"], cv=[Path(p) for p in args.cv],
                      crosscorpus=Path(args.crosscorpus) if args.crosscorpus else None, trained=meta.get("trained", ""),
                      train_seconds=float(meta.get("train_seconds") or 0), loco=Path(args.loco) if args.loco else None,
                      front_end=front_end, trim_shift=args.trim_shift)
    (shipped / "MODEL_CARD.md").write_text(card)
    print(f"{shipped / 'MODEL_CARD.md'} rewritten")


def bundled_files(meta: ModelMeta) -> list[str]:
    """The files of a model folder that its feature specs name (``FeatureExtractor.bundled``)."""
    from emorec.features.base import extractor_class

    return [spec[key] for spec in meta.features.values()
            for key in getattr(extractor_class(spec["name"]), "bundled", ()) if isinstance(spec.get(key), str)]


#: what a card says of a pretrained front end that ships inside the model folder
FRONT_END_NOTES = {
    "voice_encoder": "- Front end: the GE2E speaker encoder of Resemblyzer (Apache-2.0; trained on LibriSpeech and "
                     "VoxCeleb 1 and 2), frozen, its weights in `voice_encoder.safetensors` beside the model.",
}


def set_front_end(meta: dict, pairs: list[str], earlier: dict | None = None) -> dict:
    """``["trim_to_sample=true"]`` laid over ``meta``'s audio features (after ``earlier`` settings);
    the settings, checked by building the extractor (an unknown key or a bad value fails here)."""
    from emorec.errors import ConfigError
    from emorec.features.base import extractor_from_spec
    from emorec.training.recipe_files import key_values

    try:
        settings = {**(earlier or {}), **key_values(pairs, flag="--front-end")}
        meta["features"]["audio"] |= settings
        extractor_from_spec(meta["features"]["audio"])
    except ConfigError as err:
        raise SystemExit(f"release.py --front-end: {err}") from None
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the release recipe (split.scheme release)")
    parser.add_argument("--name", default=None, help="released model name (default: emorec.inference.released.DEFAULT)")
    parser.add_argument("--manifest", default=None, help="default: RAVDESS speech + CREMA-D from the shared data")
    parser.add_argument("--corpora", default=None, help="corpora of loco.py, comma-separated, merged (instead of --manifest)")
    parser.add_argument("--cv", action="append", default=[], help="a cross-validation result of the recipe (repeat)")
    parser.add_argument("--crosscorpus", default=None)
    parser.add_argument("--loco", default=None, help="the recipe's leave-one-corpus-out summary (loco.py)")
    parser.add_argument("--dest", default=str(REPO / "src" / "emorec" / "inference" / "released"))
    parser.add_argument("--out", default=str(RESULTS / "release.json"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--front-end", action="append", default=[], metavar="KEY=VALUE",
                        help="inference-only audio feature settings for the shipped model, e.g. trim_to_sample=true")
    parser.add_argument("--trim-shift", default=None, metavar="RESULT.json",
                        help="the trim_shift.py result that measured the --front-end settings on this model")
    parser.add_argument("--card-only", action="store_true",
                        help="rewrite the shipped model's MODEL_CARD.md with the figures given (weights untouched)")
    args = parser.parse_args(argv)
    if args.card_only:
        return rewrite_card(args)
    if not args.config:
        parser.error("give --config RECIPE (or --card-only)")

    from collections import defaultdict

    from emorec.atomic import write_json
    from emorec.workflows.crossval import train
    from emorec.corpora.manifest import read_manifest
    from emorec.inference.released import DEFAULT
    from emorec.corpora.splits import load_splits
    from emorec.training.config import load_config

    from crossval import corpus_manifest

    name = args.name or DEFAULT
    if args.corpora:
        from loco import merged_manifest

        manifest = merged_manifest([c.strip() for c in args.corpora.split(",")], {})
    else:
        manifest = Path(args.manifest) if args.manifest else corpus_manifest("ravdess+crema-d")
    config = load_config(args.config, [f"data.manifest={manifest}", f"data.cache={WORK / 'cache'}",
                                       f"run.dir={WORK / 'runs'}", "run.folds=1", *args.overrides])
    if config.split.scheme != "release":
        parser.error(f"{args.config}: a release recipe has split.scheme release, not {config.split.scheme}")
    started = time.time()
    run_dir = train(config)
    fold = run_dir / "fold_1"
    meta = ModelMeta.read(fold)
    split = load_splits(run_dir / "splits.json")[0]
    clips = {c.clip_id: c for c in read_manifest(manifest)}
    counts: dict[str, dict] = defaultdict(lambda: {"clips": 0, "speakers": set()})
    for clip_id in split.train:
        counts[clips[clip_id].corpus]["clips"] += 1
        counts[clips[clip_id].corpus]["speakers"].add(clips[clip_id].speaker)
    counts = {c: {"clips": v["clips"], "speakers": len(v["speakers"])} for c, v in counts.items()}
    dest = Path(args.dest) / name
    staging = Path(args.dest) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(fold / "model.safetensors", staging / "model.safetensors")
    for bundled in bundled_files(meta):  # an encoder's weights that the model reads beside its own
        shutil.copy2(fold / bundled, staging / bundled)
    digest = sha256(staging / "model.safetensors")
    trained = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    from safetensors.numpy import load_file

    parameters = sum(int(t.size) for t in load_file(str(staging / "model.safetensors")).values())
    front_end = set_front_end(meta, args.front_end)
    meta.update({"model_id": name, "recipe": Path(args.config).name, "val_speakers": list(split.val_speakers), "parameters": parameters,
                 "weights_sha256": digest, "trained": trained})
    meta.write(staging)
    card = model_card(name=name, meta=meta, counts=counts, digest=digest, recipe=Path(args.config).name,
                      command=command_line(), cv=[Path(p) for p in args.cv],
                      crosscorpus=Path(args.crosscorpus) if args.crosscorpus else None, trained=trained,
                      train_seconds=float(meta.get("train_seconds") or time.time() - started),
                      loco=Path(args.loco) if args.loco else None, front_end=front_end, trim_shift=args.trim_shift)
    (staging / "MODEL_CARD.md").write_text(card)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    write_json(Path(args.out), {"name": name, "weights_sha256": digest, "recipe": Path(args.config).name,
                                "command": command_line(), "training_clips": counts, "val_speakers": list(split.val_speakers),
                                "calibration": meta.get("calibration"),
                                **({"front_end_after_training": front_end} if front_end else {}), "wall_seconds": round(time.time() - started, 1),
                                "run_dir": str(run_dir.relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir)})
    print(f"{name}: {dest} (weights sha256 {digest[:16]}...)")


if __name__ == "__main__":
    main()
