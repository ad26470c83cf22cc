"""A SYNTHETIC audio-visual corpus of generated feature sequences, for testing fusion.

Four classes built from two binary factors, ``class = 2 * arousal + valence`` over
(neutral, happy, sad, angry) → (0, 0), (0, 1), (1, 0), (1, 1). Each modality carries part of
the label: the audio frames carry the first factor strongly and the second weakly, the video
frames the other way round, so neither modality alone can reach what both reach together.
Per frame ``x = noise + clip_offset + shift on the informative dims``; the clip offset (one
draw per clip and dim, scale ``clip_noise``) keeps long clips from becoming trivially separable.

The arrays are written as per-clip ``.npy`` files, the pre-extracted feature import of
:class:`emorec.features.precomputed` (``name: npy``), audio ``[T_a x audio_dim]`` at ~3x the
frame count of video ``[T_v x video_dim]``. The manifest's media paths do not exist: there is no
media, only features. Results on it say nothing about real emotional behaviour.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emorec.corpora.manifest import Clip, write_manifest

__all__ = ["AV_EMOTIONS", "generate_av_feature_corpus"]

#: canonical class order: neutral 0, happy 1, sad 2, angry 3
AV_EMOTIONS = ("neutral", "happy", "sad", "angry")


def generate_av_feature_corpus(
    root: str | os.PathLike,
    *,
    speakers: int = 6,
    clips: int = 4,
    audio_dim: int = 6,
    video_dim: int = 5,
    shift: float = 1.5,
    weak_shift: float = 0.0,
    clip_noise: float = 0.0,
    seed: int = 0,
) -> tuple[Path, Path, Path]:
    """Write ``clips`` clips per speaker and emotion; returns ``(manifest, audio_dir, video_dir)``.

    ``shift`` moves two dims of a modality by ``±shift`` with its strong factor (audio: class // 2,
    video: class % 2); ``weak_shift`` moves a third dim by ``±weak_shift`` with the other factor.
    Arrays are named ``<clip_id with / as __>.npy``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    audio_dir, video_dir = root / "audio_npy", root / "video_npy"
    audio_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for spk in range(1, speakers + 1):
        for index, emotion in enumerate(AV_EMOTIONS):
            strong = {"audio": 2 * (index // 2) - 1, "video": 2 * (index % 2) - 1}  # ±1
            weak = {"audio": strong["video"], "video": strong["audio"]}
            for n in range(clips):
                clip_id = f"av/{spk:02d}-{emotion}-{n:02d}"
                frames = {"audio": int(rng.integers(8, 20)), "video": int(rng.integers(3, 8))}
                stem = clip_id.replace("/", "__")
                for modality, dim, folder in (
                    ("audio", audio_dim, audio_dir),
                    ("video", video_dim, video_dir),
                ):
                    x = rng.normal(size=(frames[modality], dim)) + clip_noise * rng.normal(
                        size=(1, dim)
                    )
                    x[:, :2] += shift * strong[modality]
                    if weak_shift and dim > 2:
                        x[:, 2] += weak_shift * weak[modality]
                    np.save(folder / f"{stem}.npy", x.astype(np.float32))
                rows.append(
                    Clip(
                        clip_id=clip_id,
                        path=str(root / "media" / f"{stem}.mp4"),
                        corpus="av",
                        speaker=f"av/{spk:02d}",
                        emotion=emotion,
                        gender="male" if spk % 2 else "female",
                        modality="audio_video",
                        duration=1.0,
                    )
                )
    manifest = write_manifest(rows, root / "manifest.csv")
    return manifest, audio_dir, video_dir
