"""The log-mel front end in NumPy alone: what the librosa calls of ``spectral.py`` computed,
without importing librosa.

Why: ``import librosa.core.spectrum`` (numba, scipy.signal) takes about 1.5 s and its first trim
call compiles for 0.7 s more, in every extraction worker; on a 2-core machine that was a third
of the time of extracting all of RAVDESS. The functions below follow librosa 0.11's
definitions step by step (``stft`` with ``center=True`` and zero padding, ``filters.mel``
with Slaney's scale and area normalisation, ``power_to_db``, ``effects.trim`` and
``feature.delta``, i.e. Savitzky-Golay with polynomial-fit edges); ``tests/test_dsp.py`` checks
them against librosa, which stays a test dependency.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["dct_matrix", "delta", "mel_filterbank", "power_spectrogram", "power_to_db", "trim"]


def _hann(win_length: int) -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window("hann", n, fftbins=True)``)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)).astype(np.float64)


def _frames(y: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """``(n,)`` -> ``(frames, frame_length)`` views, ``frames = 1 + (n - frame_length) // hop``."""
    return np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop]


def power_spectrogram(y: np.ndarray, *, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """``|STFT|^2`` of ``y : (n,)`` float32 -> ``(1 + n_fft // 2, 1 + n // hop_length)`` float32:
    Hann window of ``win_length`` centred in ``n_fft``, frames centred (``n_fft // 2`` zeros
    each side), as ``librosa.stft(..., center=True, pad_mode="constant")``."""
    window = np.zeros(n_fft, dtype=np.float64)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = _hann(win_length)
    padded = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    frames = _frames(padded, n_fft, hop_length)  # (T, n_fft)
    # float64 like librosa (its window is float64): float32 FFT rounding is relative to a frame's
    # total energy and would move quiet bins of loud frames by a fraction of a dB
    spectrum = np.fft.rfft(frames * window, axis=1)  # (T, bins) complex128
    # (bins, T)
    return np.ascontiguousarray((spectrum.real**2 + spectrum.imag**2).T, dtype=np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(
        mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels
    )


def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` float32 triangular filters on Slaney's mel scale with area
    normalisation (``librosa.filters.mel(htk=False, norm="slaney")``)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def power_to_db(
    power: np.ndarray, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> np.ndarray:
    """``10 log10(max(amin, S) / max(amin, ref))``, floored at ``top_db`` below its maximum."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    db -= 10.0 * np.log10(max(amin, ref))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


#: The noise floor of :func:`trim`: this quantile of a clip's frame energies.
FLOOR_QUANTILE = 0.1


def floor_index(frames: int) -> int:
    """Which frame of ``frames`` sorted by energy is the noise floor (the lower
    ``FLOOR_QUANTILE``)."""
    return int(FLOOR_QUANTILE * (frames - 1))


def trim(
    y: np.ndarray,
    *,
    top_db: float,
    floor_db: float | None = None,
    to_sample: bool = False,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> np.ndarray:
    """``y`` without its leading and trailing frames quieter than ``top_db`` below its loudest
    frame (``librosa.effects.trim``: frame mean-square energy, centred frames); empty if all are.

    ``floor_db``: frames must also be that many dB above the clip's noise floor (its
    ``FLOOR_QUANTILE`` frame energy), so the noise around speech in a noisy recording is trimmed
    as silence is in a clean one. A clip whose floor is more than ``top_db + floor_db`` below its
    peak (a quiet room) is trimmed exactly as without it.

    ``to_sample``: a frame is centred on every sample instead of every ``hop_length``-th, and the
    edges sit half a hop inside the first and last loud centre (where librosa's grid puts them on
    average). librosa's edges fall on a grid anchored at the first sample, so the same speech
    behind 20 ms more silence starts up to a hop later in its content and every STFT frame after
    it moves: a model can change its answer. Edges found per sample move with the speech, and the
    trimmed audio is the same however much silence (up to the noise floor) surrounds it."""
    n = y.shape[-1]
    if n == 0:
        return y[:0]
    if to_sample:
        mse, unit, offset = _energy_per_sample(y, frame_length), 1, hop_length // 2
    else:
        padded = np.pad(np.asarray(y, dtype=np.float32), frame_length // 2)
        frames = _frames(padded, frame_length, hop_length)  # (T, frame_length)
        mse = np.mean(np.abs(frames) ** 2, axis=1, dtype=np.float32)  # rms ** 2
        unit, offset = hop_length, 0
    db = power_to_db(mse, ref=float(np.max(mse)), top_db=None)
    threshold = -top_db
    if floor_db is not None:
        k = floor_index(db.size)
        threshold = max(threshold, float(np.partition(db, k)[k]) + floor_db)
    loud = np.flatnonzero(db > threshold)
    if loud.size == 0:
        return y[:0]
    return y[min(n, int(loud[0]) * unit + offset) : min(n, (int(loud[-1]) + 1) * unit + offset)]


def _energy_per_sample(y: np.ndarray, frame_length: int) -> np.ndarray:
    """``(n,)`` -> ``(n,)`` float64: the mean square of a ``frame_length`` frame centred on each
    sample."""
    n = y.shape[-1]
    padded = np.pad(np.asarray(y, dtype=np.float32).astype(np.float64), frame_length // 2)
    # float64 running sums: a frame's energy is a difference of two sums that grow with the clip
    sums = np.concatenate([[0.0], np.cumsum(padded * padded)])
    return (sums[frame_length : frame_length + n] - sums[:n]) / frame_length


def _savgol_coefficients(width: int, order: int) -> np.ndarray:
    """Weights ``c[k], k = -half..half``: the ``order``-th derivative at the centre of the
    least-squares polynomial of degree ``order`` through ``width`` points."""
    half = width // 2
    positions = np.arange(-half, half + 1, dtype=np.float64)
    vandermonde = positions[None, :] ** np.arange(order + 1)[:, None]  # (order + 1, width)
    target = np.zeros(order + 1)
    target[order] = math.factorial(order)
    return np.linalg.lstsq(vandermonde, target, rcond=None)[0]


def _edge_operator(width: int, order: int, head: bool) -> np.ndarray:
    """``(half, width)``: the ``order``-th derivative, at the first (or last) ``half`` positions,
    of the degree-``order`` polynomial fitted to the first (or last) ``width`` points."""
    half = width // 2
    positions = np.arange(width, dtype=np.float64)
    vandermonde = positions[:, None] ** np.arange(order + 1)[None, :]  # (width, order + 1)
    fit = np.linalg.pinv(vandermonde)  # (order + 1, width): values -> power-basis coefficients
    at = positions[:half] if head else positions[width - half :]
    powers = np.arange(order + 1)
    scale = np.array([math.perm(p, order) if p >= order else 0 for p in powers], dtype=np.float64)
    # (half, order + 1)
    derivative = scale[None, :] * at[:, None] ** np.clip(powers - order, 0, None)[None, :]
    return derivative @ fit


def delta(features: np.ndarray, *, width: int, order: int, mode: str) -> np.ndarray:
    """The ``order``-th derivative of ``features : (F, T)`` along time by Savitzky-Golay
    (``librosa.feature.delta``): ``mode="interp"`` fits the edge windows (needs ``T >= width``),
    ``"nearest"`` repeats the edge frames."""
    x = np.asarray(features, dtype=np.float64)
    half = width // 2
    coefficients = _savgol_coefficients(width, order)
    source = np.pad(x, ((0, 0), (half, half)), mode="edge") if mode == "nearest" else x
    out = np.zeros_like(x)
    # (F, T') T' = T or T - 2 half
    inner = np.lib.stride_tricks.sliding_window_view(source, width, axis=1) @ coefficients
    if mode == "nearest":
        out[:] = inner
    elif mode == "interp":
        out[:, half : x.shape[1] - half] = inner
        out[:, :half] = x[:, :width] @ _edge_operator(width, order, head=True).T
        out[:, x.shape[1] - half :] = x[:, -width:] @ _edge_operator(width, order, head=False).T
    else:
        raise ValueError(f"mode must be 'interp' or 'nearest', got {mode!r}")
    return out.astype(features.dtype, copy=False)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` orthonormal DCT-II rows (``scipy.fft.dct(type=2, norm="ortho")``'s first
    ``n_out`` coefficients, as ``librosa.feature.mfcc`` takes them)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis
