import numpy as np
import torch

from emorec.data import pad_collate
from emorec.training.augment import add_noise, mixup, spec_augment
from emorec.training.losses import SoftTargetLoss, inverse_frequency_weights


def _batch():
    items = [
        {"audio": torch.randn(n, 6), "label": i % 2, "index": i} for i, n in enumerate([5, 3, 8])
    ]
    return pad_collate(items)


def test_soft_target_loss_equals_cross_entropy_for_hard_labels():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    ours = SoftTargetLoss(4)(logits, labels)
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(logits, labels), atol=1e-6)


def test_a_clip_with_fewer_classes_is_scored_over_its_own_classes_only():
    """``allowed``: a row's loss is cross-entropy over its corpus's classes alone (with label
    smoothing spread over those), and the other classes' logits get no gradient from it."""
    logits = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([2, 3, 1, 4])
    allowed = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool
    )
    loss = SoftTargetLoss(5)(logits, labels, allowed)
    want = torch.stack(
        [
            torch.nn.functional.cross_entropy(
                logits[i : i + 1, allowed[i]], torch.tensor([int(allowed[i, : labels[i]].sum())])
            )
            for i in range(4)
        ]
    ).mean()
    assert torch.allclose(loss, want, atol=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~allowed] == 0) and torch.all(logits.grad[allowed] != 0)
    smoothed = SoftTargetLoss(5, label_smoothing=0.1)(logits.detach()[:1], labels[:1], allowed[:1])
    want = torch.nn.functional.cross_entropy(
        logits.detach()[:1, :3], labels[:1], label_smoothing=0.1
    )
    assert torch.allclose(smoothed, want, atol=1e-6)
    items = [
        {"audio": torch.randn(4, 6), "label": 0, "index": i, "classes": allowed[i]}
        for i in range(4)
    ]
    batch = pad_collate(items)
    assert torch.equal(batch["classes"], allowed)
    mixed, _ = mixup(
        batch, torch.nn.functional.one_hot(batch["label"], 5).float(), 0.4, np.random.default_rng(0)
    )
    # a mixed clip may have either clip's classes
    assert torch.all(mixed["classes"] >= batch["classes"])


def test_focal_loss_downweights_easy_examples():
    logits = torch.tensor([[8.0, 0.0], [0.2, 0.0]])
    labels = torch.tensor([0, 0])
    ce = SoftTargetLoss(2, gamma=0.0)
    focal = SoftTargetLoss(2, gamma=2.0)
    easy_ratio = focal(logits[:1], labels[:1]) / ce(logits[:1], labels[:1])
    hard_ratio = focal(logits[1:], labels[1:]) / ce(logits[1:], labels[1:])
    assert easy_ratio < 1e-5 < hard_ratio < 1


def test_inverse_frequency_weights():
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1]), 3)
    assert torch.allclose(weights, torch.tensor([4 / 6, 4 / 2, 0.0]))


def test_augmentations_leave_padding_untouched():
    batch = _batch()
    rng = np.random.default_rng(0)
    noisy = add_noise(batch, 0.1)
    masked = spec_augment(batch, time_masks=2, freq_masks=2, time_width=3, freq_width=2, rng=rng)
    for out in (noisy, masked):
        assert torch.all(out["audio"][~batch["audio_mask"]] == 0)
    assert not torch.equal(noisy["audio"], batch["audio"])


def test_mixup_mixes_targets_convexly():
    batch = _batch()
    targets = torch.nn.functional.one_hot(batch["label"], 2).float()
    mixed, soft = mixup(batch, targets, 0.2, np.random.default_rng(1))
    assert torch.allclose(soft.sum(-1), torch.ones(3))
    assert mixed["audio_mask"].sum() >= batch["audio_mask"].sum()


def test_frequency_shift_moves_bins_and_keeps_padding_zero():
    from emorec.training.augment import frequency_shift

    batch = _batch()
    out = frequency_shift(batch, 2, np.random.default_rng(3))
    assert torch.all(out["audio"][~batch["audio_mask"]] == 0)
    for row in range(3):
        real = batch["audio_mask"][row]
        a, b = batch["audio"][row, real], out["audio"][row, real]
        assert any(
            torch.equal(b[:, max(0, s) : 6 + min(0, s)], a[:, max(0, -s) : 6 - max(0, s)])
            for s in range(-2, 3)
        )


def test_time_stretch_scales_lengths_and_masks():
    from emorec.training.augment import time_stretch

    batch = _batch()
    out = time_stretch(batch, 0.2, np.random.default_rng(0))
    rate = out["audio"].shape[1] / batch["audio"].shape[1]
    lengths = out["audio_mask"].sum(1).float()
    assert torch.allclose(
        lengths, torch.round(batch["audio_mask"].sum(1).float() * rate).clamp(min=1), atol=1
    )
    assert torch.all(out["audio"][~out["audio_mask"]] == 0)


