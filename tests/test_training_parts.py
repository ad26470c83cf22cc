import numpy as np
import torch

from emorec.data import pad_collate
from emorec.training.augment import add_noise, mixup, spec_augment
from emorec.training.losses import SoftTargetLoss, inverse_frequency_weights


def _batch():
    items = [{"audio": torch.randn(n, 6), "label": i % 2, "index": i} for i, n in enumerate([5, 3, 8])]
    return pad_collate(items)


def test_soft_target_loss_equals_cross_entropy_for_hard_labels():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    ours = SoftTargetLoss(4)(logits, labels)
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(logits, labels), atol=1e-6)


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
        assert any(torch.equal(b[:, max(0, s):6 + min(0, s)], a[:, max(0, -s):6 - max(0, s)]) for s in range(-2, 3))


def test_time_stretch_scales_lengths_and_masks():
    from emorec.training.augment import time_stretch

    batch = _batch()
    out = time_stretch(batch, 0.2, np.random.default_rng(0))
    rate = out["audio"].shape[1] / batch["audio"].shape[1]
    lengths = out["audio_mask"].sum(1).float()
    assert torch.allclose(lengths, torch.round(batch["audio_mask"].sum(1).float() * rate).clamp(min=1), atol=1)
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
    batch = {"audio": torch.randn(64, 7, 3, generator=gen), "audio_mask": torch.ones(64, 7, dtype=torch.bool),
             "video": torch.randn(64, 4, 2, generator=gen), "video_mask": torch.ones(64, 4, dtype=torch.bool)}
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
    assert modality_dropout({k: batch[k] for k in ("audio", "audio_mask")}, 1.0, np.random.default_rng(0))["audio_mask"].all()


def _planes_batch():
    """Two clips of (T, 3 x 4) features whose planes are distinguishable: plane p holds 10 p + bin."""
    planes = torch.arange(3)[:, None] * 10.0 + torch.arange(1, 5)[None, :]  # (3, 4)
    items = [{"audio": planes.flatten().repeat(n, 1), "label": 0, "index": i} for i, n in enumerate([4, 2])]
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
        assert torch.equal(frame != 0, (frame[:1] != 0).expand(3, 4)), "planes shifted by different amounts"


def test_spec_augment_masks_the_same_bins_in_every_plane():
    batch = _planes_batch()
    out = spec_augment(batch, time_masks=0, freq_masks=1, time_width=0, freq_width=2,
                       rng=np.random.default_rng(1), planes=3)
    frames = out["audio"][0].view(-1, 3, 4)  # (T, planes, bins)
    assert torch.equal(frames == 0, (frames[:, :1] == 0).expand_as(frames))
    assert (frames == 0).any()
    assert torch.all(out["audio"][~batch["audio_mask"]] == 0)
