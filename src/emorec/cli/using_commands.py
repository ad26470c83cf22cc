"""Using a model: ``predict``, ``timeline``, ``listen``, ``export``, ``serve``, ``models`` and
``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emorec.cli.app import _hush_libraries, app, err, out
from emorec.errors import EmorecError


@app.command()
def predict(
    paths: list[Path] = typer.Argument(
        ...,
        help="[MODEL] FILES...: audio or video files or folders; a first argument "
        "that is a trained model (fold directory, model.safetensors) names the model",
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="a trained model (default: the released model)"
    ),
    onnx: Optional[Path] = typer.Option(
        None, "--onnx", help="an exported ONNX model, run with onnxruntime"
    ),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="CSV to write (a .json beside it too)"
    ),
    ensemble_with: list[Path] = typer.Option(
        [], "--ensemble-with", "-e", help="another model to average with (repeatable)"
    ),
    segments: bool = typer.Option(
        False,
        "--segments",
        help="list the speech segments of input longer than 6 s "
        "(its answer is their duration-weighted mean)",
    ),
) -> None:
    """Emotion probabilities per clip, as a table and as CSV/JSON (the released model unless
    told otherwise).
    Input longer than a training clip (6 s) is windowed over its speech; input over 10 minutes is
    refused."""
    from emorec.inference.predict import MEDIA_SUFFIXES, is_model_path, predict_paths

    if model is None and onnx is None and len(paths) > 1 and is_model_path(paths[0]):
        model, paths = paths[0], paths[1:]
    elif (
        model is None
        and onnx is None
        and not paths[0].exists()
        and paths[0].suffix.lower() not in MEDIA_SUFFIXES
    ):
        raise EmorecError(
            f"{paths[0]}: no such model or input (a model is a trained fold "
            "directory or model.safetensors)"
        )
    if model is not None and onnx is not None:
        raise EmorecError("give --model or --onnx, not both")
    predict_paths(
        model,
        paths,
        out_path,
        console=out,
        err_console=err,
        ensemble_with=ensemble_with,
        onnx=onnx,
        show_segments=segments,
    )


@app.command()
def timeline(
    inputs: list[Path] = typer.Argument(
        ..., help="recordings of any length (audio, or video with sound)"
    ),
    model: Optional[Path] = typer.Option(
        None, help="a trained model (fold directory); default: the released model"
    ),
    out_dir: Path = typer.Option(
        Path("timeline"), "--out", "-o", help="where FILE.csv/.json/.vtt/.png go"
    ),
    window: float = typer.Option(
        3.0, help="window seconds (the clip length the model learned from)"
    ),
    hop: float = typer.Option(1.0, help="seconds between windows in long speech"),
    min_segment: float = typer.Option(1.0, help="shorter label runs merge into a neighbour"),
    context: float = typer.Option(
        1.0, help="seconds a speech region's windows reach past the VAD's edges"
    ),
    formats: str = typer.Option("csv,json,vtt,png", help="comma-separated: csv, json, vtt, png"),
    quiet: bool = typer.Option(False),
) -> None:
    """Emotion over time: speech regions (Silero VAD),
    windowed calibrated probabilities, smoothed segments."""
    from rich.progress import Progress

    from emorec.inference.api import load
    from emorec.errors import BadInputError
    from emorec.inference.timeline_files import write_timeline

    rec = load(model)
    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    failed = 0
    for path in inputs:
        try:
            with Progress(transient=True, disable=quiet) as bar:
                task = bar.add_task(f"{path.name}: windows", total=None)
                result = rec.timeline(
                    path,
                    window=window,
                    hop=hop,
                    min_segment=min_segment,
                    context=context,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        except BadInputError as problem:
            err.print(
                f"skipped {problem.path}: {problem.reason}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            failed += 1
            continue
        written = write_timeline(result, out_dir, chosen)
        out.print(
            f"{path}: {len(result.segments)} segment(s) in {result.duration:.1f} s -> "
            + ", ".join(str(p) for p in written),
            highlight=False,
            soft_wrap=True,
        )
        for s in result.segments[:20]:
            out.print(
                f"  {s.start:8.2f}-{s.end:8.2f}  {s.label:<10} {s.probabilities[s.label]:.0%}",
                highlight=False,
            )
    if failed == len(inputs):
        raise EmorecError(
            f"no input could be processed: all {failed} file(s) skipped (reasons above)"
        )


@app.command()
def listen(
    simulate: Optional[Path] = typer.Option(
        None, help="play this file at real time instead of the microphone"
    ),
    model: Optional[Path] = typer.Option(
        None, help="a trained model (fold directory); default: the released model"
    ),
    speed: float = typer.Option(
        1.0, help="with --simulate: times real time (0 = as fast as it decodes)"
    ),
    device: Optional[str] = typer.Option(
        None, help="the input device (sounddevice's name or number)"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="one JSON object per update (JSON lines) on stdout"
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="write the final timeline here (as `timeline`)"
    ),
) -> None:
    """Emotion while you speak: speech start and end, an interim answer every second of speech, and
    each stretch of speech's final segments (the same as `emorec timeline` gives the recording).
    Ctrl-C ends it."""
    import json

    from emorec.inference.api import load
    from emorec.inference.live import microphone, played_file
    from emorec.media.audio import probe_duration
    from emorec.inference.streaming import EmotionStream
    from emorec.inference.timeline_files import write_timeline

    if simulate:
        probe_duration(simulate)  # a missing file is one line before anything starts
    rec = load(model)
    blocks = played_file(simulate, speed=speed) if simulate else microphone(device=device)
    stream = EmotionStream(rec)

    def show(events) -> None:
        for event in events:
            if as_json:
                out.print(
                    json.dumps(
                        event.to_dict()
                        if event.kind != "end"
                        else {"type": "end", "time": event.time}
                    ),
                    highlight=False,
                    soft_wrap=True,
                )
            elif event.kind == "window":
                out.print(
                    f"{event.time:8.1f} s  now {event.label:<10} "
                    f"{event.probabilities[event.label]:.0%}",
                    highlight=False,
                )
            elif event.kind == "speech_start":
                out.print(f"{event.time:8.1f} s  speech from {event.start:.2f} s", highlight=False)
            elif event.kind == "segments":
                for s in event.segments:
                    out.print(
                        f"{event.time:8.1f} s  segment {s.start:.2f}-{s.end:.2f}  {s.label:<10} "
                        f"{s.probabilities[s.label]:.0%}",
                        highlight=False,
                    )

    if not as_json:
        err.print(
            "listening to " + (str(simulate) if simulate else "the microphone") + " (Ctrl-C ends)",
            highlight=False,
            soft_wrap=True,
        )
    try:
        for block in blocks:
            show(stream.feed(block))
    except KeyboardInterrupt:
        pass
    show(stream.close())
    result = stream.timeline
    result.source = str(simulate) if simulate else "microphone"
    if out_dir is not None:
        written = write_timeline(result, out_dir, ["csv", "json", "vtt", "png"])
        err.print(
            f"{len(result.segments)} segment(s) in {result.duration:.1f} s -> "
            + ", ".join(map(str, written)),
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def export(
    model: Path = typer.Argument(
        ..., help="a trained model (fold directory, model.safetensors) or a released model's name"
    ),
    out_path: Path = typer.Argument(..., help="the file to write, e.g. model.onnx"),
    format: str = typer.Option(
        "onnx", "--format", help="onnx (waveform in, calibrated probabilities out)"
    ),
    quantize: bool = typer.Option(
        False, help="also write OUT.int8.onnx with int8 dynamic quantisation of the weights"
    ),
) -> None:
    """Export a model as a self-contained ONNX graph
    (front end inside: onnxruntime alone serves it)."""
    from emorec.inference.onnx_export import export_onnx
    from emorec.inference.released import released_model_dir

    if format != "onnx":
        raise EmorecError(f"unknown export format {format!r}; known: onnx")
    if not model.exists() and released_model_dir(str(model)) is not None:
        model = released_model_dir(str(model))
    written = export_onnx(model, out_path, quantize=quantize)
    out.print(
        f"{written['onnx']} ({written['bytes'] / 1e6:.1f} MB); onnxruntime "
        "vs torch on a test batch: "
        f"max |difference| {written['check']['max_abs_diff']:.1e}",
        highlight=False,
        soft_wrap=True,
    )
    if quantize:
        out.print(
            f"{written['int8']} ({written['int8_bytes'] / 1e6:.1f} MB, int8 weights)",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def serve(
    model: Optional[Path] = typer.Argument(
        None,
        help="a trained model, a released model's name or an .onnx file "
        "(default: the released model)",
    ),
    host: str = typer.Option(
        "127.0.0.1", help="listen address (loopback by default; 0.0.0.0 exposes it)"
    ),
    port: int = typer.Option(8000),
    workers: int = typer.Option(
        1, help="inference threads (each job decodes and predicts one upload)"
    ),
    queue: int = typer.Option(8, help="jobs that may wait for a thread; more are answered 503"),
    max_mb: float = typer.Option(25.0, help="largest upload (413 above)"),
    max_seconds: float = typer.Option(
        600.0,
        help="longest recording (413 above; predict and the Python API refuse past 600 s too)",
    ),
    timeout: float = typer.Option(60.0, help="per-request limit (503 past it)"),
    api_key: Optional[str] = typer.Option(
        None, envvar="EMOREC_API_KEY", help="require this key (or $EMOREC_API_KEY)"
    ),
    cors_origin: list[str] = typer.Option(
        [], help="allow browser pages from this origin (repeatable; off by default)"
    ),
    max_streams: int = typer.Option(
        8, help="live WebSocket streams at once (/v1/stream); the next is refused"
    ),
) -> None:
    """Serve the model over HTTP: POST /v1/predict and /v1/timeline, WS /v1/stream, GET /v1/model,
    /healthz, /metrics, a web page at /."""
    import uvicorn

    from emorec.inference.released import released_model_dir
    from emorec.serve.app import ServeSettings, create_app

    if model is not None and not model.exists() and released_model_dir(str(model)) is not None:
        model = released_model_dir(str(model))
    import torch

    torch.set_num_threads(max(1, (torch.get_num_threads() or 1) // max(1, workers)))
    settings = ServeSettings(
        max_bytes=int(max_mb * 1e6),
        max_seconds=max_seconds,
        workers=workers,
        queue=queue,
        timeout=timeout,
        api_key=api_key or None,
        cors_origins=tuple(cors_origin),
        max_streams=max_streams,
    )
    app_ = create_app(model, settings)
    out.print(
        f"emorec serving {app_.state.service.model_id} at http://{host}:{port}/  (API docs: /docs)",
        highlight=False,
    )
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level="warning",
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


@app.command()
def models() -> None:
    """Released models (ready to use) and every registered architecture:
    name, modalities, parameters, seed."""
    from emorec.inference.model_files import ModelMeta
    from emorec.models.registry import describe_models
    from emorec.inference.released import DEFAULT, released_model_dir, released_models

    released = Table(title="released models (emorec.load(NAME); the default needs no name)")
    for col in ("name", "classes", "architecture", "recipe", "weights sha256"):
        released.add_column(col)
    for name in released_models():
        meta = ModelMeta.read(released_model_dir(name))
        released.add_row(
            name + (" (default)" if name == DEFAULT else ""),
            ", ".join(meta["class_names"]),
            meta["model"],
            meta.get("recipe", ""),
            (meta.get("weights_sha256") or "")[:16],
        )
    if released_models():
        out.print(released)
    else:
        out.print("no released model in this installation", highlight=False)
    table = Table(title="architectures (train them with a recipe)")
    for col in ("name", "modalities", "parameters", "seed", "summary"):
        table.add_column(col)
    for row in describe_models():
        table.add_row(
            row["name"],
            ", ".join(row["modalities"]),
            f"{row['parameters']:,}",
            row["seed"],
            row["summary"],
        )
    out.print(table)


@app.command()
def demo(
    out_dir: Path = typer.Option(
        Path("emorec-demo"), "--out", "-o", help="where the corpus, cache and runs go"
    ),
    epochs: int = typer.Option(12),
    quiet: bool = typer.Option(False),
) -> None:
    """Generate a SYNTHETIC corpus, then prepare -> extract -> train -> evaluate it end to end."""
    from emorec.workflows.demo import run_demo

    if quiet:
        _hush_libraries()
    run_demo(out_dir, epochs=epochs, progress=not quiet, console=out)
