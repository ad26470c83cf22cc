"""``trainer.ema_half_life_epochs`` under DDP: the per-step decay comes from the number of
optimisation steps *each rank* takes per epoch (half the batches with two processes), so the
average spans the same epochs as in one process."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_config

REPO = Path(__file__).resolve().parents[1]
HALF_LIFE = 0.5


def emorec(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("EMOREC_RUN_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "emorec", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, (
        f"emorec {' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.mark.slow
def test_half_life_decay_counts_each_ranks_steps(tmp_path):
    from emorec.corpora.synthetic import generate_synthetic_corpus
    from emorec.training.checkpoints import load_checkpoint

    corpus = generate_synthetic_corpus(
        tmp_path / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    emorec("prepare", "synthetic", corpus, "--out", tmp_path / "manifest.csv", cwd=tmp_path)
    config = tiny_recipe_config(tmp_path, "h", trainer={"ema_half_life_epochs": HALF_LIFE})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    emorec(
        "train",
        tmp_path / "recipe.yaml",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--quiet",
        cwd=tmp_path,
    )
    run_dir = next((tmp_path / "runs").iterdir())
    n_train = len(json.loads((run_dir / "splits.json").read_text())["splits"][0]["train"])
    # not ceil(n_train / 8): each rank steps through its shard only
    per_rank = math.ceil(n_train / (2 * 8))
    meta = json.loads((run_dir / "fold_1" / "model.json").read_text())
    assert meta["world_size"] == 2 and meta["ema"]["steps_per_epoch"] == per_rank
    assert meta["ema"]["decay_per_step"] == pytest.approx(0.5 ** (1 / (HALF_LIFE * per_rank)))
    last = load_checkpoint(run_dir / "fold_1" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 2 * per_rank == int(last["averaging_state"]["n_averaged"])
    averaged = last["callbacks"]["HalfLifeEMA"]  # what the average was really made with
    assert averaged["steps_per_epoch"] == per_rank and averaged["decay"] == pytest.approx(
        meta["ema"]["decay_per_step"]
    )
