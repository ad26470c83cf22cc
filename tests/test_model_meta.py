"""ModelMeta, the one reader and writer of model.json."""

import json

import pytest

from emorec.errors import EmorecError
from emorec.inference.model_files import ModelMeta
from emorec.inference.released import DEFAULT, released_model_dir


def test_a_model_file_reads_typed_and_writes_back_as_it_was(tmp_path):
    original = json.loads((released_model_dir(DEFAULT) / "model.json").read_text())
    meta = ModelMeta.read(released_model_dir(DEFAULT))
    assert meta.model == original["model"] and meta.class_names == original["class_names"]
    assert meta.temperature == original["calibration"]["temperature"] != 1.0
    assert meta.record["model_id"] == DEFAULT  # keys beyond the schema are the run's record
    assert (
        meta["features"] is meta.features and meta.get("model_id") == DEFAULT and "recipe" in meta
    )
    meta.write(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text()) == original
    assert dict(meta) == original


def test_what_is_not_a_model_file_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(EmorecError, match="no trained model here"):
        ModelMeta.read(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(EmorecError, match="model.json: not valid JSON"):
        ModelMeta.read(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"model": "attn_crnn", "features": {}}))
    with pytest.raises(EmorecError, match="lacks num_classes, class_names"):
        ModelMeta.read(tmp_path)


def test_setting_a_key_goes_to_its_field_or_to_the_record():
    meta = ModelMeta(
        model="m", num_classes=2, class_names=["a", "b"], features={"audio": {"name": "logmel"}}
    )
    meta["speaker_norm"] = True
    meta["fold"] = "fold_1"
    assert meta.speaker_norm is True and meta.record == {"fold": "fold_1"}
    del meta["fold"]
    with pytest.raises(KeyError):
        del meta["model"]
    assert meta.temperature == 1.0 and len(meta) == len(ModelMeta.fields())
