import cli_process
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
    cfg = load_config(
        REPO_CONFIGS / "attn_crnn.yaml",
        ["trainer.epochs=3", "optim.betas=[0.9, 0.98]"],
        {"augment": {"enabled": False}},
    )
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


def test_every_recipe_inherits_at_most_from_base_plus_one_level():
    """A recipe reads whole in two files at most besides itself: its family (an architecture's
    defaults) and base.yaml; the history of how it came about is in benchmarks/HISTORY.md."""
    from emorec.training.recipe_files import recipe_chain

    deep = {
        p.name: [c.name for c in recipe_chain(p)]
        for p in REPO_CONFIGS.glob("*.yaml")
        if len(recipe_chain(p)) > 3
    }
    assert not deep, f"recipes deeper than base + one level: {deep}"


def test_config_show_prints_the_resolved_recipe_and_what_differs_from_another(tmp_path):

    import yaml

    (tmp_path / "base.yaml").write_text("trainer: {epochs: 7}\naugment: {freq_shift: 3}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\naugment: {freq_shift: 6}\n")
    (tmp_path / "same.yaml").write_text("base: base.yaml\naugment: {freq_shift: 3}\n")

    def show(*args):
        return cli_process.emorec("config", "show", *args, timeout=120)

    resolved = show(tmp_path / "child.yaml", "--set", "trainer.seed=5")
    settings = yaml.safe_load(resolved.stdout)
    assert settings["trainer"]["epochs"] == 7 and settings["trainer"]["seed"] == 5
    # defaults filled in
    assert settings["augment"]["freq_shift"] == 6 and "lr" in settings["optim"]
    assert "child.yaml <- base.yaml" in resolved.stderr
    assert (
        show(tmp_path / "child.yaml", "--against", tmp_path / "base.yaml").stdout.strip()
        == "augment.freq_shift: 3 -> 6"
    )
    assert (
        "the same settings"
        in show(tmp_path / "same.yaml", "--against", tmp_path / "base.yaml").stdout
    )


def test_every_declared_choice_and_range_is_checked_at_load():
    """Validation is read from the fields themselves: any field declared with choices or a range
    refuses a value outside them with an error naming the key."""
    import dataclasses

    from emorec.training.config import TrainConfig

    checked = 0
    for section in ("data", "split", "optim", "loss", "augment", "trainer", "run"):
        for f in dataclasses.fields(getattr(TrainConfig(), section)):
            if "choices" in f.metadata:
                bad = "no-such-option"
            elif "range" in f.metadata:
                bounds = f.metadata["range"]
                bad = bounds["low"] - 1 if bounds["low"] is not None else bounds["high"] + 1
                if isinstance(f.default, tuple):
                    # a variable-length tuple may default to ()
                    bad = [bad] * max(len(f.default), 1)
            else:
                continue
            with pytest.raises(ConfigError, match=rf"^{section}\.{f.name}"):
                config_from_dict({section: {f.name: bad}})
            checked += 1
    assert checked >= 40
