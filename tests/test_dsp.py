"""The NumPy log-mel front end (emorec.features.dsp) computes what librosa computes."""

from __future__ import annotations

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from emorec.features import dsp  # noqa: E402
from emorec.features.spectral import MFCC, LogMel  # noqa: E402


def speech_like(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A harmonic tone with a moving pitch and a loudness envelope, silence around it, and a
    quiet noise floor: loud and very quiet bins in the same frames."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = (
        sum(np.sin(k * phase) / k for k in range(1, 12))
        * np.clip(np.sin(np.pi * t / t[-1]), 0, None) ** 2
    )
    wave = np.concatenate(
        [np.zeros(sr // 3), voice, np.zeros(sr // 2)]
    ) + 1e-4 * rng.standard_normal(len(t) + sr // 3 + sr // 2)
    return (0.3 * wave).astype(np.float32)


@pytest.mark.parametrize("n", [1, 100, 511, 512, 4000, 37_123])
def test_power_spectrogram_equals_librosa_stft(n):
    wave = speech_like(3.0)[:n] if n > 0 else np.zeros(0, np.float32)
    want = (
        np.abs(
            librosa.stft(
                wave,
                n_fft=512,
                hop_length=160,
                win_length=400,
                window="hann",
                center=True,
                pad_mode="constant",
            )
        )
        ** 2
    )
    got = dsp.power_spectrogram(wave, n_fft=512, hop_length=160, win_length=400)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [
        (16000, 512, 64, 50.0, 8000.0),
        (22050, 1024, 128, 0.0, 11025.0),
        (16000, 400, 40, 300.0, 3400.0),
    ],
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    want = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    )
    np.testing.assert_allclose(
        dsp.mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax),
        want,
        rtol=1e-6,
        atol=1e-9,
    )


@pytest.mark.parametrize("top_db", [20.0, 40.0, 60.0])
def test_trim_equals_librosa(top_db):
    for seed in range(3):
        wave = speech_like(2.0 + seed, seed)
        want, _ = librosa.effects.trim(wave, top_db=top_db)
        np.testing.assert_array_equal(dsp.trim(wave, top_db=top_db), want)
    assert (
        dsp.trim(np.zeros(4000, np.float32), top_db=40).size
        == librosa.effects.trim(np.zeros(4000, np.float32), top_db=40)[0].size
    )


@pytest.mark.parametrize(
    "frames,width,mode", [(9, 9, "interp"), (57, 9, "interp"), (3, 3, "nearest"), (8, 3, "nearest")]
)
@pytest.mark.parametrize("order", [1, 2])
def test_delta_equals_librosa(frames, width, mode, order):
    features = np.random.default_rng(frames).normal(size=(5, frames)).astype(np.float32) * 20
    want = librosa.feature.delta(features, width=width, order=order, mode=mode)
    np.testing.assert_allclose(
        dsp.delta(features, width=width, order=order, mode=mode), want, rtol=1e-5, atol=1e-4
    )


def test_dct_rows_equal_scipy_ortho_dct():
    scipy_fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(0).normal(size=(64, 7))
    np.testing.assert_allclose(
        dsp.dct_matrix(40, 64) @ x, scipy_fft.dct(x, axis=0, type=2, norm="ortho")[:40], atol=1e-10
    )


def test_the_noise_floor_trim_trims_noise_as_silence_and_leaves_a_quiet_room_alone():
    """``floor_db``: in a clean clip (floor far below the peak) the trim is librosa's; with noise at
    10 dB SNR around the same voice, the plain trim keeps the whole clip (the noise is within 40 dB
    of the peak) while the floor trim drops the noise around the voice: it keeps at most the clean
    trim's extent and at least the voice's loud part (within 6 dB of its peak: frames 6 dB over
    the noise floor are kept; the voice's faded edges are under the noise)."""
    rng = np.random.default_rng(3)
    for seed in range(3):
        clean = speech_like(2.0 + seed, seed)
        np.testing.assert_array_equal(
            dsp.trim(clean, top_db=40, floor_db=6), librosa.effects.trim(clean, top_db=40)[0]
        )
        voiced = dsp.trim(clean, top_db=40)
        power = float(np.mean(voiced**2))
        noisy = (clean + np.sqrt(power / 10) * rng.standard_normal(clean.size)).astype(np.float32)
        assert dsp.trim(noisy, top_db=40).size == noisy.size
        kept = dsp.trim(noisy, top_db=40, floor_db=6).size
        assert dsp.trim(clean, top_db=6).size <= kept <= voiced.size + 2048 < noisy.size, (
            kept,
            voiced.size,
        )


def test_the_floor_trim_is_a_later_option_that_keeps_old_cache_keys():
    from emorec.errors import ConfigError

    # caches and models made before it stay valid
    assert "trim_floor_db" not in LogMel(trim_db=40).config()
    assert LogMel(trim_db=40, trim_floor_db=6).config()["trim_floor_db"] == 6.0
    with pytest.raises(ConfigError, match="trim_floor_db needs trim_db"):
        LogMel(trim_floor_db=6)


@pytest.mark.parametrize(
    "extractor", [LogMel(), LogMel(deltas=True, trim_db=40), MFCC(deltas=True)]
)
def test_extractors_equal_their_librosa_definition(extractor):
    """The whole extractor against the librosa calls it used to make (power_to_db with top_db)."""
    wave = speech_like(2.5, 4)
    if extractor.trim_db is not None:
        wave = librosa.effects.trim(wave, top_db=extractor.trim_db)[0]
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=16000,
        n_fft=512,
        hop_length=160,
        win_length=400,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=64,
        fmin=50.0,
        fmax=8000.0,
        htk=False,
        norm="slaney",
    )
    want = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
    if isinstance(extractor, MFCC):
        want = librosa.feature.mfcc(S=want, n_mfcc=40, dct_type=2, norm="ortho")
    if extractor.deltas:
        want = np.concatenate(
            [
                want,
                librosa.feature.delta(want, width=9, order=1, mode="interp"),
                librosa.feature.delta(want, width=9, order=2, mode="interp"),
            ]
        )
    got = extractor.extract(speech_like(2.5, 4))
    assert got.shape == want.T.shape
    np.testing.assert_allclose(got, want.T, rtol=0, atol=2e-3)