def test_cosine_schedule_warms_up_then_decays_towards_zero():
    from emorec.training.module import CosineWithWarmup

    factor = CosineWithWarmup(2, 10)
    values = [factor(e) for e in range(10)]
    assert values[:3] == [1 / 3, 2 / 3, 1.0]  # warm-up, then the full rate
    assert all(a > b for a, b in zip(values[2:], values[3:]))  # strictly decreasing
    assert 0 < values[-1] < 0.05  # the last epoch still learns a little


def test_modality_dropout_removes_one_modality_per_chosen_clip():
    from emorec.training.augment import modality_dropout

    gen = torch.Generator().manual_seed(0)
    batch = {
        "audio": torch.randn(64, 7, 3, generator=gen),
        "audio_mask": torch.ones(64, 7, dtype=torch.bool),
        "video": torch.randn(64, 4, 2, generator=gen),
        "video_mask": torch.ones(64, 4, dtype=torch.bool),
    }
    batch["video_mask"][0] = False  # a clip without a face keeps its audio whatever happens
    batch["video"][0] = 0.0
    out = modality_dropout(batch, 0.5, np.random.default_rng(0))
    audio_gone = ~out["audio_mask"].any(1)
    video_gone = ~out["video_mask"].any(1)
    assert not (audio_gone & video_gone).any()  # never both
    assert not audio_gone[0]
    dropped = (audio_gone | video_gone)[1:]  # clip 0 had one modality only: never chosen
    assert 16 <= int(dropped.sum()) <= 48 and audio_gone.any() and video_gone[1:].any()
    for m, gone in (("audio", audio_gone), ("video", video_gone)):
        assert (out[m][gone] == 0).all()  # removed frames look like a missing modality
        torch.testing.assert_close(out[m][~gone], batch[m][~gone])  # the rest untouched
    assert modality_dropout(
        {k: batch[k] for k in ("audio", "audio_mask")}, 1.0, np.random.default_rng(0)
    )["audio_mask"].all()


def _planes_batch():
    """Two clips of (T, 3 x 4) features whose planes are distinguishable: plane p holds 10 p +
    bin."""
    planes = torch.arange(3)[:, None] * 10.0 + torch.arange(1, 5)[None, :]  # (3, 4)
    items = [
        {"audio": planes.flatten().repeat(n, 1), "label": 0, "index": i}
        for i, n in enumerate([4, 2])
    ]
    return pad_collate(items)


def test_frequency_shift_stays_inside_each_plane():
    from emorec.training.augment import frequency_shift

    batch = _planes_batch()
    for seed in range(6):
        out = frequency_shift(batch, 2, np.random.default_rng(seed), planes=3)
        assert torch.all(out["audio"][~batch["audio_mask"]] == 0)
        frame = out["audio"][0, 0].view(3, 4)
        for p in range(3):  # every bin holds its own plane's value or the zero fill
            values = frame[p][frame[p] != 0]
            assert torch.all((values > 10 * p) & (values < 10 * p + 5))
        assert torch.equal(frame != 0, (frame[:1] != 0).expand(3, 4)), (
            "planes shifted by different amounts"
        )


def test_spec_augment_masks_the_same_bins_in_every_plane():
    batch = _planes_batch()
    out = spec_augment(
        batch,
        time_masks=0,
        freq_masks=1,
        time_width=0,
        freq_width=2,
        rng=np.random.default_rng(1),
        planes=3,
    )
    frames = out["audio"][0].view(-1, 3, 4)  # (T, planes, bins)
    assert torch.equal(frames == 0, (frames[:, :1] == 0).expand_as(frames))
    assert (frames == 0).any()
    assert torch.all(out["audio"][~batch["audio_mask"]] == 0)


def test_metrics_rows_become_one_row_per_epoch_numbered_from_1():
    from emorec.runs.epochs import epoch_columns, epoch_table

    raw = [  # Lightning's order: lr at an epoch's start (no epoch), then validation, then training
        {"lr-Adam": 0.001, "step": 0},
        {"val/ua": 0.3, "val/loss": 1.2, "epoch": 0, "step": 3},
        {"train/loss": 1.5, "epoch": 0, "step": 3},
        {"lr-Adam": 0.0005, "step": 4},
        {"val/ua": 0.4, "val/loss": 1.1, "epoch": 1, "step": 7},
        {"train/loss": 1.3, "epoch": 1, "step": 7},
        {"lr-Adam": 0.00025, "step": 8},  # the third epoch has only just started
    ]
    table = epoch_table(raw)
    assert table == [
        {"epoch": 1, "lr-Adam": 0.001, "val/ua": 0.3, "val/loss": 1.2, "train/loss": 1.5},
        {"epoch": 2, "lr-Adam": 0.0005, "val/ua": 0.4, "val/loss": 1.1, "train/loss": 1.3},
    ]
    assert epoch_columns(table) == ["epoch", "train/loss", "val/loss", "val/ua", "lr-Adam"]
    # the CSV reader's strings and blanks merge the same way
    text = [
        {
            k: "" if v is None else str(v)
            for k, v in {"epoch": None, "lr-Adam": 0.001, "step": 0, "val/ua": None}.items()
        },
        {"epoch": "0", "lr-Adam": "", "step": "3", "val/ua": "0.3"},
    ]
    assert epoch_table(text) == [{"epoch": 1, "lr-Adam": 0.001, "val/ua": 0.3}]


