"""An HTTP upload as a waveform, or a 4xx with a one-line reason: body size, multipart field,
container, duration, samples. Everything stays in memory (an upload is never written to disk, so no
request, failed or not, leaves a file behind)."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np

from emorec.errors import BadInputError
from emorec.media.audio import probe_duration, stream_audio, wav_declared_frames
from emorec.media.silence import SILENCE_PEAK


class UploadError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``reason``."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(receive, *, max_bytes: int, deadline_seconds: float) -> bytes:
    """The request body, refused past ``max_bytes`` (413) or when it does not arrive within
    ``deadline_seconds`` (408: a client that trickles its upload cannot hold a connection
    forever)."""
    chunks, size = [], 0
    deadline = time.monotonic() + deadline_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UploadError(408, f"the upload did not arrive within {deadline_seconds:.0f} s")
        try:
            message = await asyncio.wait_for(receive(), timeout=remaining)
        except asyncio.TimeoutError:
            raise UploadError(
                408, f"the upload did not arrive within {deadline_seconds:.0f} s"
            ) from None
        if message["type"] == "http.disconnect":
            raise UploadError(400, "the client disconnected before the upload ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise UploadError(413, f"upload larger than the limit of {max_bytes / 1e6:.0f} MB")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def multipart_file(body: bytes, content_type: str, field: str = "file") -> bytes:
    """The bytes of form field ``field`` of a ``multipart/form-data`` body."""
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary")
    parts: list[dict] = []
    header: dict = {}

    def begin() -> None:
        parts.append({"headers": {}, "data": []})

    def header_field(data: bytes, start: int, end: int) -> None:
        header["field"] = header.get("field", b"") + data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header["value"] = header.get("value", b"") + data[start:end]

    def header_end() -> None:
        parts[-1]["headers"][header.get("field", b"").lower()] = header.get("value", b"")
        header.clear()

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as err:  # noqa: BLE001 - the parser's own error types
        raise UploadError(400, f"malformed multipart body ({str(err)[:120]})") from None
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == field.encode():
            return b"".join(part["data"])
    names = [
        parse_options_header(p["headers"].get(b"content-disposition", b""))[1]
        .get(b"name", b"?")
        .decode(errors="replace")
        for p in parts
    ]
    raise UploadError(
        400, f"no form field {field!r} in the multipart body (fields: {', '.join(names) or 'none'})"
    )


def decode_upload(
    data: bytes, sample_rate: int, *, max_seconds: float, name: str = "upload"
) -> np.ndarray:
    """Bytes of any supported container -> mono float32 at ``sample_rate``: 413 past ``max_seconds``
    (from the header when it says, else while decoding), 415 undecodable, 422 empty, NaN or
    silent."""
    if not data:
        raise UploadError(422, "empty upload (0 bytes)")
    promised = wav_declared_frames(io.BytesIO(data))
    if promised:
        import soundfile as sf

        try:
            present = sf.info(io.BytesIO(data)).frames
        except Exception:  # noqa: BLE001 - undecodable: reported below
            present = 0
        if present < promised:
            raise UploadError(
                422,
                f"truncated WAV: its header promises {promised} sample frames, "
                f"the upload holds {present}",
            )
    seconds = probe_duration(data)
    if seconds is not None and seconds > max_seconds:
        raise UploadError(
            413, f"{seconds:.0f} s of audio is longer than the limit of {max_seconds:.0f} s"
        )
    blocks, total, cap = [], 0, int(max_seconds * sample_rate)
    try:
        for block in stream_audio(data, sample_rate, block_seconds=10.0, name=name):
            total += block.size
            if total > cap:
                raise UploadError(413, f"more than {max_seconds:.0f} s of audio (the limit)")
            blocks.append(block)
    except BadInputError as err:
        status = 422 if "NaN" in err.reason else 415
        raise UploadError(status, f"{err.reason}") from None
    if total == 0:
        raise UploadError(422, "no audio samples")
    wave = np.concatenate(blocks)
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise UploadError(422, "silent audio (peak below -90 dBFS)")
    return wave
