"""Training-time augmentation on padded batches: Gaussian noise, SpecAugment masks, MixUp,
frequency shift, time stretch and modality dropout.

All of them touch real frames only, so padding stays zeros and masks stay true. Features made
with ``deltas: true`` are ``planes = 3`` stacked planes (values, delta, delta-delta) along the
feature axis: frequency augmentations then move or mask the same bins in every plane and never
carry bins across a plane boundary.
"""

from __future__ import annotations

import numpy as np
import torch

from emorec.data import MODALITIES


def add_noise(batch: dict, sigma: float, generator: torch.Generator | None = None) -> dict:
    """Add N(0, sigma^2) to every real frame of every modality (seed 001: sigma 0.005)."""
    if sigma <= 0:
        return batch
    out = dict(batch)
    for m in MODALITIES:
        if m in batch:
            noise = torch.randn(batch[m].shape, generator=generator, device=batch[m].device) * sigma
            out[m] = batch[m] + noise * batch[f"{m}_mask"].unsqueeze(-1)
    return out


def as_planes(audio: torch.Tensor, planes: int) -> torch.Tensor:
    """``[B x T x F]`` -> a view ``[B x T x planes x F / planes]`` (writes go through to
    ``audio``)."""
    b, t, f = audio.shape
    if planes < 1 or f % planes:
        raise ValueError(f"feature size {f} is not {planes} equal planes")
    return audio.view(b, t, planes, f // planes)


def spec_augment(
    batch: dict,
    *,
    time_masks: int,
    freq_masks: int,
    time_width: int,
    freq_width: int,
    rng: np.random.Generator,
    planes: int = 1,
) -> dict:
    """Zero random time and frequency bands of the audio (Park et al. 2019), within real frames."""
    if "audio" not in batch or (time_masks <= 0 and freq_masks <= 0):
        return batch
    audio = batch["audio"].clone()  # (B, T, F)
    by_plane = as_planes(audio, planes)  # (B, T, P, F / P), a view of audio
    lengths = batch["audio_mask"].sum(dim=1).tolist()
    n_freq = by_plane.shape[3]
    for row, length in enumerate(lengths):
        for _ in range(time_masks):
            width = int(rng.integers(0, min(time_width, max(1, length // 5)) + 1))
            start = int(rng.integers(0, max(1, length - width + 1)))
            audio[row, start : start + width, :] = 0.0
        for _ in range(freq_masks):
            width = int(rng.integers(0, min(freq_width, n_freq) + 1))
            start = int(rng.integers(0, max(1, n_freq - width + 1)))
            by_plane[row, :length, :, start : start + width] = 0.0
    return {**batch, "audio": audio}


def mixup(
    batch: dict, targets: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[dict, torch.Tensor]:
    """Convex combinations of clips and their one-hot labels (Zhang et al. 2018).

    Sequences of different lengths are mixed frame by frame; the mixed clip's mask is the
    union of both masks (seed 001: alpha 0.2). ``targets`` are soft rows ``(B, C)``.
    """
    if alpha <= 0 or targets.shape[0] < 2:
        return batch, targets
    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)  # the first clip dominates, so its length is mostly kept
    perm = torch.from_numpy(rng.permutation(targets.shape[0])).to(targets.device)
    out = dict(batch)
    for m in MODALITIES:
        if m in batch:
            out[m] = lam * batch[m] + (1 - lam) * batch[m][perm]
            out[f"{m}_mask"] = batch[f"{m}_mask"] | batch[f"{m}_mask"][perm]
    if "classes" in batch:  # a mixed clip may have either clip's classes
        out["classes"] = batch["classes"] | batch["classes"][perm]
    return out, lam * targets + (1 - lam) * targets[perm]


def frequency_shift(batch: dict, max_bins: int, rng: np.random.Generator, planes: int = 1) -> dict:
    """Shift each clip's feature axis (each plane's) by up to ``max_bins`` bins, zero-filling the
    edge.

    On log-mel features this is a cheap stand-in for vocal-tract-length perturbation
    (Jaitly & Hinton 2013): it moves formants and pitch harmonics as a different speaker
    would, which helps speaker-independent generalisation.
    """
    if "audio" not in batch or max_bins <= 0:
        return batch
    audio = as_planes(batch["audio"], planes)  # (B, T, P, F / P)
    shifted = torch.zeros_like(audio)
    for row, shift in enumerate(
        rng.integers(-max_bins, max_bins + 1, size=audio.shape[0]).tolist()
    ):
        if shift > 0:
            shifted[row, ..., shift:] = audio[row, ..., :-shift]
        elif shift < 0:
            shifted[row, ..., :shift] = audio[row, ..., -shift:]
        else:
            shifted[row] = audio[row]
    return {**batch, "audio": shifted.flatten(2)}


def time_stretch(batch: dict, max_rate: float, rng: np.random.Generator) -> dict:
    """Resample the whole batch in time by one factor in ``[1 - max_rate, 1 + max_rate]``.

    Features are linearly interpolated and each clip keeps its real frames (its length
    scales by the same factor); padding stays zeros.
    """
    if "audio" not in batch or max_rate <= 0:
        return batch
    audio, mask = batch["audio"], batch["audio_mask"]  # (B, T, F), (B, T)
    rate = float(rng.uniform(1.0 - max_rate, 1.0 + max_rate))
    new_t = max(1, int(round(audio.shape[1] * rate)))
    lengths = mask.sum(dim=1).float()
    new_lengths = torch.clamp(torch.round(lengths * rate), min=1).long()
    stretched = torch.nn.functional.interpolate(
        audio.transpose(1, 2), size=new_t, mode="linear", align_corners=False
    ).transpose(1, 2)  # (B, T', F)
    new_mask = torch.arange(new_t, device=mask.device)[None, :] < new_lengths[:, None]  # (B, T')
    return {**batch, "audio": stretched * new_mask.unsqueeze(-1), "audio_mask": new_mask}


def modality_dropout(batch: dict, p: float, rng: np.random.Generator) -> dict:
    """Remove one modality from a share ``p`` of the clips (never both, never a clip's only one).

    A removed modality looks exactly like a missing one at test time (no face, no audio track,
    ``evaluate --drop``): zero features and an all-False mask row, so the model learns to use its
    placeholder and the other modality. Which modality goes is a fair coin per clip. Apply it
    after MixUp, whose mask union would otherwise bring the removed frames back.
    """
    present = [m for m in MODALITIES if m in batch]
    if p <= 0 or len(present) < 2:
        return batch
    has = {m: batch[f"{m}_mask"].any(dim=1) for m in present}  # (B,) clips with real frames
    both = (has[present[0]] & has[present[1]]).cpu().numpy()
    chosen = both & (rng.random(both.shape[0]) < p)
    if not chosen.any():
        return batch
    which = rng.integers(0, 2, size=both.shape[0])
    out = dict(batch)
    for index, m in enumerate(present):
        rows = torch.from_numpy(chosen & (which == index)).to(batch[m].device)  # (B,)
        if rows.any():
            out[m] = batch[m] * ~rows.view(-1, 1, 1)
            out[f"{m}_mask"] = batch[f"{m}_mask"] & ~rows.view(-1, 1)
    return out
