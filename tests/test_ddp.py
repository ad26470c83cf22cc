"""DDP: the sharded bucket sampler, and a real 2-process CPU (gloo) run through the CLI.

The end-to-end tests start ``emorec train --devices 2 --accelerator cpu`` as a user would, once
as ``python -m emorec`` and once through the ``emorec`` console script (Lightning's launcher
re-runs that command line for rank 1), then check that the run completed in ONE run
directory, that its exported model loads, and that its evaluation counts (confusion matrix,
per-class supports) equal those of a single-process ``emorec evaluate`` of the same model.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from emorec.data import BucketBatchSampler
from emorec.data import ShardedBucketBatchSampler
from conftest import tiny_recipe_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "n,batch,world", [(27, 8, 2), (9, 8, 2), (100, 7, 3), (5, 1, 2), (64, 16, 4), (13, 32, 2)]
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_get_disjoint_equal_shards_covering_every_clip(n, batch, world, shuffle):
    lengths = [random.Random(i).randint(20, 300) for i in range(n)]
    per_rank = []
    for rank in range(world):
        sampler = ShardedBucketBatchSampler(
            lengths, batch, shuffle=shuffle, seed=3, rank=rank, world_size=world
        )
        sampler.set_epoch(4)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        # never above batch_size, unless equal step counts need it (batch 1, odd clip count)
        assert all(0 < len(b) <= max(batch, -(-n // (world * len(batches)))) for b in batches)
        if n >= world * -(-n // (world * batch)):
            assert max(map(len, batches)) <= batch
        per_rank.append(batches)
    assert len({len(b) for b in per_rank}) == 1, "every rank must step the same number of times"
    seen = [i for batches in per_rank for b in batches for i in b]
    assert sorted(seen) == list(range(n)), "each clip exactly once per epoch, over all ranks"


def test_single_process_is_exactly_the_bucket_sampler():
    lengths = [random.Random(i).randint(20, 300) for i in range(50)]
    for epoch in range(3):
        ours = ShardedBucketBatchSampler(lengths, 8, seed=1)
        ours.set_epoch(epoch)
        theirs = BucketBatchSampler(lengths, 8, seed=1)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_epochs_differ_and_repeat_with_the_epoch():
    lengths = list(range(10, 60))
    a = ShardedBucketBatchSampler(lengths, 4, seed=0, rank=0, world_size=2)
    a.set_epoch(1)
    first = list(a)
    a.set_epoch(2)
    second = list(a)
    a.set_epoch(1)
    assert list(a) == first != second


def test_too_few_clips_for_the_processes_is_a_clear_error():
    from emorec.errors import EmorecError

    with pytest.raises(EmorecError, match="cannot be shared by 3 processes"):
        len(ShardedBucketBatchSampler([10, 20], 4, rank=0, world_size=3))


# ------------------------------------------------------------------------------- end to end
def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("EMOREC_RUN_DIR", None)
    return env


def run(args: list, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env()
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed "
            f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from emorec.corpora.synthetic import generate_synthetic_corpus

    root = tmp_path_factory.mktemp("ddp")
    corpus = generate_synthetic_corpus(
        root / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    run(
        [
            sys.executable,
            "-m",
            "emorec",
            "prepare",
            "synthetic",
            corpus,
            "--out",
            root / "manifest.csv",
        ],
        root,
    )
    config = tiny_recipe_config(root, "d")
    (root / "recipe.yaml").write_text(yaml.safe_dump(config))
    return root


def _check_ddp_run(root: Path, run_dir: Path, folds: list[int]) -> None:
    from emorec.inference.predictor import Predictor

    splits = json.loads((run_dir / "splits.json").read_text())["splits"]
    before = {
        k: json.loads((run_dir / f"fold_{k}" / "report" / "report.json").read_text()) for k in folds
    }
    for k in folds:
        fold_dir = run_dir / f"fold_{k}"
        heartbeat = json.loads((fold_dir / "heartbeat.json").read_text())
        assert heartbeat["status"] == "finished" and heartbeat["world_size"] == 2
        summary = json.loads((fold_dir / "train_summary.json").read_text())
        assert (
            summary["hardware"]["world_size"] == 2
            and summary["hardware"]["strategy"] == "DDPStrategy"
        )
        assert Predictor.load(fold_dir).class_names == ["happy", "sad", "angry"]  # the export loads
        # each rank stepped ceil(train / (2 x batch)) times per epoch: the shards were halves
        n_train = len(splits[k - 1]["train"])
        assert summary["train_batches_per_epoch"] == -(-n_train // 16)
    run([sys.executable, "-m", "emorec", "evaluate", run_dir, "--quiet"], root)  # one process
    for k in folds:
        after = json.loads((run_dir / f"fold_{k}" / "report" / "report.json").read_text())
        assert after["confusion_matrix"] == before[k]["confusion_matrix"]
        assert {c: v["support"] for c, v in after["per_class"].items()} == {
            c: v["support"] for c, v in before[k]["per_class"].items()
        }
        assert np.sum(after["confusion_matrix"]) == after["n"] == len(splits[k - 1]["test"])
        assert after["ua"] == before[k]["ua"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_python_dash_m(project):
    proc = run(
        [
            sys.executable,
            "-m",
            "emorec",
            "train",
            project / "recipe.yaml",
            "--devices",
            "2",
            "--accelerator",
            "cpu",
            "--quiet",
            "--run-dir",
            project / "runs-m",
        ],
        project,
    )
    runs = list((project / "runs-m").iterdir())
    assert len(runs) == 1, f"one run directory for both ranks, got {runs}"
    assert "fold_1: UA" in proc.stdout and proc.stdout.count("fold_1: UA") == 1, (
        "only rank 0 prints results"
    )
    _check_ddp_run(project, runs[0], [1])


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_the_console_script_over_all_folds(project):
    script = Path(sys.executable).with_name("emorec")
    if not script.is_file():
        pytest.skip("the emorec console script is not installed beside this python")
    run(
        [
            script,
            "train",
            project / "recipe.yaml",
            "--devices",
            "2",
            "--accelerator",
            "cpu",
            "--folds",
            "all",
            "--quiet",
            "--run-dir",
            project / "runs-script",
        ],
        project,
    )
    runs = list((project / "runs-script").iterdir())
    assert len(runs) == 1
    _check_ddp_run(project, runs[0], [1, 2, 3])
    assert json.loads((runs[0] / "summary.json").read_text())["n_folds"] == 3
    assert json.loads((runs[0] / "run.json").read_text())["status"] == "finished"
