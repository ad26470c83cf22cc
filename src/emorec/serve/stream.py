"""``/v1/stream``: live emotion over a WebSocket (:class:`emorec.inference.streaming.EmotionStream`
per connection).

The client connects to ``/v1/stream?format=pcm16&sample_rate=16000`` (``format``: ``pcm16``
little-endian mono, ``f32`` float32 mono, or ``opus``: one raw Opus packet per message, 48 kHz) and
sends audio as binary messages; ``{"type": "end"}`` as a text message ends the audio. The server
answers every update as a JSON text message (``emorec.inference.streaming.StreamEvent.to_dict``),
the last one ``{"type": "end", "timeline": ...}``, and closes with 1000.

Refusals close the socket with a 4xxx code and a one-line reason, as the HTTP API answers 4xx:
4401 without the API key (header, or ``?key=`` since browsers cannot set WebSocket headers), 4400 a
malformed message or parameter, 4413 a block over 5 s or a stream past the length limit (its
timeline is sent first), 4415 an unknown format, 4503 when ``max_streams`` streams are open already.
"""

from __future__ import annotations

import asyncio
import hmac
import json

import numpy as np
from fastapi import (
    WebSocket,
    WebSocketDisconnect,
)  # at module level: FastAPI resolves the endpoint's annotations here

MAX_BLOCK_SECONDS = 5.0
FORMATS = ("pcm16", "f32", "opus")


class StreamRefused(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class OpusFrames:
    """Raw Opus packets -> float32 mono at 48 kHz (PyAV's libopus decoder)."""

    def __init__(self):
        try:
            import av
        except ImportError:
            raise StreamRefused(
                4415, "format opus needs PyAV on the server (pip install 'emorec[video]')"
            ) from None
        self._av = av
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate, self._codec.layout = 48000, "mono"

    def decode(self, packet: bytes) -> np.ndarray:
        try:
            frames = self._codec.decode(self._av.Packet(packet))
        except self._av.error.FFmpegError as err:
            raise StreamRefused(4400, f"not an Opus packet ({err})") from None
        parts = [
            f.to_ndarray().astype(np.float32).reshape(f.samples, -1).mean(axis=1)
            if f.format.is_packed
            else f.to_ndarray().astype(np.float32).mean(axis=0)
            for f in frames
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def add_stream_endpoint(app, service, settings) -> None:
    """Register ``/v1/stream`` on ``app``; at most ``settings.max_streams`` at once."""
    from emorec.inference.streaming import EmotionStream

    open_streams = {"count": 0}

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket):
        await socket.accept()
        if settings.api_key and not authorised(socket, settings.api_key, allow_query=True):
            await socket.close(
                4401, "missing or wrong API key (Authorization: Bearer KEY, X-API-Key or ?key=KEY)"
            )
            return
        if open_streams["count"] >= settings.max_streams:
            await socket.close(
                4503,
                f"the server is at its limit of {settings.max_streams} live streams; retry shortly",
            )
            return
        open_streams["count"] += 1
        try:
            await _serve_one(socket, service, settings, EmotionStream, WebSocketDisconnect)
        except StreamRefused as refused:
            await socket.close(refused.code, refused.reason)
        finally:
            open_streams["count"] -= 1


async def _serve_one(socket, service, settings, EmotionStream, WebSocketDisconnect) -> None:
    fmt = socket.query_params.get("format", "pcm16")
    if fmt not in FORMATS:
        raise StreamRefused(4415, f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    try:
        rate = 48000 if fmt == "opus" else int(socket.query_params.get("sample_rate", "16000"))
    except ValueError:
        raise StreamRefused(
            4400, "sample_rate must be a whole number of samples per second"
        ) from None
    if not 8000 <= rate <= 192000:
        raise StreamRefused(4400, f"sample_rate {rate} is outside 8000-192000")
    opus = OpusFrames() if fmt == "opus" else None
    live = EmotionStream(service, sample_rate=rate)

    async def send(events) -> None:
        for event in events:
            await socket.send_text(json.dumps(event.to_dict()))

    while True:
        try:
            message = await socket.receive()
        except WebSocketDisconnect:
            return
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            try:
                ended = json.loads(message["text"]).get("type") == "end"
            except (ValueError, AttributeError):
                ended = False
            if not ended:
                raise StreamRefused(
                    4400, 'text messages may only be {"type": "end"}; audio goes in binary messages'
                )
            await send(await asyncio.to_thread(live.close))
            await socket.close(1000)
            return
        block = _samples(message.get("bytes") or b"", fmt, opus)
        if block.size > MAX_BLOCK_SECONDS * rate:
            raise StreamRefused(
                4413,
                f"a block of {block.size / rate:.1f} s is over the limit of "
                f"{MAX_BLOCK_SECONDS:.0f} s",
            )
        await send(await asyncio.to_thread(live.feed, block))
        if live.seconds > settings.max_seconds:
            await send(await asyncio.to_thread(live.close))
            raise StreamRefused(
                4413, f"the stream reached the limit of {settings.max_seconds:.0f} s"
            )


def _samples(data: bytes, fmt: str, opus: OpusFrames | None) -> np.ndarray:
    if fmt == "opus":
        return opus.decode(data)
    width = 2 if fmt == "pcm16" else 4
    if len(data) % width:
        raise StreamRefused(
            4400, f"a {fmt} block must hold whole {width}-byte samples, got {len(data)} bytes"
        )
    samples = np.frombuffer(data, "<i2" if fmt == "pcm16" else "<f4")
    if fmt == "f32" and not np.all(np.isfinite(samples)):
        raise StreamRefused(4400, "samples contain NaN or infinite values")
    return samples.astype(np.int16) if fmt == "pcm16" else samples.astype(np.float32)


def authorised(connection, key: str, *, allow_query: bool = False) -> bool:
    """``Authorization: Bearer KEY`` or ``X-API-Key``; ``?key=`` too where a client cannot set
    headers."""
    given = (
        connection.headers.get("x-api-key")
        or connection.headers.get("authorization", "").removeprefix("Bearer ").strip()
        or (connection.query_params.get("key", "") if allow_query else "")
    )
    return hmac.compare_digest(given.encode(), key.encode())
