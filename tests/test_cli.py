"""The CLI, run as a user runs it: prepare -> extract -> train -> evaluate -> predict."""

import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from cli_process import emorec, python_script
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.data import pad_collate


def tiny_recipe(root: Path, name: str) -> Path:
    """``root/recipe.yaml``: a seconds-long attn_crnn recipe over ``root/manifest.csv``, runs under
    ``root/runs``."""
    config = {
        "base": str(Path(__file__).resolve().parents[1] / "configs" / "base.yaml"),
        "data": {
            "manifest": str(root / "manifest.csv"),
            "cache": str(root / "cache"),
            "features": {"name": "logmel", "n_mels": 16},
        },
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "model": {
            "name": "attn_crnn",
            "channels": [4],
            "time_pool": [2],
            "freq_pool": [2],
            "gru_hidden": 8,
            "attention_dim": 8,
            "dense": 8,
        },
        "trainer": {"epochs": 2, "batch_size": 8},
        "run": {"dir": str(root / "runs"), "name": name, "bootstrap": 50},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(config))
    return root / "recipe.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus = generate_synthetic_corpus(
        root / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    # A broken file inside the corpus: listed and skipped, never fatal.
    (corpus / "speaker_01" / "synth-01-happy-99.wav").write_bytes(b"RIFF\x00\x00garbage")
    emorec("prepare", "synthetic", corpus, "--out", root / "manifest.csv", cwd=root)
    proc = emorec(
        "train",
        tiny_recipe(root, "t"),
        "--folds",
        "all",
        "--quiet",
        "--mixup",
        "0.2",
        "--noise",
        "0.01",
        cwd=root,
    )
    run_dir = next((root / "runs").glob("t-*"))
    return root, run_dir, proc


def test_prepare_lists_the_broken_file(trained):
    root, _, _ = trained
    skipped = list(csv.DictReader(open(root / "manifest.skipped.csv")))
    run_skipped = list(csv.DictReader(open(next((root / "runs").glob("t-*")) / "skipped.csv")))
    assert [Path(r["path"]).name for r in run_skipped] == ["synth-01-happy-99.wav"]
    assert [Path(r["path"]).name for r in skipped] == ["synth-01-happy-99.wav"]
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    assert len(rows) == 6 * 3 * 3


