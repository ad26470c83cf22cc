"""Recording conditions on waveforms (emorec.media.conditions, the robustness suite's) and simulated
on log-mel features (emorec.features.conditions, training's), and the level-free normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from emorec.media import conditions as C
from emorec.data import Normalizer
from emorec.errors import ConfigError
from emorec.features.conditions import MelConditions
from emorec.features.spectral import LogMel, add_deltas

SR = 16000


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced signal with a moving pitch, formant-like harmonics and syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(np.sin(k * phase) / k * (1.5 if 3 <= k <= 6 else 1.0) for k in range(1, 30))
    # syllables with pauses between them
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.1 * wave * envelope + 1e-4 * rng.standard_normal(t.size)).astype(np.float32)


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def level_db(wave: np.ndarray) -> float:
    # past the filter's onset
    return 10 * np.log10(np.mean(wave[SR // 4 :].astype(np.float64) ** 2))


@pytest.mark.parametrize("name", C.DEFAULT_SUITE)
def test_every_condition_keeps_length_and_is_reproducible(name):
    wave = speech_like()
    condition = C.parse_condition(name)
    out = condition.apply(wave, SR, seed="clip-1")
    assert out.shape == wave.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.array_equal(out, condition.apply(wave, SR, seed="clip-1"))


def test_noise_is_added_at_the_asked_snr_and_differs_per_seed():
    wave = speech_like()
    for snr in (20.0, 5.0):
        noisy = C.parse_condition(f"noise:{snr}").apply(wave, SR, seed="a")
        measured = 10 * np.log10(
            C.active_power(wave, SR) / np.mean((noisy - wave).astype(np.float64) ** 2)
        )
        assert measured == pytest.approx(snr, abs=0.05)
    a, b = (C.parse_condition("noise:10:white").apply(wave, SR, seed=s) for s in ("a", "b"))
    assert not np.allclose(a, b)


def test_pink_noise_has_equal_power_per_octave_above_50_hz():
    noise = C.coloured_noise(10 * SR, np.random.default_rng(0), "pink", SR)
    power, freqs = np.abs(np.fft.rfft(noise)) ** 2, np.fft.rfftfreq(noise.size, 1 / SR)
    octaves = [power[(freqs >= lo) & (freqs < 2 * lo)].sum() for lo in (125, 500, 2000)]
    assert max(octaves) / min(octaves) < 1.1


def test_gain_telephone_band_and_codecs_do_what_they_say():
    wave = speech_like()
    assert np.allclose(
        C.parse_condition("gain:-12").apply(wave, SR), wave * 10 ** (-12 / 20), atol=1e-7
    )
    band = C.parse_condition("band:300-3400")
    assert abs(level_db(band.apply(tone(1000), SR)) - level_db(tone(1000))) < 1.0
    for outside in (80.0, 6000.0):
        assert level_db(band.apply(tone(outside), SR)) < level_db(tone(outside)) - 20
    for codec in ("opus", "mp3"):
        decoded = C.parse_condition(codec).apply(wave, SR)
        assert np.corrcoef(decoded, wave)[0, 1] > 0.9  # aligned: the codec's delay is removed
    wet = C.parse_condition("reverb:0.8").apply(wave, SR, seed=0)
    assert C.active_power(wet, SR) == pytest.approx(
        C.active_power(wave, SR), rel=0.05
    ) and not np.allclose(wet, wave)


@pytest.mark.parametrize(
    "name", ["loud", "gain:x", "band:3400-300", "noise:10:purple", "reverb:-1", "opus:64"]
)
def test_a_wrong_condition_name_is_a_config_error(name):
    with pytest.raises(ConfigError, match="condition|colour"):
        C.parse_condition(name)


class Fixed:
    """A generator stand-in that applies every condition with the middle of each range; noise
    pink."""

    def __init__(self, values: dict[float, float]):
        self.values, self.gen = values, np.random.default_rng(0)

    def random(self):
        return 0.0

    def choice(self, options):
        return 1.0

    def uniform(self, low, high):
        return self.values.get(low, low)

    def gamma(self, *args, **kwargs):
        return self.gen.gamma(*args, **kwargs)


def test_simulated_conditions_match_the_waveform_ones_on_average():
    """Per mel band, the mean dB of the simulation is within 1.5 dB of the real condition's (which
    moves it by 3 to 28 dB; reverberation fills the pauses between syllables)."""
    wave, extractor = speech_like(3.0), LogMel(n_mels=64)
    clean = extractor.extract(wave)
    per_band = lambda a, b: np.abs(a.mean(0) - b.mean(0)).mean()  # noqa: E731
    cases = [
        (
            dict(additive_noise=1.0, snr_db=(10.0, 10.0)),
            C.add_noise(wave, SR, 10.0, np.random.default_rng(1), "pink"),
            {},
            per_band,
        ),
        (dict(band_limit=1.0), C.band_limit(wave, SR), {200.0: 300.0, 2800.0: 3400.0}, per_band),
        (
            dict(reverb=1.0),
            C.reverberate(wave, SR, 0.6, np.random.default_rng(2)),
            {0.2: 0.6, 0.1: 0.25},
            per_band,
        ),
    ]
    for settings, real_wave, values, distance in cases:
        simulated = MelConditions.for_extractor(extractor, **settings)(clean, Fixed(values))
        real = extractor.extract(real_wave)
        change, error = distance(real, clean), distance(real, simulated)
        assert change > 2.0 and error < min(1.5, change / 2), (settings, change, error)


def test_simulated_conditions_recompute_the_delta_planes():
    extractor = LogMel(n_mels=16, deltas=True)
    features = extractor.extract(speech_like())
    out = MelConditions.for_extractor(extractor, additive_noise=1.0, reverb=1.0)(
        features, np.random.default_rng(0)
    )
    assert out.shape == features.shape and not np.allclose(out[:, :16], features[:, :16])
    np.testing.assert_allclose(out, add_deltas(out[:, :16].T).T, atol=1e-4)
    with pytest.raises(ConfigError, match="logmel"):
        from emorec.features.spectral import MFCC

        MelConditions.for_extractor(MFCC(), reverb=1.0)


def test_level_normalisation_ignores_gain_and_keeps_the_spectral_shape():
    extractor = LogMel(n_mels=16, deltas=True)
    clips = [extractor.extract(speech_like(seed=s) * g) for s, g in ((0, 1.0), (1, 0.3), (2, 2.0))]
    norm = Normalizer.fit(clips, center="level", level_columns=16)
    louder = clips[0].copy()
    louder[:, :16] += 12.0  # +12 dB moves the dB values, never the deltas
    np.testing.assert_allclose(norm(louder), norm(clips[0]), atol=1e-4)
    # one number per clip is removed: the differences between bands (the spectral tilt) stay
    out = norm(clips[0]) * norm.std + norm.mean
    np.testing.assert_allclose(
        np.diff(out[:, :16], axis=1), np.diff(clips[0][:, :16], axis=1), atol=1e-3
    )
    again = Normalizer.from_dict(norm.to_dict())
    assert again.center == "level" and again.level_columns == 16
    np.testing.assert_array_equal(again(clips[1]), norm(clips[1]))
    with pytest.raises(ValueError, match="level_columns"):
        Normalizer.fit(clips, center="level")
