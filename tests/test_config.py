import pytest

from emorec.errors import ConfigError
from emorec.training.config import config_from_dict, load_config

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="trainer.epochz"):
        config_from_dict({"trainer": {"epochz": 3}})


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        config_from_dict({"trainer": {"batch_size": "many"}})


def test_recipe_overlays_base_and_overrides_apply(tmp_path):
    cfg = load_config(REPO_CONFIGS / "attn_crnn.yaml", ["trainer.epochs=3", "optim.betas=[0.9, 0.98]"],
                      {"augment": {"enabled": False}})
    assert cfg.model["name"] == "attn_crnn"
    assert cfg.trainer.epochs == 3 and cfg.trainer.patience == 6
    assert cfg.optim.betas == (0.9, 0.98)
    assert cfg.augment.enabled is False and cfg.augment.mixup == 0.2
    assert cfg.data.features == {"name": "logmel", "n_mels": 64}


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", sorted(p.name for p in REPO_CONFIGS.glob("*.yaml")))
def test_every_recipe_loads(recipe):
    cfg = load_config(REPO_CONFIGS / recipe)
    assert cfg.trainer.monitor.startswith("val/")
