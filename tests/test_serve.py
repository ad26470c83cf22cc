"""`emorec serve` through the ASGI client: every endpoint, the limits, and 25+ kinds of bad input,
each a 4xx with a one-line reason, never a 5xx, the server still healthy after them."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
import soundfile as sf
from test_api import export_random_model, voice

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from emorec.serve.app import ServeSettings, create_app  # noqa: E402


def encoded(
    wave: np.ndarray,
    rate: int = 16000,
    fmt: str = "WAV",
    subtype: str | None = None,
    channels: int = 1,
) -> bytes:
    buffer = io.BytesIO()
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    model = export_random_model(tmp_path_factory.mktemp("serve") / "model")
    settings = ServeSettings(max_bytes=2_000_000, max_seconds=20.0, upload_seconds=5.0)
    with TestClient(create_app(model, settings)) as test_client:
        yield test_client


def test_predict_accepts_a_multipart_upload_and_a_raw_body_alike(client):
    clip = encoded(voice(2.0, 200))
    by_form = client.post("/v1/predict", files={"file": ("clip.wav", clip, "audio/wav")})
    raw = client.post("/v1/predict", content=clip, headers={"Content-Type": "audio/wav"})
    assert by_form.status_code == raw.status_code == 200
    body = by_form.json()
    assert body == raw.json() and body["duration"] == 2.0 and body["model"] == "model"
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "fmt,subtype", [("FLAC", None), ("OGG", "OPUS"), ("OGG", "VORBIS"), ("MP3", None)]
)
def test_every_container_decodes_to_about_the_same_answer(client, fmt, subtype):
    wave = voice(2.0, 180)
    reference = client.post(
        "/v1/predict", content=encoded(wave), headers={"Content-Type": "audio/wav"}
    ).json()
    response = client.post("/v1/predict", content=encoded(wave, fmt=fmt, subtype=subtype))
    assert response.status_code == 200, response.text
    assert response.json()["label"] == reference["label"]


def test_a_96_khz_stereo_recording_is_resampled_not_refused(client):
    response = client.post(
        "/v1/predict", content=encoded(voice(1.5, 200, sr=96000), 96000, channels=2)
    )
    assert response.status_code == 200 and response.json()["duration"] == 1.5


def test_timeline_model_card_health_and_metrics(client):
    wave = np.concatenate(
        [np.zeros(16000), voice(2.0, 200), np.zeros(24000), voice(1.5, 260), np.zeros(16000)]
    )
    timeline = client.post("/v1/timeline", content=encoded(wave.astype(np.float32)))
    assert timeline.status_code == 200, timeline.text
    # synthetic voices are not speech to the VAD: the real-clip test checks segments
    data = timeline.json()
    assert {"speech", "segments", "windows", "duration"} <= set(data) and "source" not in data
    card = client.get("/v1/model").json()
    assert (
        card["classes"] == ["neutral", "happy", "sad", "angry"]
        and card["limits"]["max_seconds"] == 20.0
    )
    assert client.get("/healthz").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'emorec_requests_total{endpoint="/v1/predict",status="200"}' in metrics
    assert "emorec_request_seconds_bucket" in metrics and "emorec_queue_depth" in metrics
    assert (
        client.get("/").status_code == 200 and "MediaRecorder" in client.get("/static/app.js").text
    )
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]


@pytest.mark.realdata
def test_timeline_of_an_uploaded_recording_of_real_clips(client, shared_data):
    from emorec.media.audio import load_audio

    clips = sorted((shared_data / "ravdess-speech-16k" / "Actor_02").glob("*.flac"))[:2]
    wave = np.concatenate(
        [
            np.zeros(16000, np.float32),
            load_audio(clips[0]),
            np.zeros(32000, np.float32),
            load_audio(clips[1]),
            np.zeros(16000, np.float32),
        ]
    )
    data = client.post("/v1/timeline", content=encoded(wave, fmt="FLAC")).json()
    assert len(data["speech"]) == 2 and len(data["segments"]) == 2
    both = client.post("/v1/predict?timeline=true", content=encoded(wave, fmt="FLAC")).json()
    assert both["timeline"] == data and set(both["probabilities"]) == set(data["classes"])
    assert "timeline" not in client.post("/v1/predict", content=encoded(wave, fmt="FLAC")).json()


def wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV header claiming ``data_bytes`` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def zip_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.wav", data)
    return buffer.getvalue()


def silent_flac(seconds: float) -> bytes:
    """Highly compressible: an hour of digital silence in a few hundred kB (a decompression
    bomb)."""
    return encoded(np.zeros(int(seconds * 16000), np.float32), fmt="FLAC")


def video_without_audio() -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


RNG = np.random.default_rng(0)
GOOD = encoded(voice(1.0, 200))
BAD_BODIES = {
    "random bytes as audio/wav": (RNG.bytes(5000), {"Content-Type": "audio/wav"}, 415),
    "random bytes as audio/ogg": (RNG.bytes(5000), {"Content-Type": "audio/ogg"}, 415),
    "random bytes as video/webm": (RNG.bytes(5000), {"Content-Type": "video/webm"}, 415),
    "zero bytes": (b"", {"Content-Type": "audio/wav"}, 422),
    "a truncated WAV (header only)": (wav_header(32000), {"Content-Type": "audio/wav"}, 422),
    "a WAV cut mid-sample": (GOOD[:45], {"Content-Type": "audio/wav"}, 422),
    "a WAV header claiming 4 GB": (
        wav_header(0xFFFFFF00) + GOOD[44:2044],
        {"Content-Type": "audio/wav"},
        422,
    ),
    "NaN samples": (encoded(np.full(16000, np.nan, np.float32), subtype="FLOAT"), {}, 422),
    "infinite samples": (encoded(np.full(16000, np.inf, np.float32), subtype="FLOAT"), {}, 422),
    "digital silence": (encoded(np.zeros(16000, np.float32)), {}, 422),
    "1 hour of silence": (silent_flac(3600), {}, 413),
    "25 s of speech (over the 20 s limit)": (encoded(voice(25, 150)), {}, 413),
    "a zip of a WAV": (zip_of(GOOD), {"Content-Type": "application/zip"}, 415),
    "a PNG image": (b"\x89PNG\r\n\x1a\n" + RNG.bytes(3000), {"Content-Type": "image/png"}, 415),
    "a video without audio": (video_without_audio(), {"Content-Type": "video/mp4"}, 415),
    "JSON instead of audio": (b'{"audio": [0.1, 0.2]}', {"Content-Type": "application/json"}, 415),
    "a form-encoded body": (
        b"file=abc",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    "plain text": (b"hello", {"Content-Type": "text/plain"}, 415),
    "multipart without a boundary": (b"--x\r\n", {"Content-Type": "multipart/form-data"}, 400),
    "multipart with the wrong boundary": (
        b'--other\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
        + GOOD
        + b"\r\n--other--\r\n",
        {"Content-Type": "multipart/form-data; boundary=expected"},
        400,
    ),
    "multipart without a file field": (
        b'--b\r\nContent-Disposition: form-data; name="audio"\r\n\r\n' + GOOD + b"\r\n--b--\r\n",
        {"Content-Type": "multipart/form-data; boundary=b"},
        400,
    ),
    "a body over the size limit": (b"\0" * 2_100_000, {"Content-Type": "audio/wav"}, 413),
    "a Content-Length over the limit": (
        GOOD,
        {"Content-Type": "audio/wav", "Content-Length-Override": "1"},
        200,
    ),
    "huge headers": (GOOD, {"Content-Type": "audio/wav", "X-Junk": "j" * 40_000}, 431),
    "an MP3 frame header then garbage": (
        b"\xff\xfb\x90\x64" + RNG.bytes(4000),
        {"Content-Type": "audio/mpeg"},
        415,
    ),
    "an Ogg page header then garbage": (
        b"OggS\x00\x02" + RNG.bytes(4000),
        {"Content-Type": "audio/ogg"},
        415,
    ),
    "a FLAC marker then garbage": (b"fLaC" + RNG.bytes(4000), {"Content-Type": "audio/flac"}, 415),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_input_is_a_4xx_with_a_reason_and_the_server_stays_up(client, name):
    body, headers, status = BAD_BODIES[name]
    headers = {k: v for k, v in headers.items() if k != "Content-Length-Override"}
    for endpoint in ("/v1/predict", "/v1/timeline"):
        response = client.post(endpoint, content=body, headers=headers)
        if name == "a Content-Length over the limit":
            continue  # the sent length is right here; the declared-length check is below
        assert response.status_code == status, (endpoint, response.status_code, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail
    assert client.get("/healthz").status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_reading(client):
    response = client.post(
        "/v1/predict",
        content=GOOD,
        headers={"Content-Type": "audio/wav", "Content-Length": "3000000"},
    )
    assert response.status_code == 413


def test_no_5xx_was_answered_to_any_bad_input(client):
    metrics = client.get("/metrics").text
    statuses = [line for line in metrics.splitlines() if line.startswith("emorec_requests_total{")]
    assert statuses and not [line for line in statuses if 'status="5' in line]


def test_api_key_overload_and_timeout(tmp_path):
    model = export_random_model(tmp_path / "model")
    with TestClient(create_app(model, ServeSettings(api_key="s3cret"))) as keyed:
        assert keyed.post("/v1/predict", content=GOOD).status_code == 401
        assert (
            keyed.post(
                "/v1/predict", content=GOOD, headers={"Authorization": "Bearer wrong"}
            ).status_code
            == 401
        )
        assert (
            keyed.post("/v1/predict", content=GOOD, headers={"X-API-Key": "s3cret"}).status_code
            == 200
        )
        assert keyed.get("/healthz").status_code == 200  # health checks need no key
    app = create_app(model, ServeSettings(workers=1, queue=0, timeout=0.5))
    import threading
    import time as clock

    release = threading.Event()
    original = app.state.service.predict
    app.state.service.predict = lambda wave: (release.wait(5), original(wave))[1]
    with TestClient(app) as busy:
        results = []
        first = threading.Thread(
            target=lambda: results.append(busy.post("/v1/predict", content=GOOD))
        )
        first.start()
        clock.sleep(0.2)
        overflow = busy.post("/v1/predict", content=GOOD)
        assert overflow.status_code == 503 and overflow.headers["Retry-After"]
        first.join()
        # the timeout
        assert results[0].status_code == 503 and "longer than" in results[0].json()["detail"]
        release.set()
        clock.sleep(0.3)
        app.state.service.predict = original
        assert busy.post("/v1/predict", content=GOOD).status_code == 200


def test_cors_is_off_unless_configured(tmp_path):
    model = export_random_model(tmp_path / "model")
    with TestClient(create_app(model)) as plain:
        assert (
            "access-control-allow-origin"
            not in plain.get("/healthz", headers={"Origin": "http://x"}).headers
        )
    with TestClient(create_app(model, ServeSettings(cors_origins=("http://x",)))) as open_:
        assert (
            open_.get("/healthz", headers={"Origin": "http://x"}).headers[
                "access-control-allow-origin"
            ]
            == "http://x"
        )


def test_a_served_process_answers_on_its_port_and_a_dead_one_says_why(tmp_path):
    """`ServeProcess` (what the browser test and the load benchmark start servers with): a real
    `emorec serve` child is up once /healthz answers and gone after the block; one that cannot start
    raises with the server's own one-line reason, not a timeout."""
    import json
    import urllib.request

    from emorec.serve.process import ServeProcess

    with ServeProcess(export_random_model(tmp_path / "m"), "--workers", "1") as server:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as answer:
            assert json.loads(answer.read())["status"] == "ok"
        process = server.process
    assert process.poll() is not None
    with pytest.raises(
        RuntimeError, match=r"exited with status 2: error: .*no_such_model: no trained model here"
    ):
        with ServeProcess(tmp_path / "no_such_model", startup_timeout=60):
            pass
