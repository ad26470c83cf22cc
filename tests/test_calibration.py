"""Temperature scaling and expected calibration error (emorec.evaluation.calibration) and the
per-group breakdown of a report; a run's use
of them (fitted on validation clips at export, applied by prediction, reported per fold) is tested
in test_cli.py on its trained run."""

from __future__ import annotations

import numpy as np
import pytest

from emorec.evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax,
    uncalibrated,
)


def overconfident(n: int = 4000, classes: int = 6, temperature: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z), and logits z * temperature: a model ``temperature`` times too
    sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, classes))
    probs = softmax(z)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return z * temperature, labels


def test_fit_temperature_recovers_the_overconfidence():
    logits, labels = overconfident(temperature=2.5)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)
    logits, labels = overconfident(temperature=0.5, seed=1)  # underconfident: T < 1
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.1)


def test_scaling_lowers_the_calibration_error_and_keeps_every_prediction():
    logits, labels = overconfident()
    t = fit_temperature(logits[:2000], labels[:2000])  # fitted on one half, measured on the other
    before, after = softmax(logits[2000:]), softmax(logits[2000:] / t)
    assert (
        expected_calibration_error(after, labels[2000:])
        < 0.03
        < expected_calibration_error(before, labels[2000:])
    )
    assert np.array_equal(before.argmax(1), after.argmax(1))
    np.testing.assert_allclose(uncalibrated(after, t), before, atol=1e-9)


def test_ece_and_bins_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 1])
    rows = [r for r in reliability_bins(probs, labels) if r["count"]]
    assert [r["count"] for r in rows] == [1, 1, 1, 1] and sum(
        r["count"] for r in reliability_bins(probs, labels)
    ) == 4
    # |1 - .9| + |0 - .8| + |1 - .7| + |1 - .55|, each a quarter of the clips
    assert expected_calibration_error(probs, labels) == pytest.approx((0.1 + 0.8 + 0.3 + 0.45) / 4)
    assert fit_temperature(np.zeros((1, 3)), np.array([0])) == 1.0  # too few clips: no scaling


def test_breakdown_gives_each_group_its_own_ua_and_skips_kinds_with_one_value():
    from emorec.evaluation.metrics import age_group, breakdown

    y = np.array([0, 1, 0, 1, 0, 1])
    probs = np.eye(2)[[0, 1, 0, 1, 1, 0]]  # right for the women, wrong for the men
    groups = {
        "gender": ["female"] * 4 + ["male"] * 2,
        "corpus": ["c"] * 6,
        "age group": [age_group(a) for a in (25, 25, 0, 0, 61, 61)],
    }
    out = breakdown(y, probs, ["a", "b"], groups)
    assert set(out) == {"gender", "age group"}  # one corpus: nothing to compare
    assert (
        out["gender"]["female"] == {"n": 4, "ua": 1.0, "wa": 1.0}
        and out["gender"]["male"]["ua"] == 0.0
    )
    assert set(out["age group"]) == {"20-29", "60-69"} and age_group(0) == ""
