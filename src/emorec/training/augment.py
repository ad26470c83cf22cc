"""Training-time augmentation on padded batches: Gaussian noise, SpecAugment masks, MixUp.

All of them touch real frames only, so padding stays zeros and masks stay true.
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


def spec_augment(batch: dict, *, time_masks: int, freq_masks: int, time_width: int, freq_width: int,
                 rng: np.random.Generator) -> dict:
    """Zero random time and frequency bands of the audio (Park et al. 2019), within real frames."""
    if "audio" not in batch or (time_masks <= 0 and freq_masks <= 0):
        return batch
    audio = batch["audio"].clone()  # (B, T, F)
    lengths = batch["audio_mask"].sum(dim=1).tolist()
    n_freq = audio.shape[2]
    for row, length in enumerate(lengths):
        for _ in range(time_masks):
            width = int(rng.integers(0, min(time_width, max(1, length // 5)) + 1))
            start = int(rng.integers(0, max(1, length - width + 1)))
            audio[row, start : start + width, :] = 0.0
        for _ in range(freq_masks):
            width = int(rng.integers(0, min(freq_width, n_freq) + 1))
            start = int(rng.integers(0, max(1, n_freq - width + 1)))
            audio[row, :length, start : start + width] = 0.0
    return {**batch, "audio": audio}


def mixup(batch: dict, targets: torch.Tensor, alpha: float, rng: np.random.Generator) -> tuple[dict, torch.Tensor]:
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
    return out, lam * targets + (1 - lam) * targets[perm]
