"""Does the released model's answer depend on how much silence precedes the speech? The same clip
behind 0, 64, ..., 448 samples (up to 28 ms) of extra silence, with the silence trim's edges on
librosa's 512-sample grid and found per sample (``trim_to_sample``), on the release's validation
speakers that the shared copies hold (RAVDESS speech and the Opus-coded CREMA-D copy).

    python trim_shift.py [--model emorec-crnn-v2-multicorpus] [--out results/trim_shift.json]

Why: the grid is anchored at the file's first sample, so a clip inside a recording (or behind a
different lead-in) is trimmed up to 32 ms later in its speech and every STFT frame moves with it.
The figures are the share of clips whose label changes over the eight lead-ins, the largest change
of any class probability, and UA and calibration error on these validation clips (never test clips: this chooses a front end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, data_dir

PADS = tuple(range(0, 512, 64))


def validation_clips(release: dict, classes: list[str]) -> list:
    from emorec.corpora import prepare_corpus

    speakers = set(release["val_speakers"])
    clips = []
    for kind, folder in (("ravdess", "ravdess-speech-16k"), ("crema-d", "crema-d-audio")):
        prepared = prepare_corpus(kind, data_dir() / folder, progress=False)
        clips += [c for c in prepared.clips if c.speaker in speakers and c.emotion in classes]
    return clips


def model_copy(name: str, to_sample: bool, where: Path) -> Path:
    """The released model's folder with its front end's trim set one way (its weights unchanged)."""
    from emorec.inference.released import released_model_dir

    copy = where / f"{name}-{'sample' if to_sample else 'grid'}"
    shutil.copytree(released_model_dir(name), copy)
    from emorec.inference.model_files import ModelMeta

    meta = ModelMeta.read(copy)
    meta.features["audio"]["trim_to_sample"] = to_sample
    meta.write(copy)
    return copy


def measure(rec, clips: list, progress: bool = True) -> dict:
    """``(clips, pads, classes)`` probabilities -> label flips, probability change, UA."""
    from rich.progress import track

    from emorec.evaluation.calibration import expected_calibration_error
    from emorec.evaluation.metrics import classification_metrics
    from emorec.media.audio import load_audio

    rows = []
    for clip in track(clips, description=f"{rec.model_id}: {len(PADS)} lead-ins", disable=not progress):
        wave = load_audio(clip.path, rec.sample_rate)
        rows.append(rec.probabilities([np.concatenate([np.zeros(p, np.float32), wave]) for p in PADS]))
    probs = np.stack(rows)  # (clips, pads, classes)
    labels = probs.argmax(axis=2)
    truth = np.array([rec.classes.index(c.emotion) for c in clips])
    change = (probs.max(axis=1) - probs.min(axis=1)).max(axis=1)  # (clips,): the most any class moves
    ua = [classification_metrics(truth, probs[:, k], rec.classes, bootstrap=0)["ua"] for k in range(len(PADS))]
    return {"label_changes_share": round(float(np.mean((labels != labels[:, :1]).any(axis=1))), 4),
            "probability_change_median": round(float(np.median(change)), 4),
            "probability_change_p90": round(float(np.quantile(change, 0.9)), 4),
            "val_ua_no_lead_in": round(float(ua[0]), 4),
            "val_ua_range_over_lead_ins": [round(float(min(ua)), 4), round(float(max(ua)), 4)],
            "val_ece_no_lead_in": round(float(expected_calibration_error(probs[:, 0], truth)), 4)}


def main(argv: list[str] | None = None) -> None:
    import emorec
    from emorec.atomic import write_json
    from emorec.inference.released import DEFAULT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT)
    parser.add_argument("--release", default=str(RESULTS / "release_multicorpus.json"),
                        help="the release result naming its validation speakers")
    parser.add_argument("--out", default=str(RESULTS / "trim_shift.json"))
    args = parser.parse_args(argv)
    release = json.loads(Path(args.release).read_text())
    with tempfile.TemporaryDirectory() as where:
        grid = emorec.load(model_copy(args.model, False, Path(where)))
        clips = validation_clips(release, list(grid.classes))
        result = {"command": command_line(), "model": args.model, "lead_in_samples": list(PADS),
                  "clips": len(clips), "speakers": sorted({c.speaker for c in clips}),
                  "data": "RAVDESS speech (16 kHz copy) and CREMA-D (Opus-coded copy) in shared/data",
                  "trim_on_grid": measure(grid, clips),
                  "trim_to_sample": measure(emorec.load(model_copy(args.model, True, Path(where))), clips)}
    for key in ("trim_on_grid", "trim_to_sample"):
        print(key, result[key])
    write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