def test_metrics_csv_is_one_row_per_epoch_and_the_checkpoint_keeps_the_raw_rows(tmp_path):
    import csv

    from emorec.training.callbacks import RowKeepingCSVLogger

    logger = RowKeepingCSVLogger(tmp_path, name="", version="")
    logger.log_metrics({"lr-Adam": 0.001}, step=0)
    logger.log_metrics({"val/ua": 0.5, "epoch": 0}, step=3)
    logger.log_metrics({"train/loss": 1.0, "epoch": 0}, step=3)
    logger.save()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert rows == [{"epoch": "1", "train/loss": "1.0", "val/ua": "0.5", "lr-Adam": "0.001"}]
    assert len(logger.all_rows()) == 3, "the raw rows (what resuming rebuilds from) are all kept"
    resumed = RowKeepingCSVLogger(tmp_path / "again", name="", version="", rows=logger.all_rows())
    resumed.experiment  # a resumed fold writes metrics.csv from the checkpoint's rows at once
    assert list(csv.DictReader(open(tmp_path / "again" / "metrics.csv"))) == rows


def test_progress_bar_counts_epochs_from_1():
    import types

    from emorec.training.callbacks import OneBasedRichProgressBar

    bar = OneBasedRichProgressBar()
    bar._trainer = types.SimpleNamespace(max_epochs=30)
    assert bar._get_train_description(0).strip() == "Epoch 1/30"
    assert bar._get_train_description(29).strip() == "Epoch 30/30"


def test_ema_half_life_gives_a_decay_per_step_that_depends_on_steps_per_epoch():
    import math

    import pytest

    from emorec.runs.kept import ema_decay_per_step, ema_half_life_epochs

    for steps in (12, 34):  # a 535-clip corpus and RAVDESS at batch size 32
        decay = ema_decay_per_step(2.0, steps)
        assert decay ** (2 * steps) == pytest.approx(0.5)  # after 2 epochs a step's weight halves
        assert ema_half_life_epochs(decay, steps) == pytest.approx(2.0)
    # fewer steps, faster per step
    assert ema_decay_per_step(2.0, 12) < ema_decay_per_step(2.0, 34) < 1.0
    # what the committed recipes' ema_decay 0.995 means on RAVDESS (34 steps) and on 12 steps
    assert ema_half_life_epochs(0.995, 34) == pytest.approx(math.log(0.5) / math.log(0.995) / 34)
    assert (
        4.0 < ema_half_life_epochs(0.995, 34) < 4.1
        and 11.5 < ema_half_life_epochs(0.995, 12) < 11.6
    )
    with pytest.raises(ValueError):
        ema_decay_per_step(0.0, 12)


def test_half_life_ema_takes_its_decay_from_the_loader_length_when_fitting_starts():
    import lightning as L
    import pytest

    from emorec.runs.kept import ema_decay_per_step
    from emorec.training.callbacks import HalfLifeEMA

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    steps = {"n": 99}
    ema = HalfLifeEMA(2.0, lambda: steps["n"], use_buffers=True)
    steps["n"] = (
        12  # read at setup, not at construction (under DDP the loader's length changes by then)
    )
    module = Tiny()
    ema.setup(None, module, "fit")
    assert ema.steps_per_epoch == 12 and ema.decay == pytest.approx(ema_decay_per_step(2.0, 12))
    average = ema._average_model
    average.update_parameters(module)  # the first update copies the weights (0)
    with torch.no_grad():
        module.w.fill_(1.0)
    average.update_parameters(module)
    # decay × 0 + (1 - decay) × 1
    assert float(average.module.w.detach()) == pytest.approx(1.0 - ema.decay)


def test_kept_summary_says_how_the_kept_weights_were_made():
    from emorec.runs.kept import ema_record, kept_summary

    meta = {
        "checkpoint": "last",
        "best_epoch": 30,
        "epochs_run": 30,
        "monitor": "val/ua",
        "best_score": 0.4771,
        "bn_recalibrated": True,
        "ema": ema_record({"ema_half_life_epochs": 2.0}, 34),
    }
    assert kept_summary(meta) == (
        "last epoch (30 of 30), EMA of weights (half-life 2 epochs), BatchNorm statistics "
        "recomputed on training clips; its validation UA 0.477"
    )
    old = {
        "checkpoint": "last",
        "best_epoch": 30,
        "epochs_run": 30,
        "monitor": "val/ua",
        "best_score": 0.5,
        "ema": ema_record({"ema_decay": 0.995}, 34),
    }
    assert (
        "EMA of weights (decay 0.995 per step: half-life 4.1 epochs of 34 steps)"
        in kept_summary(old)
    )
    best = {
        "checkpoint": "best",
        "best_epoch": 7,
        "epochs_run": 13,
        "monitor": "val/loss",
        "best_score": 0.91234,
    }
    assert (
        kept_summary(best) == "epoch 7 of 13, the best validation loss; its validation loss 0.9123"
    )
