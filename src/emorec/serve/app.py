"""The HTTP API and web page of ``emorec serve`` (FastAPI):

* ``POST /v1/predict`` and ``POST /v1/timeline``: a multipart upload (field ``file``) or a raw audio
  body (WAV, FLAC, Ogg/Opus, MP3, WebM from a browser recorder, a video's audio track);
* ``WS /v1/stream``: live audio in, emotion updates out (:mod:`emorec.serve.stream`);
* ``GET /v1/model`` (the model card as JSON), ``GET /healthz``, ``GET /metrics`` (Prometheus text),
  OpenAPI at ``/docs``; the page at ``/`` (file or microphone, plain HTML/JS/CSS from the package).

Every refusal is a 4xx with ``{"detail": "<one line>"}``: 413 too large or too long, 415
undecodable, 422 empty/silent/NaN, 400 malformed, 401 without the API key, 408 a trickling upload,
431 oversized headers; 503 with ``Retry-After`` when the bounded pool is full or a job times out.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations here

from emorec.inference.long_input import LONG_INPUT_SECONDS, MAX_SECONDS
from emorec.memory import release_large_blocks
from emorec.serve.pool import InferencePool, Overloaded
from emorec.serve.stream import add_stream_endpoint, authorised
from emorec.serve.uploads import UploadError, decode_upload, multipart_file, read_body

WEB = Path(__file__).resolve().parent.parent / "web"


@dataclass
class ServeSettings:
    max_bytes: int = 25_000_000
    max_seconds: float = MAX_SECONDS
    workers: int = 1
    queue: int = 8
    timeout: float = 60.0
    upload_seconds: float = 30.0  # the whole body must arrive within this
    max_header_bytes: int = 16_384
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_streams: int = 8  # live WebSocket streams at once (/v1/stream); the next is refused


class ModelService:
    """What the endpoints need of a model: torch (:class:`emorec.inference.api.Recognizer`) or
    ONNX."""

    def __init__(self, model: str | Path | None = None):
        from emorec.inference.api import Recognizer, load

        # one thread a request: the server runs several
        if model is not None and Path(model).suffix == ".onnx":
            from emorec.inference.onnx_runtime import OnnxPredictor

            onnx = OnnxPredictor(model, threads=1)
            self.recognizer = Recognizer(onnx, model_id=onnx.meta.get("model_id", Path(model).stem))
        else:
            self.recognizer = load(model)
        self.backend = self.recognizer.backend
        self.classes, self.sample_rate = self.recognizer.classes, self.recognizer.sample_rate
        self.model_id = self.recognizer.model_id
        if model is not None and Path(model).suffix == ".onnx":
            self.card = {
                "model_id": self.model_id,
                "format": "onnx",
                "classes": self.classes,
                "sample_rate": self.sample_rate,
                "metadata": self.backend.meta,
            }
        else:
            meta = dict(self.backend.meta)
            card_path = (
                self.recognizer.model_dir / "MODEL_CARD.md" if self.recognizer.model_dir else None
            )
            self.card = {
                "model_id": self.model_id,
                "format": "safetensors",
                "classes": self.classes,
                "sample_rate": self.sample_rate,
                "architecture": meta.get("model"),
                "features": meta.get("features"),
                "calibration": meta.get("calibration"),
                "weights_sha256": meta.get("weights_sha256"),
                "recipe": meta.get("recipe"),
                "card_markdown": card_path.read_text()
                if card_path and card_path.is_file()
                else None,
            }

    def probabilities(self, waves, batch_size: int = 16):
        return self.backend.probabilities(waves, batch_size=batch_size)

    def predict(self, wave) -> dict:
        """The answer ``emorec predict`` and ``Recognizer.predict`` give: input over 6 s windowed
        over its speech, its segments listed (:mod:`emorec.inference.long_input`); no speech in it
        is a 422."""
        from emorec.errors import BadInputError
        from emorec.inference.long_input import CLIP, WINDOWED, is_long, windowed_answer

        method, segments = CLIP, []
        try:
            if not is_long(wave, self.sample_rate):
                probs = self.probabilities([wave])[0]
            else:
                answer = windowed_answer(
                    "upload", wave, self.sample_rate, self.classes, self.probabilities
                )
                probs, method, segments = (
                    answer.probabilities,
                    WINDOWED,
                    [s.to_dict() for s in answer.segments],
                )
        except BadInputError as err:
            raise UploadError(422, err.reason) from None
        return {
            "label": self.classes[int(probs.argmax())],
            "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
            "duration": round(wave.size / self.sample_rate, 3),
            "model": self.model_id,
            "method": method,
            "segments": segments,
        }

    def timeline(self, data: bytes) -> dict:
        from emorec.inference.timeline import build_timeline

        result = build_timeline(self, data).to_dict()
        result.pop("source", None)
        return result


def create_app(
    model: str | Path | None = None,
    settings: ServeSettings | None = None,
    *,
    service: ModelService | None = None,
):
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )

    settings = settings or ServeSettings()
    # a server decodes uploads of every size for days: keep its heap from fragmenting
    release_large_blocks()
    service = service or ModelService(model)
    pool = InferencePool(settings.workers, settings.queue, settings.timeout)
    registry = CollectorRegistry()
    requests = Counter(
        "emorec_requests",
        "HTTP requests by endpoint and status",
        ["endpoint", "status"],
        registry=registry,
    )
    latency = Histogram(
        "emorec_request_seconds",
        "request latency",
        ["endpoint"],
        registry=registry,
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )
    depth = Gauge("emorec_queue_depth", "inference jobs queued or running", registry=registry)
    depth.set_function(lambda: pool.depth)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.close()

    app = FastAPI(
        title="emorec",
        version=_version(),
        description=__doc__.split("\n\n")[0],
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service, app.state.pool, app.state.settings = service, pool, settings
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        endpoint = request.url.path if request.url.path in KNOWN_PATHS else "other"
        if sum(len(k) + len(v) for k, v in request.headers.raw) > settings.max_header_bytes:
            response = JSONResponse(
                {"detail": f"request headers larger than {settings.max_header_bytes} bytes"}, 431
            )
        elif (
            settings.api_key
            and request.url.path.startswith("/v1/")
            and not authorised(request, settings.api_key)
        ):
            response = JSONResponse(
                {"detail": "missing or wrong API key (Authorization: Bearer KEY or X-API-Key)"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            try:
                response = await call_next(request)
            except Exception as err:  # noqa: BLE001 - the server answers, whatever went wrong
                response = JSONResponse({"detail": f"internal error: {type(err).__name__}"}, 500)
        requests.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    async def upload(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_bytes:
            raise UploadError(
                413, f"upload larger than the limit of {settings.max_bytes / 1e6:.0f} MB"
            )
        body = await read_body(
            request.receive, max_bytes=settings.max_bytes, deadline_seconds=settings.upload_seconds
        )
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            body = multipart_file(body, content_type)
        elif content_type.startswith(
            ("application/x-www-form-urlencoded", "text/", "application/json")
        ):
            raise UploadError(
                415,
                "send audio as a multipart field 'file' or a raw audio body, not "
                f"{content_type.split(';')[0]}",
            )
        return body

    async def answer(request: Request, work) -> Response:
        # refuse before reading the upload: overload costs the server as little as possible
        if pool.full:
            return JSONResponse(
                {
                    "detail": f"the server is busy ({pool.depth} requests in "
                    "progress); retry shortly"
                },
                503,
                headers={"Retry-After": "1"},
            )
        try:
            data = await upload(request)
            result = await pool.run(lambda: work(data))
        except UploadError as err:
            return JSONResponse({"detail": err.reason}, err.status)
        except Overloaded as err:
            return JSONResponse(
                {"detail": err.reason}, 503, headers={"Retry-After": str(err.retry_after)}
            )
        return JSONResponse(result)

    def predict_job(data: bytes, with_timeline: bool = False) -> dict:
        result = service.predict(
            decode_upload(data, service.sample_rate, max_seconds=settings.max_seconds)
        )
        if with_timeline:  # the page's one request: the answer and the timeline it is read beside
            result["timeline"] = service.timeline(data)
        return result

    def timeline_job(data: bytes) -> dict:
        # the same refusals as predict, first
        decode_upload(data, 16000, max_seconds=settings.max_seconds)
        return service.timeline(data)

    @app.post("/v1/predict", summary="Emotion probabilities of one recording")
    async def predict(request: Request, timeline: bool = False):
        """``?timeline=true`` adds the recording's timeline (as ``/v1/timeline`` gives it) under
        ``timeline``."""
        return await answer(request, lambda data: predict_job(data, timeline))

    @app.post("/v1/timeline", summary="Emotion over time: speech regions, windows and segments")
    async def timeline(request: Request):
        return await answer(request, timeline_job)

    add_stream_endpoint(app, service, settings)

    @app.get("/v1/model", summary="The model card")
    async def model_card():
        return service.card | {
            "limits": {
                "max_bytes": settings.max_bytes,
                "max_seconds": settings.max_seconds,
                "windowed_above_seconds": LONG_INPUT_SECONDS,
                "max_streams": settings.max_streams,
            }
        }

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": service.model_id, "queue_depth": pool.depth}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = WEB / name
        if name not in STATIC or not path.is_file():
            return JSONResponse({"detail": "not found"}, 404)
        return FileResponse(path, media_type=STATIC[name])

    return app


STATIC = {
    "app.js": "text/javascript",
    "live-worklet.js": "text/javascript",
    "style.css": "text/css",
}
KNOWN_PATHS = {"/v1/predict", "/v1/timeline", "/v1/model", "/healthz", "/metrics", "/"}


def _version() -> str:
    from emorec.version import __version__

    return __version__
