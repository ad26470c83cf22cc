"""The models that ship in the package: the default, and the earlier one by name."""

from __future__ import annotations

import json

import emorec
from emorec.released import DEFAULT, released_model_dir, released_models


def test_the_default_is_the_multi_corpus_six_class_model_and_the_earlier_one_loads_by_name():
    assert {"emorec-crnn-v2-multicorpus", "emorec-crnn-v2-ravdess-crema-d"} <= set(released_models())
    rec = emorec.load()
    assert rec.model_id == DEFAULT == "emorec-crnn-v2-multicorpus"
    assert rec.classes == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    earlier = emorec.load("emorec-crnn-v2-ravdess-crema-d")
    assert earlier.model_id == "emorec-crnn-v2-ravdess-crema-d" and len(earlier.classes) == 8


def test_the_card_states_the_weights_licence_and_what_to_expect_on_an_unheard_corpus():
    folder = released_model_dir(DEFAULT)
    card = (folder / "MODEL_CARD.md").read_text()
    meta = json.loads((folder / "model.json").read_text())
    assert "non-commercial" in card and "CC BY-NC-ND 4.0" in card and "leave one corpus out" in card
    assert meta["weights_sha256"] in card and "TESS" in card and "URDU" in card
