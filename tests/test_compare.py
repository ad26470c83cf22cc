"""``emorec compare``: two recipes, one split, metrics side by side, the winner chosen on
validation."""

from __future__ import annotations

import json
from pathlib import Path

import cli_process
import pytest
import yaml

from emorec.workflows.compare import ModelResult, better_on_validation, compare_configs, verdict
from emorec.corpora import generate_synthetic_corpus, prepare_corpus
from emorec.errors import EmorecError
from emorec.corpora.manifest import write_manifest
from emorec.corpora.splits import load_splits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    generate_synthetic_corpus(
        root / "corpus", speakers=6, clips_per_emotion=2, emotions=("happy", "sad", "angry")
    )
    write_manifest(prepare_corpus("synthetic", root / "corpus").clips, root / "manifest.csv")
    common = {
        "data": {
            "manifest": str(root / "manifest.csv"),
            "cache": str(root / "cache"),
            "features": {"name": "logmel", "n_mels": 16},
            "workers": 1,
        },
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "trainer": {"epochs": 2, "batch_size": 8, "threads": 1},
        "run": {"dir": str(root / "runs"), "bootstrap": 20},
    }
    recipes = {
        "cnn_lstm": {
            "base": str(CONFIGS / "cnn_lstm.yaml"),
            **common,
            "model": {"name": "cnn_lstm", "frame_dims": [8], "lstm_hidden": [8], "dense": 8},
        },
        "cnn_pooling": {
            "base": str(CONFIGS / "cnn_pooling.yaml"),
            **common,
            # different split settings: compare must give B the split of A
            "split": {**common["split"], "seed": 7},
            "model": {"name": "cnn_pooling", "dense": [8]},
        },
    }
    for name, recipe in recipes.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    return root


def test_compare_cli_trains_both_on_one_split_and_picks_by_validation(corpus):
    root = corpus
    proc = cli_process.emorec(
        "compare",
        root / "cnn_lstm.yaml",
        root / "cnn_pooling.yaml",
        "--fold",
        "2",
        "--out",
        root / "compare.json",
        "--quiet",
        cwd=root,
        check=False,
        timeout=600,
        COLUMNS="200",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((root / "compare.json").read_text())
    a, b = result["models"]
    assert (a["label"], a["model"], b["label"], b["model"]) == (
        "cnn_lstm",
        "cnn_lstm",
        "cnn_pooling",
        "cnn_pooling",
    )
    for model in (a, b):
        for split in ("val", "test"):
            assert set(model[split]) == {"ua", "wa", "macro_f1"}
            assert all(0.0 <= v <= 1.0 for v in model[split].values()), model
        run = Path(model["run_dir"])
        assert sorted(p.name for p in run.glob("fold_*")) == ["fold_2"]
        assert model["folds"][0]["best_epoch"] in (1, 2) and model["parameters"] > 0
    splits = [
        [s.to_dict() for s in load_splits(Path(m["run_dir"]) / "splits.json")] for m in (a, b)
    ]
    assert splits[0] == splits[1]
    expected = better_on_validation(ModelResult(**a), ModelResult(**b))
    assert result["better_on_validation"] == expected
    assert "uses the split settings of cnn_lstm.yaml" in proc.stderr
    for needle in ("val ua (selects)", "test ua", "test macro-f1", "parameters"):
        assert needle in proc.stdout
    if expected is None:
        assert "no winner" in proc.stdout
    else:
        assert (
            f"better on validation: {expected}" in proc.stdout
            and "do not select a model" in proc.stdout
        )


def test_compare_refuses_configs_that_split_differently(corpus, tmp_path):
    root = corpus
    # B reads a manifest without one speaker: its folds cannot be A's
    rows = (root / "manifest.csv").read_text().splitlines()
    (tmp_path / "fewer.csv").write_text(
        "\n".join([rows[0]] + [r for r in rows[1:] if "speaker_06" not in r]) + "\n"
    )
    recipe = yaml.safe_load((root / "cnn_pooling.yaml").read_text())
    recipe["data"]["manifest"] = str(tmp_path / "fewer.csv")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(EmorecError, match="different splits"):
        compare_configs(root / "cnn_lstm.yaml", tmp_path / "b.yaml", fold=1, progress=False)
    assert not (tmp_path / "runs").exists()


def test_winner_is_chosen_on_validation_never_on_test():
    def result(label, val_ua, val_f1, test_ua):
        return ModelResult(
            label=label,
            config="",
            model=label,
            run_dir="",
            val={"ua": val_ua, "wa": 0.5, "macro_f1": val_f1},
            test={"ua": test_ua, "wa": 0.5, "macro_f1": 0.5},
        )

    assert better_on_validation(result("a", 0.6, 0.5, 0.1), result("b", 0.5, 0.9, 0.9)) == "a"
    # tie on UA -> F1
    assert better_on_validation(result("a", 0.6, 0.5, 0.9), result("b", 0.6, 0.7, 0.1)) == "b"
    assert better_on_validation(result("a", 0.6, 0.7, 0.9), result("b", 0.6, 0.7, 0.1)) is None
    text = verdict(
        {
            "models": [vars(result("a", 0.6, 0.5, 0.1)), vars(result("b", 0.5, 0.9, 0.9))],
            "better_on_validation": "a",
        }
    )
    assert text.startswith("better on validation: a") and "0.600 vs 0.500" in text