def test_train_writes_a_complete_run_directory(trained):
    _, run_dir, proc = trained
    assert "cross-validation over 3 folds" in proc.stdout
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["trainer"]["epochs"] == 2 and cfg["augment"]["mixup"] == 0.2
    for fold in (1, 2, 3):
        fold_dir = run_dir / f"fold_{fold}"
        for name in (
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
            "metrics.csv",
            "history.npz",
            "model.safetensors",
            "model.json",
            "report/report.json",
            "report/report.md",
            "report/confusion_matrix.png",
            "report/roc_curves.png",
            "report/history.png",
        ):
            assert (fold_dir / name).is_file(), name
        assert list((fold_dir / "tensorboard").rglob("events.out.tfevents*"))
        report = json.loads((fold_dir / "report" / "report.json").read_text())
        splits = json.loads((run_dir / "splits.json").read_text())["splits"]
        assert report["n"] == len(splits[fold - 1]["test"])
        assert set(splits[fold - 1]["test_speakers"]).isdisjoint(splits[fold - 1]["val_speakers"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_folds"] == 3
    assert np.isclose(
        summary["mean"]["ua"],
        np.mean(
            [
                json.loads((run_dir / f"fold_{k}/report/report.json").read_text())["ua"]
                for k in (1, 2, 3)
            ]
        ),
    )


def test_each_fold_fits_a_temperature_on_validation_and_reports_calibration(trained):
    """model.json stores the temperature fitted on the fold's validation clips, prediction applies
    it, and the report gives the test ECE before and after it with a reliability diagram."""
    from emorec.evaluation.calibration import softmax
    from emorec.inference.predictor import Predictor

    _, run_dir, _ = trained
    fold = run_dir / "fold_1"
    calibration = json.loads((fold / "model.json").read_text())["calibration"]
    assert calibration["fitted_on"] == "validation clips" and calibration["val_clips"] > 0
    assert (
        0.05 <= calibration["temperature"] <= 20
        and calibration["val_ece_after"] <= calibration["val_ece_before"] + 1e-9
    )
    report = json.loads((fold / "report" / "report.json").read_text())
    assert report["calibration"]["temperature"] == pytest.approx(calibration["temperature"])
    assert {"ece_before", "ece_after"} <= set(report["calibration"]) and (
        fold / "report" / "reliability.png"
    ).is_file()
    assert "## Calibration" in (fold / "report" / "report.md").read_text()
    predictor = Predictor.load(fold)
    item = {"audio": torch.randn(40, predictor.meta["audio_dim"]), "label": -1, "index": 0}
    with torch.no_grad():
        logits = predictor.model(pad_collate([item])).numpy()
    np.testing.assert_allclose(
        predictor.predict_items([item]), softmax(logits / calibration["temperature"]), atol=1e-5
    )


def test_evaluate_recomputes_the_same_numbers(trained):
    root, run_dir, _ = trained
    before = json.loads((run_dir / "fold_2" / "report" / "report.json").read_text())
    emorec("evaluate", run_dir, "--quiet", cwd=root)
    after = json.loads((run_dir / "fold_2" / "report" / "report.json").read_text())
    assert after["ua"] == before["ua"] and after["confusion_matrix"] == before["confusion_matrix"]


def test_predict_prints_and_writes_probabilities(trained, tmp_path):
    root, run_dir, _ = trained
    clips = sorted((root / "corpus").rglob("synth-0*-sad-0*.wav"))[:2]
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    proc = emorec(
        "predict", run_dir / "fold_1", *clips, bad, "--out", tmp_path / "pred.csv", cwd=root
    )
    assert "empty.wav" in proc.stderr and "zero-length" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert len(rows) == 2
    probs = np.array([[float(r[c]) for c in ("happy", "sad", "angry")] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (
        json.loads((tmp_path / "pred.json").read_text())["skipped"][0]["reason"]
        == "zero-length file"
    )


def test_predict_with_an_ensemble_averages_the_models(trained, tmp_path):
    root, run_dir, _ = trained
    clips = sorted((root / "corpus").rglob("synth-0*-angry-0*.wav"))[:3]
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")

    def probs(*models):
        first, *others = models
        extra = [a for m in others for a in ("--ensemble-with", m)]
        out = tmp_path / f"pred{len(models)}.csv"
        proc = emorec("predict", first, *clips, bad, "--out", out, *extra, cwd=root)
        assert "empty.wav" in proc.stderr
        rows = list(csv.DictReader(open(out)))
        assert [r["path"] for r in rows] == [str(c) for c in clips]
        return np.array([[float(r[c]) for c in ("happy", "sad", "angry")] for r in rows])

    single = [probs(run_dir / f"fold_{k}") for k in (1, 2)]
    assert np.allclose(
        probs(run_dir / "fold_1", run_dir / "fold_2"), (single[0] + single[1]) / 2, atol=1e-5
    )


def test_the_python_api_takes_an_ensemble_as_its_backend(trained):
    """``Recognizer`` over an ``EnsemblePredictor``: the members' mean, through the same path as one
    model."""
    import emorec
    from emorec.inference.api import Recognizer
    from emorec.inference.predictor import EnsemblePredictor

    root, run_dir, _ = trained
    clips = sorted((root / "corpus").rglob("synth-0*-angry-0*.wav"))[:3]
    folds = [run_dir / f"fold_{k}" for k in (1, 2)]
    ensemble = Recognizer(EnsemblePredictor.load(folds))
    members = [emorec.load(f) for f in folds]
    waves = [ensemble.waveform(c)[0] for c in clips]
    np.testing.assert_allclose(
        ensemble.probabilities(waves),
        np.mean([m.probabilities(waves) for m in members], axis=0),
        atol=1e-6,
    )
    batch = ensemble.predict(clips)
    assert [p.source for p in batch] == [str(c) for c in clips] and not batch.skipped


def test_utterance_normalisation_makes_a_quieter_recording_predict_the_same(trained, tmp_path):
    """``data.normalization: utterance`` removes each clip's mean log-mel: half the amplitude
    (-6 dB, written as float so no rounding enters) gives the same probabilities; the global
    statistics of the fixture's run do not, so the comparison can tell the two apart."""
    root, run_dir, _ = trained
    clips = sorted((root / "corpus").rglob("synth-0*-happy-0*.wav"))[:2]
    quieter = []
    for clip in clips:
        audio, sr = sf.read(clip, dtype="float32")
        quieter.append(tmp_path / f"quiet-{clip.name}")
        sf.write(quieter[-1], 0.5 * audio, sr, subtype="FLOAT")
    emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--set",
        "data.normalization=utterance",
        "--set",
        "run.name=utt",
        "--set",
        "trainer.epochs=1",
        cwd=root,
    )
    utterance_run = next((root / "runs").glob("utt-*"))
    meta = json.loads((utterance_run / "fold_1" / "model.json").read_text())
    assert meta["normalizers"]["audio"]["center"] == "utterance"

    def probs(model, files, name):
        emorec("predict", model, *files, "--out", tmp_path / name, cwd=root)
        return np.array(
            [
                [float(r[c]) for c in ("happy", "sad", "angry")]
                for r in csv.DictReader(open(tmp_path / name))
            ]
        )

    model = utterance_run / "fold_1"
    assert np.allclose(probs(model, clips, "a.csv"), probs(model, quieter, "b.csv"), atol=1e-4)
    glob_model = run_dir / "fold_1"
    assert not np.allclose(
        probs(glob_model, clips, "c.csv"), probs(glob_model, quieter, "d.csv"), atol=1e-4
    )


def test_conditions_training_with_level_normalisation_and_the_robustness_suite(trained, tmp_path):
    """A recipe that simulates recording conditions on its log-mel training clips, with the level
    taken out of each clip: gain leaves its predictions unchanged (robustness drop exactly 0), and
    ``emorec robustness`` scores the fold's test clips under each condition with the class
    shares."""
    root, _, _ = trained
    emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path,
        "--set",
        "data.normalization=level",
        "--set",
        "data.features.deltas=true",
        "--set",
        "model.input_channels=3",
        "--set",
        "augment.band_limit=0.5",
        "--set",
        "augment.additive_noise=0.5",
        "--set",
        "augment.reverb=0.5",
        cwd=root,
    )
    run = next(tmp_path.glob("t-*"))
    norm = json.loads((run / "fold_1" / "model.json").read_text())["normalizers"]["audio"]
    assert norm["center"] == "level" and norm["level_columns"] == 16
    proc = emorec(
        "robustness",
        run,
        "--conditions",
        "gain:-9,noise:10,band:300-3400,opus",
        "--out",
        tmp_path,
        cwd=root,
    )
    result = json.loads((tmp_path / "robustness.json").read_text())
    assert list(result["conditions"]) == ["clean", "gain:-9", "noise:10", "band:300-3400", "opus"]
    assert (
        result["n_clips"] > 0
        and result["folds"] == [1]
        and (tmp_path / "robustness.png").stat().st_size > 0
    )
    gain, clean = result["conditions"]["gain:-9"], result["conditions"]["clean"]
    assert gain["drop_points"] == 0.0 and gain["predicted_share"] == clean["predicted_share"]
    for score in result["conditions"].values():
        assert (
            sum(score["predicted_share"].values()) == pytest.approx(1.0) and 0 <= score["ua"] <= 1
        )
        assert score["top_share"] == max(score["predicted_share"].values())
    assert "most predicted" in proc.stdout
    emorec(
        "robustness", run, "--conditions", "noise:10", "--part", "val", "--out", tmp_path, cwd=root
    )
    val = json.loads((tmp_path / "robustness_val.json").read_text())
    assert val["part"] == "val" and list(val["conditions"]) == ["clean", "noise:10"]
    emorec(
        "robustness",
        run,
        "--conditions",
        "noise:10",
        "--part",
        "val",
        "--out",
        tmp_path / "floor",
        "--feature",
        "trim_db=40",
        "--feature",
        "trim_floor_db=6",
        cwd=root,
    )
    floor = json.loads((tmp_path / "floor" / "robustness_val.json").read_text())
    assert (
        floor["inference_features"] == {"trim_db": 40, "trim_floor_db": 6}
        and floor["n_clips"] == val["n_clips"]
    )
    no_pair = emorec("robustness", run, "--feature", "trim_floor_db", cwd=root, check=False)
    assert no_pair.returncode == 2 and "expected KEY=VALUE" in no_pair.stderr
    bad = emorec("robustness", run, "--conditions", "noise:loud", cwd=root, check=False)
    assert bad.returncode == 2 and "noise:loud" in bad.stderr


def test_delta_planes_train_as_conv_channels_and_predict(trained, tmp_path):
    """``deltas: true`` with ``input_channels: 3``: the frequency augmentations are told the
    feature axis holds 3 planes, the first conv reads 3 channels, and predict rebuilds both."""
    from safetensors.torch import load_file

    root, _, _ = trained
    emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path,
        "--set",
        "data.features.deltas=true",
        "--set",
        "model.input_channels=3",
        "--set",
        "augment.freq_shift=2",
        "--set",
        "augment.spec_freq_masks=1",
        cwd=root,
    )
    fold = next(tmp_path.glob("t-*")) / "fold_1"
    hparams = yaml.load((fold / "hparams.yaml").read_text(), Loader=yaml.FullLoader)
    assert hparams["feature_planes"] == 3 and hparams["audio_dim"] == 3 * 16
    assert load_file(str(fold / "model.safetensors"))["blocks.0.conv.weight"].shape[1] == 3
    clip = sorted((root / "corpus").rglob("*.wav"))[0]
    emorec("predict", fold, clip, "--out", tmp_path / "p.csv", cwd=root)
    row = next(csv.DictReader(open(tmp_path / "p.csv")))
    assert abs(sum(float(row[c]) for c in ("happy", "sad", "angry")) - 1) < 1e-4


@pytest.mark.parametrize(
    "args,needle",
    [
        (["prepare", "klingon", "."], "klingon"),
        (["prepare", "ravdess", "/no/such/dir"], "/no/such/dir"),
        (["evaluate", "/no/such/run"], "/no/such/run"),
        (["predict", "/no/such/run", "x.wav"], "/no/such/run"),
    ],
)
def test_bad_requests_get_a_one_line_error(args, needle, tmp_path):
    proc = emorec(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_unknown_config_key_is_refused(tmp_path):
    (tmp_path / "bad.yaml").write_text("trainer:\n  epohcs: 3\n")
    proc = emorec("train", tmp_path / "bad.yaml", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "epohcs" in proc.stderr


def test_fixed_budget_run_keeps_its_last_epoch(trained, tmp_path):
    """``trainer.checkpoint: last`` trains every epoch (no early stopping), exports the final
    weights, and the cosine schedule is what the learning-rate log shows."""
    from safetensors.torch import load_file

    from emorec.training.checkpoints import load_checkpoint
    from emorec.training.module import CosineWithWarmup

    root, _, _ = trained
    proc = emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--epochs",
        "5",
        "--patience",
        "1",
        "--run-dir",
        tmp_path,
        "--set",
        "trainer.checkpoint=last",
        "--set",
        "optim.schedule=cosine",
        "--set",
        "optim.warmup_epochs=1",
        "--set",
        "augment.freq_shift=2",
        "--set",
        "augment.time_stretch=0.1",
        "--set",
        "augment.spec_time_masks=1",
        cwd=root,
    )
    fold = next(tmp_path.glob("t-*")) / "fold_1"
    # every augmentation the config names reaches the training module
    hparams = yaml.load((fold / "hparams.yaml").read_text(), Loader=yaml.FullLoader)
    assert (
        hparams["freq_shift"] == 2
        and hparams["time_stretch"] == 0.1
        and hparams["spec_augment"]["time_masks"] == 1
    )
    meta = json.loads((fold / "model.json").read_text())
    assert meta["epochs_run"] == 5 and meta["best_epoch"] == 5 and meta["checkpoint"] == "last", (
        proc.stdout
    )
    last = load_checkpoint(fold / "checkpoints" / "last.ckpt")["state_dict"]
    exported = load_file(str(fold / "model.safetensors"))
    for key, value in exported.items():
        np.testing.assert_array_equal(value.numpy(), last[f"model.{key}"].numpy())
    rates = [
        float(r["lr-Adam"]) for r in csv.DictReader(open(fold / "metrics.csv")) if r.get("lr-Adam")
    ]
    expected = [1e-3 * CosineWithWarmup(1, 5)(e) for e in range(5)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


@pytest.mark.parametrize("setting", ["optim.schedule=linear", "trainer.ema_decay=1.5"])
def test_impossible_training_setting_is_refused(setting, trained, tmp_path):
    root, _, _ = trained
    proc = emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--run-dir",
        tmp_path,
        "--set",
        setting,
        cwd=root,
        check=False,
    )
    assert proc.returncode == 2 and setting.split("=")[0] in proc.stderr


def _probs(predictions_csv: Path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.DictReader(open(predictions_csv)))
    cols = [k for k in rows[0] if k.startswith("prob_")]
    return [r["clip_id"] for r in rows], np.array([[float(r[c]) for c in cols] for r in rows])


def test_ensemble_averages_the_members_fold_by_fold(trained, tmp_path):
    root, run_dir, _ = trained
    emorec(
        "train",
        root / "recipe.yaml",
        "--folds",
        "all",
        "--quiet",
        "--run-dir",
        tmp_path / "runs",
        "--set",
        "trainer.seed=7",
        "--set",
        "run.name=seed7",
        cwd=root,
    )
    other = next((tmp_path / "runs").glob("seed7-*"))
    proc = emorec("ensemble", run_dir, other, "--out", tmp_path / "ens", "--quiet", cwd=root)
    assert "mean UA" in proc.stdout
    summary = json.loads((tmp_path / "ens" / "summary.json").read_text())
    assert summary["n_folds"] == 3 and summary["extra"]["part"] == "test"
    for fold in (1, 2, 3):
        ids, ensemble = _probs(tmp_path / "ens" / f"fold_{fold}" / "report" / "predictions.csv")
        members = [
            _probs(d / f"fold_{fold}" / "report" / "predictions.csv") for d in (run_dir, other)
        ]
        for member_ids, _ in members:
            assert member_ids == ids
        assert np.allclose(ensemble, (members[0][1] + members[1][1]) / 2, atol=1e-5)
        report = json.loads(
            (tmp_path / "ens" / f"fold_{fold}" / "report" / "report.json").read_text()
        )
        own = [
            json.loads((d / f"fold_{fold}" / "report" / "report.json").read_text())["ua"]
            for d in (run_dir, other)
        ]
        assert [m["ua"] for m in report["extra"]["members"]] == pytest.approx(own)

    emorec(
        "ensemble",
        run_dir,
        other,
        "--part",
        "val",
        "--out",
        tmp_path / "ens_val",
        "--quiet",
        cwd=root,
    )
    splits = json.loads((run_dir / "splits.json").read_text())["splits"]
    for fold in (1, 2, 3):
        ids, _ = _probs(tmp_path / "ens_val" / f"fold_{fold}" / "report" / "predictions.csv")
        assert sorted(ids) == sorted(splits[fold - 1]["val"])
        assert set(ids).isdisjoint(splits[fold - 1]["test"])


def test_ensemble_refuses_members_that_cannot_be_averaged(trained, tmp_path):
    root, run_dir, _ = trained
    proc = emorec("ensemble", run_dir, "--quiet", cwd=root, check=False)
    assert proc.returncode != 0 and "fewer than 2 members" in proc.stderr
    proc = emorec("ensemble", run_dir, run_dir, "--quiet", cwd=root, check=False)
    assert proc.returncode != 0 and "given twice" in proc.stderr
    # A run whose fold 1 tested other clips: averaging
    # would mix in a model that trained on this test fold.
    other = tmp_path / "othersplit"
    shutil.copytree(run_dir, other)
    splits = json.loads((other / "splits.json").read_text())
    fold1 = splits["splits"][0]
    fold1["test"][0], fold1["train"][0] = fold1["train"][0], fold1["test"][0]
    (other / "splits.json").write_text(json.dumps(splits))
    proc = emorec(
        "ensemble", run_dir, other, "--quiet", "--out", tmp_path / "e", cwd=root, check=False
    )
    assert proc.returncode != 0 and "different split" in proc.stderr and "fold_1" in proc.stderr


def test_committed_benchmark_predictions_reproduce_the_evaluation(trained, tmp_path, monkeypatch):
    """``benchmarks/predictions.py`` exports what ``emorec evaluate`` scored: the test UA recomputed
    from the exported file equals each fold's report, validation rows are the validation actors'
    clips, and averaging refuses members that predict different clips."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from predictions import average_members, export_predictions, load_predictions

    from emorec.evaluation.metrics import classification_metrics
    from emorec.corpora.splits import load_splits

    _, run_dir, _ = trained
    export_predictions([run_dir], tmp_path / "p.csv.gz")
    parts = load_predictions(tmp_path / "p.csv.gz")
    splits = {
        fold: split for fold, split in enumerate(load_splits(run_dir / "splits.json"), start=1)
    }
    assert sorted(parts) == [(k, p) for k in (1, 2, 3) for p in ("test", "val")]
    for fold in (1, 2, 3):
        report = json.loads((run_dir / f"fold_{fold}" / "report" / "report.json").read_text())
        test = parts[(fold, "test")]
        assert classification_metrics(test.labels, test.probs, test.class_names, bootstrap=0)[
            "ua"
        ] == pytest.approx(report["ua"], abs=1e-6)
        assert set(parts[(fold, "val")].clip_ids) == set(splits[fold].val)
    doubled = average_members([parts, parts], ["a", "b"])
    assert np.allclose(doubled[(1, "test")][0].probs, parts[(1, "test")].probs)
    fewer = dict(parts)
    first = parts[(1, "test")]
    fewer[(1, "test")] = type(first)(
        first.clip_ids[1:], first.labels[1:], first.probs[1:], first.class_names
    )
    with pytest.raises(SystemExit, match="clips or classes differ"):
        average_members([parts, fewer], ["a", "b"])


def test_ensemble_benchmark_val_only_reads_no_test_row(trained, tmp_path, monkeypatch):
    """``ravdess_ensemble.py --val-only`` scores the average on validation actors alone: members
    whose test rows could not even be averaged still give the validation figure, which matches the
    one recomputed from the files, and nothing is written."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    from predictions import export_predictions, load_predictions

    from emorec.evaluation.metrics import classification_metrics

    _, run_dir, _ = trained
    export_predictions([run_dir], tmp_path / "a.csv.gz")
    with gzip.open(tmp_path / "a.csv.gz", "rt") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    first_test = next(i for i, row in enumerate(body) if row[1] == "test")
    broken = [
        row for i, row in enumerate(body) if i != first_test
    ]  # one test clip fewer: cannot be averaged
    with gzip.open(tmp_path / "b.csv.gz", "wt", newline="") as f:
        csv.writer(f).writerows([header, *broken])
    members = []
    for name in ("a", "b"):
        result = {
            "speaker_norm": False,
            "folds": [],
            "predictions": str(tmp_path / f"{name}.csv.gz"),
        }
        members.append(tmp_path / f"{name}.json")
        members[-1].write_text(json.dumps(result))
    script = [benchmarks / "ravdess_ensemble.py", *members, "--out", tmp_path / "e.json"]
    full = python_script(*script, cwd=benchmarks, check=False)
    assert full.returncode != 0 and "differ" in full.stderr
    proc = python_script(*script, "--val-only", cwd=benchmarks)
    assert not (tmp_path / "e.json").exists()
    parts = load_predictions(tmp_path / "a.csv.gz")
    expected = np.mean(
        [
            classification_metrics(p.labels, p.probs, p.class_names, bootstrap=0)["ua"]
            for (fold, part), p in parts.items()
            if part == "val"
        ]
    )
    assert f"mean validation UA {expected:.3f}" in proc.stdout
    assert "test" not in proc.stdout.lower()
    # Members that agree are averaged and scored on the test
    # actors too: a member with itself scores as it does alone.
    report = json.loads(members[0].read_text()) | {
        "corpus": "synthetic",
        "features": "logmel",
        "model": "attn_crnn",
        "protocol": "speaker k-fold",
        "mean_ua": 0.0,
        "command": "test",
        "mean_train_seconds_per_fold": 1.0,
        "folds": [{"fold": f, "test_speakers": []} for f in (1, 2, 3)],
    }
    members[1].write_text(json.dumps(report | {"predictions": str(tmp_path / "a.csv.gz")}))
    members[0].write_text(json.dumps(report))
    python_script(*script, cwd=benchmarks)
    ensemble = json.loads((tmp_path / "e.json").read_text())
    for fold in ensemble["folds"]:
        assert fold["ua"] == pytest.approx(fold["member_ua"][0]) and fold[
            "val_ua"
        ] == pytest.approx(fold["member_val_ua"][1])
    assert ensemble["mean_val_ua"] == pytest.approx(expected)


def test_models_table_reads_the_headline_ensemble_with_its_members_training_time(
    tmp_path, monkeypatch
):
    """The model-family table's headline row is the ensemble's own result, its recipe named from
    the members' commands and each fold's training seconds the sum over its members (fold matched
    by number, not position)."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    import models_ravdess_6fold

    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(models_ravdess_6fold, "RESULTS", results)
    members = []
    for seed, seconds in ((1, (10.0, 20.0)), (2, (1.5, 2.5))):
        folds = [{"fold": f, "train_seconds": s} for f, s in zip((2, 1), seconds[::-1])]
        (results / f"m{seed}.json").write_text(json.dumps({"folds": folds}))
        members.append(
            {
                "results": f"results/m{seed}.json",
                "model": "attn_crnn_v2",
                "mean_ua": 0.5,
                "command": "python ravdess_6fold.py --config ../configs/x.yaml "
                f"--set trainer.seed={seed}",
            }
        )
    ensemble = results / "e.json"
    ensemble.write_text(
        json.dumps(
            {
                "model": "CPU ensemble of 2",
                "mean_ua": 0.6,
                "members": members,
                "folds": [{"fold": 1, "ua": 0.6}, {"fold": 2, "ua": 0.6}],
            }
        )
    )
    entry = models_ravdess_6fold.headline_entry(ensemble)
    assert entry["model"] == models_ravdess_6fold.HEADLINE_KEY and entry["mean_ua"] == 0.6
    assert entry["train_seconds_per_fold"] == [11.5, 22.5]
    assert entry["recipe"] == "2 runs of configs/x.yaml averaged (e.json)"


def test_batch_norm_recalibration_recomputes_statistics_from_the_training_clips(trained):
    """Precise BN: every BatchNorm's statistics become an average over the fold's training clips,
    whatever they were before (the exported ones, or garbage), and the model comes back in eval
    mode."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from emorec.evaluation.run_eval import (
        clips_dataset,
        experiment_for_run,
        fold_predictions,
        fold_split,
    )
    from emorec.inference.predictor import Predictor
    from emorec.evaluation.run_eval import recalibrated_predictor
    from emorec.training.batch_norm import recalibrate_batch_norm

    _, run_dir, _ = trained
    fold_dir = run_dir / "fold_1"
    experiment = experiment_for_run(run_dir, progress=False)
    split = fold_split(fold_dir, experiment)
    exported = Predictor.load(fold_dir)
    recalibrated = recalibrated_predictor(fold_dir, experiment, split)
    garbage = Predictor.load(fold_dir)
    norms = [m for m in garbage.model.modules() if isinstance(m, _BatchNorm)]
    assert norms, "the tiny recipe's model has BatchNorm layers"
    for norm in norms:
        norm.running_mean.fill_(100.0)
        norm.running_var.fill_(1e4)
    train = clips_dataset(experiment, split.train, garbage)
    assert len(train) == len(split.train) > 0
    recalibrate_batch_norm(garbage.model, train)
    assert not garbage.model.training
    batches = -(-len(train) // 32)
    for name, tensor in recalibrated.model.state_dict().items():
        np.testing.assert_allclose(
            garbage.model.state_dict()[name].float().numpy(),
            tensor.float().numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )
        if name.endswith("num_batches_tracked"):
            assert int(tensor) == batches, name  # each norm saw every training batch once
    changed = [
        n
        for n, t in recalibrated.model.state_dict().items()
        if n.endswith("running_mean")
        and not np.array_equal(t.numpy(), exported.model.state_dict()[n].numpy())
    ]
    assert changed, "the statistics were recomputed, not kept"
    _, probs, _ = fold_predictions(fold_dir, experiment, split, part="val", predictor=recalibrated)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_bn_recalibration_benchmark_scores_validation_first_and_writes_a_member(
    trained, tmp_path, monkeypatch
):
    """``bn_recalibration.py --val-only`` predicts no test clip and writes nothing; the full mode
    writes a result whose validation figures are the ones --val-only printed and whose test
    figures are those of the per-clip probabilities it wrote, so it can join an ensemble."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    from predictions import load_predictions

    from emorec.evaluation.metrics import classification_metrics

    _, run_dir, _ = trained
    source = tmp_path / "run.json"
    source.write_text(
        json.dumps(
            {
                "corpus": "synthetic",
                "features": "logmel",
                "model": "attn_crnn",
                "run_dir": [str(run_dir)],
                "command": "train",
                "folds": [
                    {"fold": f, "val_best": 0.5, "epochs": 2, "train_seconds": 1.0}
                    for f in (1, 2, 3)
                ],
            }
        )
    )
    script = [benchmarks / "bn_recalibration.py", source]
    val_only = python_script(*script, "--val-only", cwd=benchmarks)
    assert "test" not in val_only.stdout.lower() and not list(tmp_path.glob("*.gz"))
    out, probs = tmp_path / "bn.json", tmp_path / "bn.csv.gz"
    python_script(*script, "--out", out, "--predictions", probs, cwd=benchmarks)
    result = json.loads(out.read_text())
    parts = load_predictions(probs)
    for fold in result["folds"]:
        number = fold["fold"]
        assert f"fold {number}: validation UA {fold['val_best']:.3f}" in val_only.stdout
        test = parts[(number, "test")]
        assert (
            fold["ua"]
            == classification_metrics(test.labels, test.probs, test.class_names, bootstrap=0)["ua"]
        )
        assert fold["epochs"] == 2  # the source's fields travel along
    assert result["recalibrated_from"] == str(source) and result["predictions"] == str(probs)
    assert "BatchNorm recalibrated" in result["model"]


def test_training_can_recalibrate_batch_norm_of_the_kept_weights(trained, tmp_path):
    """``trainer.recalibrate_bn``: the exported weights carry statistics recomputed on the fold's
    training clips (recomputing them again changes nothing), the checkpoint keeps the trained ones,
    and the validation score recorded for the fold is the exported model's."""
    from emorec.evaluation.metrics import classification_metrics
    from emorec.evaluation.run_eval import (
        clips_dataset,
        experiment_for_run,
        fold_predictions,
        fold_split,
    )
    from emorec.inference.predictor import Predictor
    from emorec.training.batch_norm import recalibrate_batch_norm
    from emorec.training.checkpoints import load_checkpoint

    root, _, _ = trained
    emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--run-dir",
        tmp_path,
        "--set",
        "trainer.recalibrate_bn=true",
        "--set",
        "trainer.checkpoint=last",
        cwd=root,
    )
    run_dir = next(tmp_path.glob("t-*"))
    fold_dir = run_dir / "fold_1"
    meta = json.loads((fold_dir / "model.json").read_text())
    assert meta["bn_recalibrated"] is True
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    experiment = experiment_for_run(run_dir, progress=False)
    split = fold_split(fold_dir, experiment)
    exported = Predictor.load(fold_dir)
    again = Predictor.load(fold_dir)
    recalibrate_batch_norm(
        again.model,
        clips_dataset(experiment, split.train, again),
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
    )
    stats = [k for k in exported.model.state_dict() if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        np.testing.assert_allclose(
            again.model.state_dict()[key].numpy(),
            exported.model.state_dict()[key].numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=key,
        )
    trained_stats = load_checkpoint(fold_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert any(
        not np.allclose(trained_stats[f"model.{k}"].numpy(), exported.model.state_dict()[k].numpy())
        for k in stats
    )
    _, probs, _ = fold_predictions(fold_dir, experiment, split, part="val")
    dataset = clips_dataset(experiment, split.val, exported)
    ua = classification_metrics(dataset.labels(), probs, experiment.class_names, bootstrap=0)["ua"]
    assert meta["best_score"] == pytest.approx(ua, abs=1e-6)


def test_fold_datasets_read_each_training_clip_once_from_the_pack(trained, monkeypatch):
    """Normalisation statistics read every training clip once, and nothing else is read before
    training starts: the datasets hold where each clip lies in the pack, not its frames."""
    from emorec.training.experiment import prepare_experiment
    from emorec.features.packed import PackedStore
    from emorec.training.config import load_config
    from emorec.training.fold import fold_datasets

    root, _, _ = trained
    experiment = prepare_experiment(load_config(root / "recipe.yaml"), progress=False)
    assert isinstance(experiment.stores["audio"], PackedStore)
    reads: list[str] = []
    real_get = PackedStore.get
    monkeypatch.setattr(
        PackedStore, "get", lambda self, clip: reads.append(clip.clip_id) or real_get(self, clip)
    )
    train_set, val_set, _ = fold_datasets(experiment, experiment.splits[0])
    assert sorted(reads) == sorted(c.clip_id for c in train_set.clips) and len(set(reads)) == len(
        reads
    )
    assert not set(reads) & {c.clip_id for c in val_set.clips}


def two_corpus_manifest(root: Path, out: Path) -> list[dict]:
    """``out``: the trained fixture's manifest with its last speakers made a second corpus, "other",
    without "angry" (as CREMA-D has no calm); returns the fixture's rows."""
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    other = {r["speaker"] for r in rows[-12:]}
    kept = []
    for row in rows:
        if row["speaker"] in other:
            if row["emotion"] == "angry":
                continue
            row = {
                **row,
                "corpus": "other",
                "clip_id": "other/" + row["clip_id"],
                "speaker": "other/" + row["speaker"],
            }
        kept.append(row)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return rows


def test_corpus_repeats_draw_a_corpus_several_times_per_epoch_with_statistics_from_each_clip_once(
    trained, tmp_path
):
    """``data.corpus_repeats``: each training clip of the named corpus is listed N times in the
    training set (so a smaller corpus keeps its passes in a merged manifest); validation clips and
    the normalisation statistics see every clip once; a corpus the training side lacks is
    refused."""
    from emorec.errors import ConfigError
    from emorec.training.experiment import prepare_experiment
    from emorec.training.config import load_config
    from emorec.training.fold import fold_datasets

    root, _, _ = trained
    rows = two_corpus_manifest(root, tmp_path / "two.csv")
    base = [f"data.manifest={tmp_path / 'two.csv'}", "split.train_only_corpora=[other]"]
    plain = prepare_experiment(load_config(root / "recipe.yaml", base), progress=False)
    once, val_once, norms_once = fold_datasets(plain, plain.splits[0])
    config = load_config(root / "recipe.yaml", [*base, "data.corpus_repeats={other: 3}"])
    assert config.data.corpus_repeats == {"other": 3}
    thrice, val_thrice, norms_thrice = fold_datasets(
        prepare_experiment(config, progress=False), plain.splits[0]
    )
    count = lambda dataset, corpus: sum(c.corpus == corpus for c in dataset.clips)  # noqa: E731
    assert count(thrice, "other") == 3 * count(once, "other") > 0
    assert count(thrice, rows[0]["corpus"]) == count(once, rows[0]["corpus"]) > 0
    first = [i for i, c in enumerate(thrice.clips) if c.clip_id == thrice.clips[-1].clip_id]
    assert len(first) == 3
    assert all(
        np.array_equal(thrice.features["audio"][i], thrice.features["audio"][first[0]])
        for i in first
    )
    assert [c.clip_id for c in val_thrice.clips] == [c.clip_id for c in val_once.clips]
    np.testing.assert_array_equal(norms_thrice["audio"].mean, norms_once["audio"].mean)
    missing = load_config(root / "recipe.yaml", [*base, "data.corpus_repeats={ravdess: 2}"])
    with pytest.raises(ConfigError, match="corpus_repeats.*'ravdess'"):
        fold_datasets(prepare_experiment(missing, progress=False), plain.splits[0])
    with pytest.raises(ConfigError, match="corpus_repeats.other: expected an integer"):
        load_config(root / "recipe.yaml", [*base, "data.corpus_repeats={other: many}"])


def test_a_corpus_without_a_class_trains_beside_one_with_it_over_its_own_classes(trained, tmp_path):
    """Two corpora with different label sets in one manifest (the second has no "angry", as CREMA-D
    has no calm): with ``loss.corpus_classes`` (and the second corpus drawn twice) the run trains,
    and its training clips carry their corpus's classes."""
    from emorec.training.experiment import prepare_experiment
    from emorec.training.config import load_config
    from emorec.training.fold import fold_datasets

    root, _, _ = trained
    rows = two_corpus_manifest(root, tmp_path / "two.csv")
    overrides = [
        f"data.manifest={tmp_path / 'two.csv'}",
        "split.train_only_corpora=[other]",
        "loss.corpus_classes=true",
        "data.corpus_repeats={other: 2}",
    ]
    emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--epochs",
        "1",
        "--folds",
        "1",
        "--run-dir",
        tmp_path,
        *[arg for o in overrides for arg in ("--set", o)],
        cwd=root,
    )
    assert (next(tmp_path.glob("t-*")) / "fold_1" / "model.safetensors").is_file()
    config = load_config(root / "recipe.yaml", overrides)
    experiment = prepare_experiment(config, progress=False)
    train_set, val_set, _ = fold_datasets(experiment, experiment.splits[0])
    angry = experiment.class_names.index("angry")
    has_angry = {
        c.corpus: bool(train_set[i]["classes"][angry]) for i, c in enumerate(train_set.clips)
    }
    assert has_angry == {rows[0]["corpus"]: True, "other": False}
    assert "classes" not in val_set[0]  # validation scores every class
