"""The models that ship in the package: the default, and the earlier one by name."""

from __future__ import annotations

import json

import numpy as np

import emorec
from emorec.inference.released import DEFAULT, released_model_dir, released_models


def test_the_default_is_the_voice_encoder_six_class_model_and_the_earlier_ones_load_by_name():
    names = {
        "emorec-voice-encoder-multicorpus",
        "emorec-crnn-v2-multicorpus",
        "emorec-crnn-v2-ravdess-crema-d",
    }
    assert names <= set(released_models())
    rec = emorec.load()
    assert rec.model_id == DEFAULT == "emorec-voice-encoder-multicorpus"
    assert rec.classes == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    crnn = emorec.load("emorec-crnn-v2-multicorpus")
    assert crnn.model_id == "emorec-crnn-v2-multicorpus" and crnn.classes == rec.classes
    earlier = emorec.load("emorec-crnn-v2-ravdess-crema-d")
    assert earlier.model_id == "emorec-crnn-v2-ravdess-crema-d" and len(earlier.classes) == 8


def test_the_default_reads_its_encoder_from_its_own_folder():
    """The voice encoder's weights ship beside the model (not read from the resemblyzer wheel)."""
    folder = released_model_dir(DEFAULT)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["features"]["audio"]["weights"] == "voice_encoder.safetensors"
    assert (folder / "voice_encoder.safetensors").stat().st_size > 1_000_000
    assert "Apache-2.0" in (folder / "MODEL_CARD.md").read_text()


def test_the_card_states_the_weights_licence_and_what_to_expect_on_an_unheard_corpus():
    folder = released_model_dir(DEFAULT)
    card = (folder / "MODEL_CARD.md").read_text()
    meta = json.loads((folder / "model.json").read_text())
    assert "non-commercial" in card and "CC BY-NC-ND 4.0" in card and "leave one corpus out" in card
    assert meta["weights_sha256"] in card and "TESS" in card and "URDU" in card


def test_the_released_answer_does_not_move_with_the_silence_before_a_clip():
    """Its front end trims to the sample (``trim_to_sample``): the same voice behind 0-28 ms more
    silence gets the same probabilities (on the frame grid they moved by up to 0.2)."""
    from test_api import voice

    rec = emorec.load()
    assert rec.backend._front_end()[0]["audio"].trim_to_sample
    clip = np.concatenate([np.zeros(4000), voice(1.8, 170), np.zeros(3000)]).astype(np.float32)
    rows = rec.probabilities(
        [np.concatenate([np.zeros(pad, np.float32), clip]) for pad in range(0, 512, 64)]
    )
    np.testing.assert_allclose(rows, np.repeat(rows[:1], len(rows), axis=0), atol=1e-5)
