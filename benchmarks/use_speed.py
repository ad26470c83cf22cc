"""How fast the released model is to use: one 3 s clip through ``rec.predict`` and through onnxruntime,
the ONNX file's size and parity on 50 real clips, and ``emorec timeline`` on a one-hour recording
(and, to show its memory is bounded, on one a sixth as long).

    python use_speed.py [--model NAME_OR_DIR] [--threads 2] [--out results/use_speed.json]

Batch-1 latency (median of 50 after 5 warm-up calls): the model forward alone (features ready), and
end to end from the file's bytes (decode, features, forward); the end-to-end time again in fresh
processes with NumPy's BLAS on one thread during features (as shipped) and at its own thread count.
The one-hour recording is made of real RAVDESS clips with silence and low noise between them,
written once under work/; its timeline runs in a child process whose peak resident memory
(``ru_maxrss``) is reported with its speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, WORK, command_line, data_dir


def median_ms(call, repeats: int = 50, warm: int = 5) -> float:
    for _ in range(warm):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(1000 * float(np.median(times)), 2)


def hour_recording(path: Path, seconds: float = 3600.0) -> Path:
    """Real clips, each followed by 1-3 s of silence or low noise, until ``seconds``; streamed to FLAC."""
    import soundfile as sf

    if path.is_file():
        return path
    from emorec.media.audio import load_audio

    files = sorted((data_dir() / "ravdess-speech-16k").glob("Actor_*/*.flac"))
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.flac")
    written = 0
    with sf.SoundFile(partial, "w", 16000, 1, format="FLAC") as out:
        while written < seconds * 16000:
            clip = load_audio(files[int(rng.integers(len(files)))], 16000)
            gap = int(rng.uniform(1, 3) * 16000)
            filler = np.zeros(gap, np.float32) if rng.random() < 0.5 else (0.002 * rng.standard_normal(gap)).astype(np.float32)
            for block in (clip, filler):
                out.write(block)
                written += block.size
    partial.replace(path)
    return path


TIMELINE_CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
import emorec
rec = emorec.load(sys.argv[1] if sys.argv[1] != "-" else None)
started = time.perf_counter()
result = rec.timeline(sys.argv[2])
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "duration": result.duration, "segments": len(result.segments),
                  "speech_regions": len(result.speech), "windows": len(result.windows),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


LATENCY_CHILD = """
import contextlib, sys
import torch
torch.set_num_threads(int(sys.argv[3]))
import emorec
import emorec.features.spectral as spectral
from use_speed import median_ms
if sys.argv[4] == "off":
    spectral.numpy_blas_single_thread = contextlib.nullcontext
rec = emorec.load(sys.argv[1] if sys.argv[1] != "-" else None)
print(median_ms(lambda: rec.predict(sys.argv[2])))
"""


def blas_ab(model: str | None, clip: Path, threads: int, rounds: int = 3) -> dict:
    """End-to-end batch-1 latency with NumPy's BLAS on one thread during features (as shipped) and
    with its own thread count, in fresh processes, alternating; medians over the rounds."""
    times: dict[str, list[float]] = {"one_thread": [], "numpy_default": []}
    for _ in range(rounds):
        for mode, key in (("on", "one_thread"), ("off", "numpy_default")):
            child = subprocess.run([sys.executable, "-c", LATENCY_CHILD, model or "-", str(clip), str(threads), mode],
                                   capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            times[key].append(float(child.stdout.strip().splitlines()[-1]))
    medians = {k: float(np.median(v)) for k, v in times.items()}
    return {"end_to_end_ms": medians, "rounds_raw": times,
            "slowdown_without": round(medians["numpy_default"] / medians["one_thread"], 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the released model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hour", type=float, default=3600.0, help="seconds of the long recording")
    parser.add_argument("--out", default=str(RESULTS / "use_speed.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    import emorec
    from emorec.atomic import write_json
    from emorec.inference.onnx_export import export_onnx
    from emorec.inference.onnx_runtime import OnnxPredictor

    rec = emorec.load(args.model)
    files = sorted((data_dir() / "ravdess-speech-16k").glob("Actor_*/*.flac"))
    clip = next(f for f in files if 2.9 <= __import__("soundfile").info(f).duration <= 3.1) if files else None
    wave = rec.waveform(clip)[0]
    item = rec.backend.features_for_wave(wave)
    forward_ms = median_ms(lambda: rec.backend.predict_items([item]))
    end_to_end_ms = median_ms(lambda: rec.predict(clip))
    numpy_blas = blas_ab(args.model, clip, args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        exported = export_onnx(rec.model_dir, onnx_path, quantize=True)
        served = OnnxPredictor(onnx_path, threads=args.threads)
        served_int8 = OnnxPredictor(onnx_path.with_suffix(".int8.onnx"), threads=args.threads)
        onnx_ms = median_ms(lambda: served.probabilities([wave]))
        int8_ms = median_ms(lambda: served_int8.probabilities([wave]))
        parity_files = files[::29][:50]
        waves = [rec.waveform(f)[0] for f in parity_files]
        torch_probs = rec.probabilities(waves)
        onnx_probs = np.stack([served.probabilities([w])[0] for w in waves])
        int8_probs = np.stack([served_int8.probabilities([w])[0] for w in waves])
    def run_timeline(seconds: float) -> dict:
        recording = hour_recording(WORK / f"recording_{int(seconds)}s.flac", seconds)
        child = subprocess.run([sys.executable, "-c", TIMELINE_CHILD, args.model or "-", str(recording), str(args.threads)],
                               capture_output=True, text=True, check=True)
        return json.loads(child.stdout.strip().splitlines()[-1])

    timeline = run_timeline(args.hour)
    # Bounded memory means a recording six times shorter peaks at about the same resident memory.
    sixth = run_timeline(args.hour / 6)
    result = {
        "command": command_line(), "model": rec.model_id, "threads": args.threads,
        "clip": f"{clip.name} ({wave.size / rec.sample_rate:.2f} s)",
        "latency_ms_batch1": {"torch_forward": forward_ms, "torch_end_to_end": end_to_end_ms,
                              "onnxruntime_end_to_end_from_samples": onnx_ms, "onnxruntime_int8_from_samples": int8_ms},
        "numpy_blas_during_features": numpy_blas,
        "onnx": {"bytes": exported["bytes"], "int8_bytes": exported["int8_bytes"],
                 "parity_clips": len(waves), "max_abs_prob_diff": float(np.abs(onnx_probs - torch_probs).max()),
                 "int8_max_abs_prob_diff": float(np.abs(int8_probs - torch_probs).max()),
                 "int8_same_top_class": float(np.mean(int8_probs.argmax(1) == torch_probs.argmax(1)))},
        "timeline": timeline | {"x_real_time": round(timeline["duration"] / timeline["seconds"], 1),
                                "recording": f"{timeline['duration'] / 3600:.2f} h of RAVDESS clips with gaps",
                                "peak_rss_mb_on_a_sixth_as_long": sixth["peak_rss_mb"]},
        "targets": {"forward_ms": 5, "end_to_end_ms": 15, "timeline_x_real_time": 50, "parity": 1e-4},
        "peak_rss_mb_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_count": os.cpu_count(),
    }
    write_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("latency_ms_batch1", "numpy_blas_during_features", "onnx", "timeline")},
                     indent=1))


if __name__ == "__main__":
    main()
