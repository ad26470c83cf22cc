"""Live emotion at real time on 2 cores: one stream's latency and CPU, then concurrent WebSocket streams.

    python streaming.py [--model MODEL] [--seconds 60] [--streams 8] [--out results/streaming.json]

A recording of real RAVDESS clips (silence and low noise between them) is played at real time in
100 ms blocks. Part 1 feeds it to one ``Recognizer.stream`` on one torch thread and measures, for each
interim window, the time from the window's last sample reaching the stream to its update
(latency, block granularity included) and, for each speech region, the delay from its end to its
final segments; CPU is the process's CPU seconds over the audio's seconds (share of one core).
Part 2 runs ``emorec serve`` in a child process and plays the recording to ``--streams`` WebSocket
clients at once, plus one more that must be refused by the stream limit; it counts closes by code
and the updates' latency. Targets: latency <= 300 ms, <= 25 % of one core per stream, no close
that is not 1000 except the refused extra stream.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, data_dir

BLOCK = 1600  # 100 ms at 16 kHz


def recording(seconds: float, seed: int = 0) -> np.ndarray:
    """RAVDESS clips, each after 1 s of silence, 1 s of low noise and 1 s of silence, up to ``seconds``."""
    from emorec.media.audio import load_audio

    rng = np.random.default_rng(seed)
    files = sorted((data_dir() / "ravdess-speech-16k").glob("Actor_*/*.flac"))
    parts, total = [], 0
    for file in rng.permutation(len(files)):
        for gap in (np.zeros(16000), 0.003 * rng.standard_normal(16000), np.zeros(16000)):
            parts.append(gap.astype(np.float32))
        parts.append(load_audio(files[file], 16000))
        total = sum(p.size for p in parts)
        if total >= seconds * 16000:
            break
    return np.concatenate(parts)[: int(seconds * 16000)]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.array(values) * 1000
    return {"n": len(values), "median_ms": round(float(np.median(v)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1),
            "max_ms": round(float(v.max()), 1)}


def one_stream(rec, wave: np.ndarray) -> dict:
    import torch

    from emorec.inference.streaming import EmotionStream

    torch.set_num_threads(1)
    stream = EmotionStream(rec)
    latencies, decisions, interims = [], [], 0
    cpu0, started = time.process_time(), time.monotonic()
    for i in range(0, wave.size, BLOCK):
        arrives = started + (i + BLOCK) / 16000
        time.sleep(max(0.0, arrives - time.monotonic()))
        events = stream.feed(wave[i:i + BLOCK])
        now = time.monotonic()
        for event in events:
            if event.kind == "window":
                interims += 1
                latencies.append(now - (started + event.end))
            elif event.kind == "segments":
                decisions.append(now - (started + event.end))
    stream.close()
    cpu = time.process_time() - cpu0
    seconds = wave.size / 16000
    return {"audio_seconds": seconds, "interim_windows": interims, "regions": len(stream.timeline.speech),
            "latency_window_end_to_update": summary(latencies),
            "delay_speech_end_to_final_segments": summary(decisions),
            "cpu_seconds": round(cpu, 2), "cpu_share_of_one_core": round(cpu / seconds, 4)}


def play_over_websocket(url: str, wave: np.ndarray, out: dict) -> None:
    import websocket  # websocket-client

    pcm = np.round(np.clip(wave, -1, 1) * 32767).astype("<i2")
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    socket = websocket.create_connection(url, timeout=60)
    closed: dict = {}

    def reader() -> None:
        while True:
            try:
                opcode, data = socket.recv_data(control_frame=True)
            except Exception as err:  # noqa: BLE001 - a dropped connection is what this counts
                closed.setdefault("error", type(err).__name__)
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                closed["code"] = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                closed["reason"] = data[2:].decode(errors="replace")
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                update = json.loads(data)
                if update["type"] == "window":
                    end_block = int(np.ceil(update["end"] * 16000 / BLOCK))
                    if end_block in sent_at:
                        latencies.append(time.monotonic() - sent_at[end_block])

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        for k, i in enumerate(range(0, pcm.size, BLOCK)):
            time.sleep(max(0.0, started + (i + BLOCK) / 16000 - time.monotonic()))
            socket.send_binary(pcm[i:i + BLOCK].tobytes())
            sent_at[k + 1] = time.monotonic()
        socket.send('{"type": "end"}')
    except Exception as err:  # noqa: BLE001
        closed.setdefault("error", type(err).__name__)
    thread.join(timeout=60)
    out.update(closed, latency=summary(latencies))


def concurrent_streams(model: str | None, wave: np.ndarray, streams: int) -> dict:
    from emorec.serve.process import ServeProcess

    with ServeProcess(model, "--max-streams", str(streams)) as server:
        url = server.url.replace("http://", "ws://") + "/v1/stream?format=pcm16&sample_rate=16000"
        results = [dict() for _ in range(streams)]
        threads = [threading.Thread(target=play_over_websocket, args=(url, wave, r)) for r in results]
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(1.0)
        extra: dict = {}
        play_over_websocket(url, wave[:16000], extra)  # one over the limit: refused with its reason
        for t in threads:
            t.join()
    codes = [r.get("code") for r in results]
    medians = [r["latency"].get("median_ms") for r in results if r["latency"].get("n")]
    return {"streams": streams, "close_codes": codes, "errors": [r.get("error") for r in results if r.get("error")],
            "all_finished": all(c == 1000 for c in codes), "extra_stream": {"code": extra.get("code"),
                                                                              "reason": extra.get("reason")},
            "latency_median_ms_per_stream": medians, "latency_p95_ms_worst_stream":
                max((r["latency"].get("p95_ms", 0) for r in results), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model directory or released name (default: the released model)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS / "streaming.json"))
    args = parser.parse_args()
    import platform

    import emorec
    from emorec.atomic import write_json

    rec = emorec.load(args.model)
    wave = recording(args.seconds)
    single = one_stream(rec, wave)
    print("one stream:", json.dumps(single))
    many = concurrent_streams(args.model, wave, args.streams)
    print("concurrent:", json.dumps(many))
    result = {"model": rec.model_id, "machine": platform.platform(), "cores": __import__("os").cpu_count(),
              "block_ms": BLOCK / 16, "one_stream": single, "concurrent": many,
              "targets": {"latency_p95_ms": 300, "cpu_share_of_one_core": 0.25},
              "command": command_line()}
    write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
