"""A :class:`~emorec.inference.timeline.Timeline` as files: CSV (one row per segment), JSON
(everything), WebVTT (emotion captions a video editor or player shows over the recording) and a PNG
(class probabilities over time, speech regions shaded, segments named). Each is written
atomically."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from emorec.atomic import atomic_open, write_json
from emorec.inference.timeline import Timeline

FORMATS = ("csv", "json", "vtt", "png")


def vtt_time(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def to_vtt(timeline: Timeline) -> str:
    lines = [
        "WEBVTT",
        "",
        f"NOTE emotion captions by emorec ({timeline.model_id}), calibrated probabilities",
        "",
    ]
    for number, segment in enumerate(timeline.segments, 1):
        confidence = segment.probabilities[segment.label]
        lines += [
            str(number),
            f"{vtt_time(segment.start)} --> {vtt_time(segment.end)}",
            f"{segment.label} ({confidence:.0%})",
            "",
        ]
    return "\n".join(lines)


def to_csv(timeline: Timeline) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["start", "end", "label", *timeline.classes])
    for s in timeline.segments:
        writer.writerow(
            [
                f"{s.start:.3f}",
                f"{s.end:.3f}",
                s.label,
                *[f"{s.probabilities[c]:.5f}" for c in timeline.classes],
            ]
        )
    return text.getvalue()


def speech_lines(timeline: Timeline) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(x (n,), probabilities (n, C))`` per speech region, what the PNG draws: probabilities live
    inside speech only (a line across silence would claim an emotion where nobody spoke). Each
    window counts for the region it overlaps (it never reaches another); a region of one window is a
    level line."""
    lines = []
    for a, b in timeline.speech:
        own = [(wa, wb, p) for wa, wb, p in timeline.windows if wa < b and wb > a]
        if not own:
            continue
        x = np.clip([(wa + wb) / 2 for wa, wb, _ in own], a, b)
        probs = np.stack([p for _, _, p in own])
        if len(own) == 1:
            x, probs = np.array([a, b]), np.repeat(probs, 2, axis=0)
        lines.append((np.asarray(x, dtype=float), probs))
    return lines


def plot_timeline(timeline: Timeline, path: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = min(24.0, max(8.0, timeline.duration / 10))
    fig, ax = plt.subplots(figsize=(width, 3.6))
    for a, b in timeline.speech:
        ax.axvspan(a, b, color="0.9", zorder=0, linewidth=0)
    colours = plt.get_cmap("tab10")
    for number, (x, probs) in enumerate(speech_lines(timeline)):
        for k, name in enumerate(timeline.classes):
            ax.plot(
                x,
                probs[:, k],
                marker=".",
                linewidth=1.2,
                color=colours(k % 10),
                label=name if number == 0 else None,
            )
    for s in timeline.segments:  # the band of segments, one colour per class as the lines
        k = timeline.classes.index(s.label)
        ax.axvspan(
            s.start, s.end, ymin=1.0 / 1.12 * 1.02, ymax=1.0, color=colours(k % 10), linewidth=0
        )
    ax.set_xlim(0, max(timeline.duration, 1e-3))
    ax.set_ylim(0, 1.12)
    ax.set_xlabel(
        "time (s); grey: speech (Silero VAD); lines: probabilities over "
        "speech; band on top: segments"
    )
    ax.set_ylabel("probability")
    ax.set_title(
        f"{Path(timeline.source).name}: emotion over time ({timeline.model_id})", fontsize=10
    )
    if timeline.windows and timeline.speech:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    path = Path(path)
    try:
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def write_timeline(
    timeline: Timeline, out_dir: str | os.PathLike, formats=FORMATS, stem: str | None = None
) -> list[Path]:
    """``out_dir/<stem>.<format>`` for each of ``formats``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(timeline.source).stem
    written = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "json":
            write_json(path, timeline.to_dict())
        elif fmt == "png":
            plot_timeline(timeline, path)
        elif fmt in ("csv", "vtt"):
            with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(to_csv(timeline) if fmt == "csv" else to_vtt(timeline))
        else:
            raise ValueError(f"unknown timeline format {fmt!r}; known: {', '.join(FORMATS)}")
        written.append(path)
    return written
