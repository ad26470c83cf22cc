"""A bounded load run of ``emorec serve`` on loopback: real 3-4 s RAVDESS clips from 1, 4 and 8
concurrent clients, a mix with bad inputs, and an overload burst; requests per second, latency
percentiles, answers by status, client-side timeouts, and the server's resident memory.

    python serve_load.py [--model MODEL] [--seconds 60] [--workers 2] [--out results/serve_load.json]

Targets (2 cores): no 5xx outside the overload burst, memory growth under 10 % after warm-up,
p99 <= 250 ms at 8 clients, and overload answered 503 (with Retry-After) rather than timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, data_dir


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clips(n: int = 40) -> list[bytes]:
    """``n`` real clips of different actors and emotions, as 16-bit WAV bytes (what a client uploads)."""
    import soundfile as sf

    files = sorted((data_dir() / "ravdess-speech-16k").glob("Actor_*/*.flac"))[::37][:n]
    out = []
    for path in files:
        wave, rate = sf.read(path, dtype="float32")
        buffer = io.BytesIO()
        sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out


def bad_inputs() -> list[tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    silent = io.BytesIO()
    import soundfile as sf

    sf.write(silent, np.zeros(16000, np.float32), 16000, format="WAV")
    return [(rng.bytes(20000), "audio/wav"), (silent.getvalue(), "audio/wav"), (b"", "audio/wav"),
            (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"), (b"hello", "text/plain")]


async def phase(url: str, clients: int, seconds: float, bodies: list[tuple[bytes, str]], timeout: float = 30.0) -> dict:
    import httpx

    latencies, statuses, timeouts = [], {}, 0
    stop = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal timeouts
        async with httpx.AsyncClient(timeout=timeout) as session:
            k = index
            while time.monotonic() < stop:
                body, kind = bodies[k % len(bodies)]
                k += clients
                started = time.perf_counter()
                try:
                    response = await session.post(f"{url}/v1/predict", content=body, headers={"Content-Type": kind})
                except httpx.TimeoutException:
                    timeouts += 1
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 503:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")) * 0.1)

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies),
            "requests_per_second": round(len(latencies) / elapsed, 1), "statuses": statuses, "client_timeouts": timeouts,
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the released model")
    parser.add_argument("--seconds", type=float, default=60.0, help="per concurrency level")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = parser.parse_args(argv)
    import httpx
    from emorec.atomic import write_json
    from emorec.serve.process import ServeProcess

    options = ["--workers", str(args.workers), "--queue", str(args.queue)]
    with ServeProcess(args.model, *options) as server:
        url = server.url
        good = [(body, "audio/wav") for body in clips()]
        rss_start = rss_mb(server.pid)
        asyncio.run(phase(url, 4, min(10.0, args.seconds), good))  # warm-up: allocator and caches settle
        rss_warm = rss_mb(server.pid)
        phases = {}
        for clients in (1, 4, 8):
            phases[f"{clients}_clients"] = asyncio.run(phase(url, clients, args.seconds, good))
            print(clients, phases[f"{clients}_clients"])
        bad = bad_inputs()
        mixed = [item for i, item in enumerate(good) for item in ([item] + ([bad[i % len(bad)]] if i % 4 == 0 else []))]
        phases["8_clients_with_bad_inputs"] = asyncio.run(phase(url, 8, args.seconds, mixed))
        print("mix", phases["8_clients_with_bad_inputs"])
        rss_end = rss_mb(server.pid)
        phases["overload_64_clients"] = asyncio.run(phase(url, 64, min(20.0, args.seconds), good))
        print("overload", phases["overload_64_clients"])
        alive = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    normal = [p for name, p in phases.items() if not name.startswith("overload")]
    result = {
        "command": command_line(), "server": " ".join(["emorec serve", *([args.model] if args.model else []), *options]), "cpu_count": os.cpu_count(),
        "clip": "RAVDESS speech clips (3-4 s), 16-bit WAV uploads", "phases": phases,
        "rss_mb": {"start": round(rss_start, 1), "after_warm_up": round(rss_warm, 1), "end": round(rss_end, 1),
                   "growth_after_warm_up": round((rss_end - rss_warm) / rss_warm, 4)},
        "checks": {"no_5xx_outside_overload": all(not s.startswith("5") for p in normal for s in p["statuses"]),
                   "p99_ms_at_8_clients": phases["8_clients"]["latency_ms"]["p99"],
                   "overload_answered_503": phases["overload_64_clients"]["statuses"].get("503", 0),
                   "overload_client_timeouts": phases["overload_64_clients"]["client_timeouts"],
                   "healthy_after": alive},
    }
    write_json(Path(args.out), result)
    print(result["rss_mb"], result["checks"])


if __name__ == "__main__":
    main()