def test_the_per_sample_trim_cuts_the_same_speech_however_much_silence_precedes_it():
    """librosa's edges sit on a 512-sample grid from the first sample, so 64 more samples of silence
    move the trimmed audio against the speech; per-sample edges cut the same samples every time, and
    lie within half a hop of the grid's."""
    rng = np.random.default_rng(4)
    voiced = np.concatenate(
        [np.zeros(3000), speech_like(1.3, 5), 1e-4 * rng.standard_normal(5000)]
    ).astype(np.float32)
    cuts = [
        dsp.trim(np.concatenate([np.zeros(pad, np.float32), voiced]), top_db=40, to_sample=True)
        for pad in range(0, 1024, 64)
    ]
    for cut in cuts[1:]:
        np.testing.assert_array_equal(cut, cuts[0])
    grid = [
        dsp.trim(np.concatenate([np.zeros(pad, np.float32), voiced]), top_db=40)
        for pad in range(0, 1024, 64)
    ]
    assert len({g.size for g in grid}) > 1  # the grid's cut moves with the padding
    assert abs(cuts[0].size - librosa.effects.trim(voiced, top_db=40)[0].size) <= 512
    assert dsp.trim(np.zeros(0, np.float32), top_db=40, to_sample=True).size == 0
    with_floor = [
        dsp.trim(
            np.concatenate([np.zeros(pad, np.float32), voiced]),
            top_db=40,
            floor_db=6,
            to_sample=True,
        )
        for pad in (0, 320)
    ]
    np.testing.assert_array_equal(with_floor[0], with_floor[1])
