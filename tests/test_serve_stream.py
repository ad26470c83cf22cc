"""``WS /v1/stream``: live audio in, the updates of ``Recognizer.stream`` out, and every refusal a
4xxx close code with a one-line reason (key, format, malformed blocks, the stream limit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_api import export_random_model
from test_timeline import recording_of_clips

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

import emorec  # noqa: E402
from emorec.media.audio import load_audio  # noqa: E402
from emorec.serve.app import ServeSettings, create_app  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_random_model(tmp_path_factory.mktemp("ws") / "model")


def received_until_close(socket) -> tuple[list[dict], int | None, str]:
    updates = []
    while True:
        try:
            message = socket.receive()
        except WebSocketDisconnect as closed:
            return updates, closed.code, closed.reason
        if message["type"] == "websocket.close":
            return updates, message.get("code"), message.get("reason", "")
        updates.append(json.loads(message["text"]))


@pytest.mark.realdata
def test_pcm_blocks_stream_to_the_same_timeline_as_the_file(model, shared_data, tmp_path):
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_1[3-4]/*.flac"))[::17][:3]
    recording_of_clips(files, tmp_path / "talk.flac", seed=5)
    wave = load_audio(tmp_path / "talk.flac", 16000)
    pcm = np.round(np.clip(wave, -1, 1) * 32767).astype("<i2")
    with TestClient(create_app(model, ServeSettings())) as client:
        with client.websocket_connect("/v1/stream?format=pcm16&sample_rate=16000") as socket:
            for i in range(0, pcm.size, 1600):
                socket.send_bytes(pcm[i : i + 1600].tobytes())
            socket.send_text(json.dumps({"type": "end"}))
            updates, code, _ = received_until_close(socket)
    assert code == 1000 and updates[-1]["type"] == "end"
    kinds = [u["type"] for u in updates]
    assert kinds.count("segments") == len(files) and "window" in kinds
    # the int16 rounding is below the VAD's notice
    offline = emorec.load(model).timeline(tmp_path / "talk.flac")
    assert [s["label"] for s in updates[-1]["timeline"]["segments"]] == [
        s.label for s in offline.segments
    ]


def test_f32_blocks_and_the_end_message(model):
    t = np.arange(3 * 16000) / 16000
    wave = np.concatenate(
        [np.zeros(8000), 0.3 * np.sin(2 * np.pi * 150 * t), np.zeros(16000)]
    ).astype("<f4")
    with TestClient(create_app(model, ServeSettings())) as client:
        with client.websocket_connect("/v1/stream?format=f32") as socket:
            socket.send_bytes(wave.tobytes())
            socket.send_text('{"type": "end"}')
            updates, code, _ = received_until_close(socket)
    assert (
        code == 1000
        and updates[-1]["type"] == "end"
        and updates[-1]["timeline"]["duration"] == pytest.approx(4.5)
    )


@pytest.mark.parametrize(
    ("path", "messages", "code", "words"),
    [
        ("/v1/stream?format=mp3", [], 4415, "unknown format"),
        ("/v1/stream?sample_rate=fast", [], 4400, "whole number"),
        ("/v1/stream?sample_rate=100", [], 4400, "outside"),
        ("/v1/stream", [b"\x00\x01\x02"], 4400, "whole 2-byte samples"),
        ("/v1/stream?format=f32", [np.array([np.nan] * 4, "<f4").tobytes()], 4400, "NaN"),
        ("/v1/stream", [np.zeros(16000 * 6, "<i2").tobytes()], 4413, "over the limit"),
        ("/v1/stream", ["hello"], 4400, "text messages"),
    ],
)
def test_bad_streams_are_closed_with_a_code_and_a_reason(model, path, messages, code, words):
    with TestClient(create_app(model, ServeSettings())) as client:
        with client.websocket_connect(path) as socket:
            for message in messages:
                (socket.send_text if isinstance(message, str) else socket.send_bytes)(message)
            updates, got, reason = received_until_close(socket)
        assert (got, words in reason) == (code, True), reason
        assert client.get("/healthz").status_code == 200


def test_the_key_the_stream_limit_and_the_length_limit(model):
    with TestClient(
        create_app(model, ServeSettings(api_key="s3cret", max_streams=1, max_seconds=2.0))
    ) as client:
        with client.websocket_connect("/v1/stream") as socket:
            assert received_until_close(socket)[1] == 4401
        with client.websocket_connect("/v1/stream?key=s3cret") as first:
            first.send_bytes(np.zeros(1600, "<i2").tobytes())
            with client.websocket_connect("/v1/stream", headers={"X-API-Key": "s3cret"}) as second:
                _, code, reason = received_until_close(second)
                assert code == 4503 and "limit of 1 live streams" in reason
            # 2.5 s of audio: past the 2 s limit, the timeline comes before the close
            for _ in range(25):
                first.send_bytes(np.zeros(1600, "<i2").tobytes())
            updates, code, reason = received_until_close(first)
            assert code == 4413 and "limit of 2 s" in reason and updates[-1]["type"] == "end"
        with client.websocket_connect(
            "/v1/stream", headers={"Authorization": "Bearer s3cret"}
        ) as again:
            # the refused and the finished streams freed their places
            again.send_text('{"type": "end"}')
            assert received_until_close(again)[1] == 1000


def test_opus_packets_are_decoded(model):
    av = pytest.importorskip("av")
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.open()
    t = np.arange(2 * 48000) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 160 * t) * 32767).astype(np.int16)
    packets = []
    for i in range(0, tone.size - 960 + 1, 960):
        frame = av.AudioFrame.from_ndarray(tone[None, i : i + 960], format="s16", layout="mono")
        frame.sample_rate = 48000
        packets += [bytes(p) for p in encoder.encode(frame)]
    with TestClient(create_app(model, ServeSettings())) as client:
        with client.websocket_connect("/v1/stream?format=opus") as socket:
            for packet in packets:
                socket.send_bytes(packet)
            socket.send_text('{"type": "end"}')
            updates, code, _ = received_until_close(socket)
    assert code == 1000 and updates[-1]["timeline"]["duration"] == pytest.approx(2.0, abs=0.1)
