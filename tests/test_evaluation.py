"""Evaluation package: metrics against hand-computed values, bootstrap CIs, plots, reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from emorec.evaluation import classification_metrics, summarise_folds
from emorec.evaluation.history_plot import plot_history, read_metrics_csv
from emorec.evaluation.plots import plot_confusion_matrix, plot_fold_summary, plot_roc_curves
from emorec.evaluation.report import write_cv_summary, write_report
from emorec.evaluation.report_markdown import SPEAKER_DEPENDENT_WARNING

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def probs_for(pred: np.ndarray, n_classes: int, confidence: float = 0.9) -> np.ndarray:
    """Probabilities whose arg-max is ``pred``."""
    pred = np.asarray(pred)
    p = np.full((pred.size, n_classes), (1.0 - confidence) / (n_classes - 1))
    p[np.arange(pred.size), pred] = confidence
    return p


def noisy_predictions(
    n: int, n_classes: int, accuracy: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    wrong = rng.random(n) > accuracy
    pred = np.where(wrong, (y + rng.integers(1, n_classes, n)) % n_classes, y)
    scores = rng.random((n, n_classes)) * 0.5
    scores[np.arange(n), pred] += 1.0
    return y, scores


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        return
    with Image.open(path) as image:
        image.verify()
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temporary file left behind"


# --------------------------------------------------------------------------- metrics
def test_perfect_predictions():
    y = np.array([0, 1, 2, 3] * 10)
    m = classification_metrics(y, probs_for(y, 4), ["a", "b", "c", "d"], bootstrap=200)
    assert m["wa"] == m["ua"] == m["macro_f1"] == 1.0
    assert m["macro_auc"] == 1.0
    for key in ("wa", "ua", "macro_f1"):
        assert m["ci"][key] == [1.0, 1.0]
    assert m["confusion_matrix"] == (np.eye(4, dtype=int) * 10).tolist()
    json.dumps(m)  # JSON-able


def test_imbalanced_hand_computed():
    # 6 x a (all right), 3 x b (1 right, 2 -> a), 1 x c (-> a)
    y = np.array([0] * 6 + [1] * 3 + [2])
    pred = np.array([0] * 6 + [1, 0, 0] + [0])
    m = classification_metrics(y, probs_for(pred, 3), ["a", "b", "c"], bootstrap=0)
    assert m["confusion_matrix"] == [[6, 0, 0], [2, 1, 0], [1, 0, 0]]
    assert m["wa"] == pytest.approx(0.7)
    assert m["ua"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # 0.444..., != wa
    # F1: a = 2*6/(6+9) = 0.8, b = 2*1/(3+1) = 0.5, c = 0
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    pc = m["per_class"]
    assert pc["a"]["precision"] == pytest.approx(6 / 9)
    assert pc["b"]["precision"] == pytest.approx(1.0)
    assert pc["c"]["precision"] == 0.0 and pc["c"]["recall"] == 0.0 and pc["c"]["f1"] == 0.0
    assert [pc[n]["support"] for n in "abc"] == [6, 3, 1]
    assert m["ci"] == {"wa": None, "ua": None, "macro_f1": None}
    # agrees with scikit-learn
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_is_left_out_of_ua_and_has_no_auc():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    pred = np.array([0, 3, 1, 1, 2, 0, 2, 0])  # one clip predicted as the absent class 3
    m = classification_metrics(y, probs_for(pred, 4), ["a", "b", "c", "d"], bootstrap=100)
    assert m["ua_classes"] == ["a", "b", "c"]
    assert m["ua"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y, pred))
    labels = [0, 1, 2]
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro"))
    d = m["per_class"]["d"]
    assert d["support"] == 0 and d["recall"] is None and d["f1"] is None
    assert d["precision"] == 0.0  # predicted once, wrongly
    assert d["auc"] is None and m["roc"]["d"] == {"fpr": [], "tpr": [], "auc": None}
    assert m["macro_auc"] == pytest.approx(np.mean([m["roc"][n]["auc"] for n in "abc"]))
    json.dumps(m)


def test_class_neither_present_nor_predicted():
    y = np.array([0, 1, 0, 1])
    m = classification_metrics(y, probs_for(y, 3), ["a", "b", "c"], bootstrap=50)
    assert m["per_class"]["c"]["precision"] is None
    assert m["ua"] == 1.0 and m["macro_f1"] == 1.0


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data():
    widths = []
    for n in (100, 4000):
        y, scores = noisy_predictions(n, 6, accuracy=0.6, seed=n)
        m = classification_metrics(y, scores, [f"c{i}" for i in range(6)], bootstrap=500, seed=1)
        for key in ("wa", "ua", "macro_f1"):
            low, high = m["ci"][key]
            assert low <= m[key] <= high, (key, low, m[key], high)
        widths.append(m["ci"]["ua"][1] - m["ci"]["ua"][0])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(40) of the width


def test_bootstrap_is_seeded_and_fast():
    y, scores = noisy_predictions(1440, 8, accuracy=0.55, seed=3)
    names = [f"c{i}" for i in range(8)]
    # CPU time, not wall time: other processes on a busy machine must not fail the test.
    start = time.process_time()
    a = classification_metrics(y, scores, names, bootstrap=1000, seed=7)
    elapsed = time.process_time() - start
    b = classification_metrics(y, scores, names, bootstrap=1000, seed=7)
    assert a["ci"] == b["ci"]
    assert elapsed < 2.0, f"1000 bootstrap resamples of 1440 clips took {elapsed:.2f}s"


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 2]), np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([[np.nan, 1], [0, 1]]), ["a", "b"])


def test_summarise_folds_mean_and_sample_std():
    folds = [
        {"n": 10, "wa": 0.5, "ua": 0.4, "macro_f1": 0.3, "macro_auc": 0.7},
        {"n": 20, "wa": 0.7, "ua": 0.6, "macro_f1": 0.5, "macro_auc": None},
        {"n": 30, "wa": 0.6, "ua": 0.8, "macro_f1": 0.4, "macro_auc": 0.9},
    ]
    s = summarise_folds(folds)
    assert s["n_folds"] == 3 and s["n_clips"] == 60
    assert s["mean"]["ua"] == pytest.approx(0.6)
    assert s["std"]["ua"] == pytest.approx(0.2)  # sample std, ddof=1
    assert s["std"]["wa"] == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    assert s["mean"]["macro_auc"] == pytest.approx(0.8)  # over the 2 folds that have it
    assert s["min"]["ua"] == 0.4 and s["max"]["ua"] == 0.8
    assert [r["ua"] for r in s["folds"]] == [0.4, 0.6, 0.8]
    assert [r["fold"] for r in s["folds"]] == ["1", "2", "3"]
    single = summarise_folds(folds[:1])
    assert single["mean"]["ua"] == 0.4 and single["std"]["ua"] is None


# --------------------------------------------------------------------------- plots
LIGHTNING_CSV = """epoch,lr-Adam,step,train/acc,train/loss,val/acc,val/loss,val/ua
,0.001,0,,,,,
0,,9,0.30,1.90,,,
0,,9,,,0.35,1.70,0.33
1,,19,0.45,1.40,,,
1,,19,,,0.48,1.35,0.46
,0.0005,20,,,,,
2,,29,0.60,1.10,,,
2,,29,,,0.55,1.20,0.52
"""


def test_read_metrics_csv_merges_an_older_runs_raw_rows_numbering_epochs_from_1(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(LIGHTNING_CSV)
    h = read_metrics_csv(path)
    assert h["epoch"] == [1.0, 2.0, 3.0]
    assert h["train/loss"] == pytest.approx([1.9, 1.4, 1.1])
    assert h["val/ua"] == pytest.approx([0.33, 0.46, 0.52])
    # the learning-rate rows are logged at the start of an epoch (steps 0 and 20: the first and
    # the third epoch), not in the epoch of the row above them
    assert h["lr-Adam"][0] == pytest.approx(0.001) and h["lr-Adam"][2] == pytest.approx(0.0005)
    assert np.isnan(h["lr-Adam"][1])
    assert "step" not in h


def test_read_metrics_csv_reads_one_row_per_epoch_as_written(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,train/loss,val/loss,val/ua,lr-Adam\n1,1.9,1.7,0.33,0.001\n2,1.4,1.35,0.46,0.0005\n"
    )
    h = read_metrics_csv(path)
    assert h["epoch"] == [1.0, 2.0]
    assert h["val/ua"] == pytest.approx([0.33, 0.46]) and h["lr-Adam"] == pytest.approx(
        [0.001, 0.0005]
    )


def test_history_plot_marks_the_kept_epoch_and_the_kept_models_own_score(tmp_path, monkeypatch):
    from emorec.evaluation import history_plot

    figures = []
    monkeypatch.setattr(
        history_plot, "save_figure", lambda fig, path: figures.append(fig) or Path(path)
    )
    history = {"epoch": [1, 2, 3], "train/loss": [1.0, 0.8, 0.7], "val/ua": [0.25, 0.3, 0.28]}
    history_plot.plot_history(
        history,
        tmp_path / "h.png",
        kept={"epoch": 3, "monitor": "val/ua", "score": 0.477, "label": "kept: last epoch (3)"},
    )
    ax_loss, ax_score = figures[0].axes
    for ax in (ax_loss, ax_score):  # a vertical line at epoch 3 in both panels
        assert any(list(line.get_xdata()) == [3.0, 3.0] for line in ax.get_lines())
    star = [line for line in ax_score.get_lines() if line.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_ydata()) == [0.477]
    labels = [t.get_text() for t in ax_score.get_legend().get_texts()]
    assert "kept: last epoch (3)" in labels and "kept model: val/ua 0.477" in labels
    import matplotlib.pyplot as plt

    plt.close(figures[0])


def test_plots_are_valid_pngs(tmp_path):
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    path = tmp_path / "metrics.csv"
    path.write_text(LIGHTNING_CSV)
    assert_png(plot_history(path, tmp_path / "history.png"))
    assert_png(
        plot_history(
            {"train/loss": [2.0, 1.0, np.nan], "val/ua": [0.2, 0.4, 0.5]},
            tmp_path / "history_dict.png",
        )
    )
    y, scores = noisy_predictions(200, 4, accuracy=0.7, seed=0)
    y[y == 3] = 2  # class "d" absent: empty ROC, NaN row in the normalised matrix
    m = classification_metrics(y, scores, list("abcd"), bootstrap=0)
    assert_png(plot_confusion_matrix(m["confusion_matrix"], list("abcd"), tmp_path / "cm.png"))
    assert_png(
        plot_confusion_matrix(
            m["confusion_matrix"], list("abcd"), tmp_path / "cm_counts.png", normalize=False
        )
    )
    assert_png(plot_roc_curves(m["roc"], tmp_path / "roc.png"))
    assert_png(
        plot_fold_summary(
            [{"fold": "1", "ua": 0.5}, {"fold": "2", "ua": 0.7}], tmp_path / "folds.png"
        )
    )
    assert set(plt.get_fignums()) == open_before  # every figure closed


# --------------------------------------------------------------------------- reports
def _fold_report(out: Path, *, seed: int, independent: bool | None, speakers=None, history=None):
    y, scores = noisy_predictions(120, 4, accuracy=0.6, seed=seed)
    split = (
        None
        if independent is None
        else {
            "name": f"fold{seed}",
            "speaker_independent": independent,
            "test_speakers": speakers or [],
            "test": [f"clip{i}" for i in range(120)],
        }
    )
    return write_report(
        out,
        y_true=y,
        probs=scores,
        class_names=["neutral", "happy", "sad", "angry"],
        clip_ids=[f"clip{i}" for i in range(120)],
        title=f"fold {seed}",
        split=split,
        history_csv=history,
        extra={"model": "test"},
        bootstrap=200,
    )


def test_write_report_files(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(LIGHTNING_CSV)
    out = tmp_path / "fold1"
    report = _fold_report(out, seed=1, independent=True, speakers=["01", "02"], history=csv_path)
    for name in ("report.json", "report.md", "predictions.csv"):
        assert (out / name).is_file()
    for name in ("confusion_matrix.png", "roc_curves.png", "history.png"):
        assert_png(out / name)
    stored = json.loads((out / "report.json").read_text())
    assert stored["title"] == "fold 1" and stored["split"]["speaker_independent"] is True
    assert stored["extra"] == {"model": "test"}
    assert stored["ua"] == pytest.approx(report["ua"])
    assert stored["fold"] == "fold1" and stored["ci"]["ua"] == report["ci"]["ua"]
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "clip_id,true,predicted,prob_neutral,prob_happy,prob_sad,prob_angry"
    assert len(lines) == 121 and lines[1].startswith("clip0,")
    md = (out / "report.md").read_text()
    assert SPEAKER_DEPENDENT_WARNING not in md and "WARNING" not in md
    assert "UA" in md and "Confusion matrix" in md and "ROC-AUC" in md


def test_report_md_says_how_the_kept_weights_were_made_and_which_epoch_of_how_many(tmp_path):
    y, scores = noisy_predictions(60, 3, accuracy=0.6, seed=3)
    summary = (
        "last epoch (30 of 30), EMA of weights (half-life 2 epochs), BatchNorm "
        "statistics recomputed on "
        "training clips; its validation UA 0.477"
    )
    report = write_report(
        tmp_path,
        y_true=y,
        probs=scores,
        class_names=["a", "b", "c"],
        clip_ids=[f"c{i}" for i in range(60)],
        title="t",
        bootstrap=0,
        extra={"epochs": 30, "epochs_run": 30},
        kept={"summary": summary, "epoch": 30, "monitor": "val/ua", "score": 0.477},
    )
    md = (tmp_path / "report.md").read_text()
    assert f"- kept: {summary}" in md
    assert "- epochs: kept epoch 30 of 30 run" in md and "epochs_run" not in md
    assert (
        json.loads((tmp_path / "report.json").read_text())["kept"]["score"]
        == 0.477
        == report["kept"]["score"]
    )


def test_write_report_without_history_or_split(tmp_path):
    report = _fold_report(tmp_path, seed=2, independent=None)
    assert not (tmp_path / "history.png").exists()
    assert report["split"] is None
    assert SPEAKER_DEPENDENT_WARNING not in (tmp_path / "report.md").read_text()


def test_report_warns_on_speaker_dependent_split(tmp_path):
    _fold_report(tmp_path, seed=3, independent=False)
    md = (tmp_path / "report.md").read_text()
    assert f"WARNING: {SPEAKER_DEPENDENT_WARNING}" in md
    assert (
        json.loads((tmp_path / "report.json").read_text())["split"]["speaker_independent"] is False
    )


def test_report_rejects_mismatched_clip_ids(tmp_path):
    with pytest.raises(ValueError):
        write_report(
            tmp_path,
            y_true=[0, 1],
            probs=[[1, 0], [0, 1]],
            class_names=["a", "b"],
            clip_ids=["x"],
            title="t",
            bootstrap=0,
        )


def test_cv_summary(tmp_path):
    reports = [
        _fold_report(tmp_path / f"f{i}", seed=i, independent=True, speakers=[f"{i:02d}"])
        for i in range(1, 4)
    ]
    summary = write_cv_summary(tmp_path / "cv", reports, title="cv", extra={"model": "test"})
    uas = [r["ua"] for r in reports]
    assert summary["mean"]["ua"] == pytest.approx(np.mean(uas))
    assert summary["std"]["ua"] == pytest.approx(np.std(uas, ddof=1))
    assert summary["speaker_independent"] is True
    assert [r["fold"] for r in summary["folds"]] == ["fold1", "fold2", "fold3"]
    assert summary["folds"][1]["test_speakers"] == ["02"]
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["n_folds"] == 3
    md = (tmp_path / "cv" / "summary.md").read_text()
    assert "±" in md and "03" in md and "WARNING" not in md
    assert_png(tmp_path / "cv" / "folds_ua.png")

    reports[1]["split"]["speaker_independent"] = False
    dep = write_cv_summary(tmp_path / "cv_dep", reports, title="cv")
    assert dep["speaker_independent"] is False
    assert SPEAKER_DEPENDENT_WARNING in (tmp_path / "cv_dep" / "summary.md").read_text()


def test_report_accepts_dataclass_split(tmp_path):
    from dataclasses import dataclass, field

    @dataclass
    class FakeSplit:
        name: str = "fold3"
        train: tuple = ("a",)
        val: tuple = ()
        test: tuple = ("x", "y")
        test_speakers: frozenset = field(default_factory=lambda: frozenset({"07", "03"}))
        speaker_independent: bool = True

    r = write_report(
        tmp_path,
        y_true=[0, 1],
        probs=[[0.9, 0.1], [0.2, 0.8]],
        class_names=["a", "b"],
        clip_ids=["x", "y"],
        title="t",
        split=FakeSplit(),
        bootstrap=10,
    )
    stored = json.loads((tmp_path / "report.json").read_text())
    assert r["fold"] == stored["fold"] == "fold3"
    assert stored["split"]["test_speakers"] == ["03", "07"] and stored["split"]["test"] == [
        "x",
        "y",
    ]
