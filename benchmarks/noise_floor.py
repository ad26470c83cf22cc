"""How far each corpus's clips stand over their own noise floor: the peak frame energy over the
10th-percentile frame (``emorec.features.dsp``'s trim frames: 2048 samples, hop 512), on every 20th
clip of RAVDESS speech and of CREMA-D (at most 300 each).

    python noise_floor.py [--out results/noise_floor.json]

Why: ``trim_db: 40`` trims only what lies 40 dB under the peak. A corpus whose clips stand less than
that over their floor keeps its noisy lead-in and tail, a cue to the corpus rather than the emotion;
``trim_floor_db`` trims it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, data_dir


def peak_over_floor_db(wave: np.ndarray, frame_length: int = 2048, hop_length: int = 512) -> float:
    from emorec.features import dsp

    frames = dsp._frames(np.pad(wave.astype(np.float32), frame_length // 2), frame_length, hop_length)
    db = 10 * np.log10(np.maximum(np.mean(frames ** 2, axis=1), 1e-10))
    k = dsp.floor_index(db.size)
    return float(db.max() - np.partition(db, k)[k])


def main(argv: list[str] | None = None) -> None:
    from emorec.atomic import write_json
    from emorec.media.audio import load_audio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "noise_floor.json"))
    args = parser.parse_args(argv)
    corpora = {}
    for name, pattern in (("RAVDESS speech", "ravdess-speech-16k/*/*.flac"), ("CREMA-D (Opus-coded copy)", "crema-d-audio/*.opus")):
        files = sorted(data_dir().glob(pattern))[::20][:300]
        gaps = np.array([peak_over_floor_db(load_audio(f, 16000)) for f in files])
        corpora[name] = {"clips": len(files), "median_db": round(float(np.median(gaps)), 1),
                         "p10_db": round(float(np.quantile(gaps, 0.1)), 1),
                         "share_under_40_db": round(float(np.mean(gaps < 40)), 3)}
        print(name, corpora[name])
    write_json(Path(args.out), {"command": command_line(), "measure": "peak frame over the 10th-percentile frame, dB",
                                "corpora": corpora})


if __name__ == "__main__":
    main()
