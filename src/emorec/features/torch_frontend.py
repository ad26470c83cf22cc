"""The log-mel front end (``spectral.LogMel`` + its normaliser) as a torch module over a padded
batch, built from ops an ONNX graph has: the exported model reads waveforms, not features. The voice
encoder's front end (``voice_encoder.VoiceEncoder``: trim, level, power mel, the frozen LSTM layers)
is :class:`VoiceEncoderFrontEnd`; :func:`front_end_for` picks the one an extractor needs.

``forward(wave (B, N) float32, lengths (B,) int64) -> (features (B, T, F), mask (B, T))`` computes,
row by row, what ``LogMel.extract`` computes with ``dsp.py`` on each waveform alone: silence trim
(frame energies over 2048 samples, hop 512 or every sample), centred STFT (periodic Hann), Slaney
mel filterbank, dB with the ``top_db`` floor, Savitzky-Golay deltas with librosa's edge fits, then
the model's normalisation. Every data-dependent step (trim bounds, each row's frame count, edge
windows) is an index or a mask, never a shape, so one graph serves any batch of any lengths.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emorec.features import dsp

TRIM_FRAME, TRIM_HOP = 2048, 512


def trim_rows(
    wave: torch.Tensor,
    lengths: torch.Tensor,
    *,
    trim_db: float,
    trim_floor_db: float | None = None,
    trim_to_sample: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows without leading and trailing frames quieter than ``trim_db`` below their loudest (and,
    with ``trim_floor_db``, than that far above their noise floor), shifted to start at 0; a row
    with no loud frame stays whole (``LogMel`` keeps it)."""
    if trim_to_sample:
        # dsp.trim(to_sample=True): a frame centred on every sample, from float64 running sums
        squares = F.pad(wave.double() * wave.double(), (TRIM_FRAME // 2 + 1, TRIM_FRAME // 2))
        sums = squares.cumsum(dim=1)  # (B, N + TRIM_FRAME + 1), sums[:, 0] = 0
        energy = (sums[:, TRIM_FRAME:] - sums[:, :-TRIM_FRAME])[
            :, : wave.size(1)
        ] / TRIM_FRAME  # float64 as dsp
        frames = torch.arange(energy.size(1), device=wave.device)
        real = frames[None, :] < lengths[:, None]  # (B, N)
        unit, offset = 1, TRIM_HOP // 2
    else:
        energy = F.conv1d(
            F.pad(wave * wave, (TRIM_FRAME // 2, TRIM_FRAME // 2)).unsqueeze(1),
            wave.new_full((1, 1, TRIM_FRAME), 1.0 / TRIM_FRAME),
            stride=TRIM_HOP,
        ).squeeze(1)
        frames = torch.arange(energy.size(1), device=wave.device)
        real = frames[None, :] < (1 + lengths // TRIM_HOP)[:, None]  # (B, T_e)
        unit, offset = TRIM_HOP, 0
    peak = torch.where(real, energy, energy.new_zeros(())).amax(dim=1, keepdim=True)
    db = 10 * torch.log10(energy.clamp_min(1e-10)) - 10 * torch.log10(peak.clamp_min(1e-10))
    threshold = db.new_full((db.size(0), 1), -trim_db)
    if trim_floor_db is not None:  # dsp.trim's noise floor: the FLOOR_QUANTILE frame of each row
        ordered = torch.where(real, db, db.new_full((), float("inf"))).sort(dim=1).values
        n_real = real.sum(dim=1, keepdim=True)
        floor = ordered.gather(1, ((n_real - 1).float() * dsp.FLOOR_QUANTILE).long())  # (B, 1)
        threshold = torch.maximum(threshold, floor + trim_floor_db)
    loud = real & (db > threshold)
    any_loud = loud.any(dim=1)
    big = energy.size(1)
    first = torch.where(loud, frames[None, :], frames.new_full((), big)).amin(dim=1)
    last = torch.where(loud, frames[None, :], frames.new_full((), -1)).amax(dim=1)
    start = torch.where(
        any_loud, torch.minimum(lengths, first * unit + offset), torch.zeros_like(first)
    )
    end = torch.where(any_loud, torch.minimum(lengths, (last + 1) * unit + offset), lengths)
    new_lengths = (end - start).clamp_min(0)
    index = torch.arange(wave.size(1), device=wave.device)[None, :] + start[:, None]  # (B, N)
    shifted = wave.gather(1, index.clamp(max=wave.size(1) - 1))
    keep = torch.arange(wave.size(1), device=wave.device)[None, :] < new_lengths[:, None]
    return torch.where(keep, shifted, shifted.new_zeros(())), new_lengths


class LogMelFrontEnd(nn.Module):
    """See the module docstring. ``normalizer``: the model's ``Normalizer.to_dict()`` (or
    ``None``)."""

    def __init__(self, extractor, normalizer: dict | None = None):
        super().__init__()
        if extractor.name != "logmel":
            raise ValueError(f"the ONNX front end computes logmel features, not {extractor.name!r}")
        self.n_fft, self.hop, self.n_mels = extractor.n_fft, extractor.hop_length, extractor.n_mels
        self.top_db, self.trim_db, self.deltas = (
            extractor.top_db,
            extractor.trim_db,
            extractor.deltas,
        )
        self.trim_floor_db = getattr(extractor, "trim_floor_db", None)
        self.trim_to_sample = bool(getattr(extractor, "trim_to_sample", False))
        window = np.zeros(self.n_fft)
        left = (self.n_fft - extractor.win_length) // 2
        window[left : left + extractor.win_length] = dsp._hann(extractor.win_length)
        bins = self.n_fft // 2 + 1
        # (bins, n_fft)
        angles = 2 * np.pi * np.outer(np.arange(bins), np.arange(self.n_fft)) / self.n_fft
        dft = np.concatenate([np.cos(angles) * window, -np.sin(angles) * window])  # (2 bins, n_fft)
        # (2 bins, 1, n_fft)
        self.register_buffer("dft", torch.tensor(dft, dtype=torch.float32).unsqueeze(1))
        # (n_mels, bins)
        self.register_buffer("mel", torch.tensor(extractor._mel_basis(), dtype=torch.float32))
        for order in (1, 2):
            self.register_buffer(
                f"inner{order}_9",
                torch.tensor(dsp._savgol_coefficients(9, order), dtype=torch.float32),
            )
            self.register_buffer(
                f"inner{order}_3",
                torch.tensor(dsp._savgol_coefficients(3, order), dtype=torch.float32),
            )
            self.register_buffer(
                f"head{order}",
                torch.tensor(dsp._edge_operator(9, order, head=True), dtype=torch.float32),
            )
            self.register_buffer(
                f"tail{order}",
                torch.tensor(dsp._edge_operator(9, order, head=False), dtype=torch.float32),
            )
        norm = normalizer or {}
        self.center = norm.get("center", "none") if normalizer else "none"
        if self.center not in ("none", "global", "level"):
            raise ValueError(f"the ONNX front end has no {self.center!r} normalisation")
        self.level_columns = int(norm.get("level_columns", 0))
        width = extractor.n_features
        self.register_buffer(
            "norm_mean", torch.tensor(norm.get("mean", [0.0] * width), dtype=torch.float32)
        )
        self.register_buffer(
            "norm_std", torch.tensor(norm.get("std", [1.0] * width), dtype=torch.float32)
        )

    # ------------------------------------------------------------------ steps
    def _trim(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return trim_rows(
            wave,
            lengths,
            trim_db=self.trim_db,
            trim_floor_db=self.trim_floor_db,
            trim_to_sample=self.trim_to_sample,
        )

    def _log_mel(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N)`` -> dB ``(B, n_mels, T)`` and the frames of each row ``(B,)``."""
        half = self.n_fft // 2
        # (B, 2 bins, T)
        spectrum = F.conv1d(F.pad(wave, (half, half)).unsqueeze(1), self.dft, stride=self.hop)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag  # (B, bins, T)
        # (B, n_mels, T), re 1.0
        db = 10 * torch.log10(torch.matmul(self.mel, power).clamp_min(1e-10))
        frames = 1 + lengths // self.hop
        # (B, T)
        real_frames = torch.arange(db.size(2), device=db.device)[None, :] < frames[:, None]
        if self.top_db is not None:
            peak = torch.where(real_frames[:, None, :], db, db.new_full((), -1e4)).amax(
                dim=(1, 2), keepdim=True
            )
            db = torch.maximum(db, peak - self.top_db)
        return db, frames

    def _delta(self, x: torch.Tensor, frames: torch.Tensor, order: int) -> torch.Tensor:
        """Savitzky-Golay ``order``-th derivative along time of ``x (B, F, T)`` whose rows have
        ``frames`` real frames, as ``spectral.add_deltas``: width 9 with polynomial edge fits from 9
        frames on, width 3 with repeated edges from 3 to 8 frames, zeros below."""
        b, f, t = x.shape
        steps = torch.arange(t, device=x.device)
        last = (frames - 1).clamp_min(0)[:, None]  # (B, 1)
        # width 9, interior: a 9-tap correlation (valid where 4 <= t < frames - 4)
        inner9 = F.conv1d(
            F.pad(x.reshape(b * f, 1, t), (4, 4)), getattr(self, f"inner{order}_9").view(1, 1, 9)
        )
        inner9 = inner9.view(b, f, t)
        head = torch.einsum(
            "bfk,hk->bfh", F.pad(x, (0, 9))[:, :, :9], getattr(self, f"head{order}")
        )  # (B, F, 4)
        tail_index = (frames[:, None] - 9 + torch.arange(9, device=x.device)[None, :]).clamp(
            0, t - 1
        )  # (B, 9)
        tail_src = x.gather(2, tail_index[:, None, :].expand(b, f, 9))
        # (B, F, 4): frames n-4..n-1
        tail = torch.einsum("bfk,hk->bfh", tail_src, getattr(self, f"tail{order}"))
        position = steps[None, :]  # (1, T)
        # (B, F, T)
        head_full = head.gather(2, position.clamp(max=3).expand(b, t)[:, None, :].expand(b, f, t))
        tail_position = (position - (frames[:, None] - 4)).clamp(0, 3)  # (B, T)
        tail_full = tail.gather(2, tail_position[:, None, :].expand(b, f, t))
        out9 = torch.where((position < 4)[:, None, :], head_full, inner9)
        out9 = torch.where((position >= frames[:, None] - 4)[:, None, :], tail_full, out9)
        # width 3, edges repeated: clip each row's neighbour indices to its own frames
        coefficients = getattr(self, f"inner{order}_3")
        out3 = x.new_zeros(b, f, t)
        for k, offset in enumerate((-1, 0, 1)):
            index = torch.minimum((position + offset).clamp_min(0), last)  # (B, T)
            out3 = out3 + coefficients[k] * x.gather(2, index[:, None, :].expand(b, f, t))
        wide, narrow = (frames >= 9)[:, None, None], (frames >= 3)[:, None, None]
        return torch.where(wide, out9, torch.where(narrow, out3, torch.zeros_like(x)))

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(torch.long)
        wave = torch.where(
            torch.arange(wave.size(1), device=wave.device)[None, :] < lengths[:, None],
            wave,
            wave.new_zeros(()),
        )
        if self.trim_db is not None:
            wave, lengths = self._trim(wave, lengths)
        db, frames = self._log_mel(wave, lengths)  # (B, n_mels, T), (B,)
        planes = [db]
        if self.deltas:
            planes += [self._delta(db, frames, 1), self._delta(db, frames, 2)]
        features = torch.cat(planes, dim=1).transpose(1, 2)  # (B, T, F)
        # (B, T)
        mask = torch.arange(features.size(1), device=wave.device)[None, :] < frames[:, None]
        if self.center == "level":
            static = features[:, :, : self.level_columns]
            count = (frames * self.level_columns).clamp_min(1).to(features.dtype)
            level = (
                torch.where(mask[:, :, None], static, static.new_zeros(())).sum(dim=(1, 2)) / count
            )  # (B,)
            features = torch.cat(
                [static - level[:, None, None], features[:, :, self.level_columns :]], dim=2
            )
        if self.center != "none":
            features = (features - self.norm_mean) / self.norm_std
        return torch.where(mask[:, :, None], features, features.new_zeros(())), mask


class VoiceEncoderFrontEnd(nn.Module):
    """``VoiceEncoder.extract`` row by row over a padded batch: trim, RMS level, power mel (40
    bands, 25 ms every 10 ms), the encoder's LSTM layers, every ``stride``-th frame, the model's
    global normalisation. The LSTMs run forward in time, so a row's trailing padding never reaches
    its real frames: no per-row packing is needed."""

    def __init__(self, extractor, normalizer: dict | None = None):
        super().__init__()
        from emorec.features import voice_encoder as ve

        if extractor.name != "voice_encoder":
            raise ValueError(
                f"this front end computes voice_encoder features, not {extractor.name!r}"
            )
        if extractor.speed != 1.0:
            raise ValueError(
                f"voice_encoder speed {extractor.speed} is a training view, not a front end"
            )
        self.trim_db, self.trim_to_sample = extractor.trim_db, extractor.trim_to_sample
        self.level_dbfs, self.stride, self.hop = extractor.level_dbfs, extractor.stride, ve.HOP
        self.n_fft = ve.N_FFT
        bins = ve.N_FFT // 2 + 1
        # (bins, n_fft)
        angles = 2 * np.pi * np.outer(np.arange(bins), np.arange(ve.N_FFT)) / ve.N_FFT
        window = dsp._hann(ve.N_FFT)
        dft = np.concatenate([np.cos(angles) * window, -np.sin(angles) * window])  # (2 bins, n_fft)
        self.register_buffer("dft", torch.tensor(dft, dtype=torch.float32).unsqueeze(1))
        self.register_buffer("mel", torch.tensor(ve.mel_basis(), dtype=torch.float32))  # (40, bins)
        path = ve.weights_path(extractor.weights)
        self.kept = list(range(1, ve.LAYERS + 1)) if extractor.layer == "all" else [extractor.layer]
        self.layers = nn.ModuleList(
            ve.encoder(path, layer) for layer in range(1, max(self.kept) + 1)
        )
        norm = normalizer or {}
        self.center = norm.get("center", "none") if normalizer else "none"
        if self.center not in ("none", "global"):
            raise ValueError(
                f"the ONNX front end of voice_encoder has no {self.center!r} normalisation"
            )
        width = ve.HIDDEN * len(self.kept)
        self.register_buffer(
            "norm_mean", torch.tensor(norm.get("mean", [0.0] * width), dtype=torch.float32)
        )
        self.register_buffer(
            "norm_std", torch.tensor(norm.get("std", [1.0] * width), dtype=torch.float32)
        )

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(torch.long)
        real = torch.arange(wave.size(1), device=wave.device)[None, :] < lengths[:, None]  # (B, N)
        wave = torch.where(real, wave, wave.new_zeros(()))
        if self.trim_db is not None:
            wave, lengths = trim_rows(
                wave, lengths, trim_db=self.trim_db, trim_to_sample=self.trim_to_sample
            )
        if self.level_dbfs is not None:
            rms = ((wave.double() ** 2).sum(dim=1) / lengths.clamp_min(1).double()).sqrt()  # (B,)
            gain = torch.where(
                rms > 0, 10 ** (self.level_dbfs / 20) / rms.clamp_min(1e-30), rms.new_ones(())
            )
            wave = wave * gain.to(wave.dtype)[:, None]
        half = self.n_fft // 2
        # (B, 2 bins, T)
        spectrum = F.conv1d(F.pad(wave, (half, half)).unsqueeze(1), self.dft, stride=self.hop)
        re, im = spectrum.chunk(2, dim=1)
        x = torch.matmul(self.mel, re * re + im * im).transpose(1, 2)  # (B, T, 40)
        states = []
        for number, layer in enumerate(self.layers, start=1):
            x, _ = layer(x)  # (B, T, 256)
            if number in self.kept:
                states.append(x[:, :: self.stride])
        features = torch.cat(states, dim=2)  # (B, T', 256 * layers)
        frames = (1 + lengths // self.hop + self.stride - 1) // self.stride
        # (B, T')
        mask = torch.arange(features.size(1), device=wave.device)[None, :] < frames[:, None]
        if self.center == "global":
            features = (features - self.norm_mean) / self.norm_std
        return torch.where(mask[:, :, None], features, features.new_zeros(())), mask


#: extractor name -> the torch front end that computes its features inside an exported graph
FRONT_ENDS = {"logmel": LogMelFrontEnd, "voice_encoder": VoiceEncoderFrontEnd}


def front_end_for(extractor, normalizer: dict | None = None) -> nn.Module:
    if extractor.name not in FRONT_ENDS:
        raise ValueError(
            f"ONNX export computes {' or '.join(FRONT_ENDS)} features in the graph; "
            f"this model reads {extractor.name!r}"
        )
    return FRONT_ENDS[extractor.name](extractor, normalizer)
