"""The model contract and a CLI training run on a CUDA GPU; skipped where there is none (as on CI).

On a GPU the recurrent layers run cuDNN's kernels and the convolutions other algorithms than on
CPU, so padding invariance is checked again there (fp32, looser tolerance for kernel-order
rounding), and every model runs forward and backward under bf16 autocast, which is what
``--precision bf16-mixed`` does.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from emorec.corpora.synthetic import generate_synthetic_corpus
from cli_process import emorec
from test_cli import tiny_recipe
from test_models import LENGTHS, MODELS, NUM_CLASSES, build, collate, make_clips

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_ATOL = 1e-4


def cuda(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.cuda() for k, v in batch.items()}


@pytest.mark.parametrize("name", MODELS)
def test_padding_never_changes_logits_on_gpu(name):
    model = build(name).cuda().eval()
    clips = make_clips(name, LENGTHS)
    with torch.no_grad():
        batched = model(cuda(collate(clips)))
        for i, clip in enumerate(clips):
            alone = model(cuda(collate([clip])))
            diff = (batched[i] - alone[0]).abs().max().item()
            assert diff <= GPU_ATOL, (
                f"{name}: clip of {LENGTHS[i]} frames changes by {diff:.2e} when padded (cuda)"
            )
    cpu = build(name).eval()
    with torch.no_grad():
        reference = cpu(collate(clips))
    assert (batched.cpu() - reference).abs().max().item() <= GPU_ATOL, (
        f"{name}: cuda and cpu logits differ"
    )


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_forward_backward(name):
    model = build(name).cuda().train()
    batch = cuda(collate(make_clips(name, [1, 5, 30], seed=2)))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(batch)
        loss = F.cross_entropy(logits.float(), batch["label"])
    assert logits.shape == (3, NUM_CLASSES) and torch.isfinite(logits.float()).all()
    loss.backward()
    for pname, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), (
                f"{name}: non-finite gradient in {pname} under bf16 autocast"
            )


def test_cli_trains_and_evaluates_on_gpu_in_bf16(tmp_path):
    corpus = generate_synthetic_corpus(
        tmp_path / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    emorec("prepare", "synthetic", corpus, "--out", tmp_path / "manifest.csv", cwd=tmp_path)
    emorec(
        "train",
        tiny_recipe(tmp_path, "gpu"),
        "--quiet",
        "--accelerator",
        "gpu",
        "--precision",
        "bf16-mixed",
        cwd=tmp_path,
    )
    fold = next((tmp_path / "runs").glob("gpu-*")) / "fold_1"
    hardware = json.loads((fold / "train_summary.json").read_text())["hardware"]
    assert (
        hardware["accelerator"] == "cuda"
        and hardware["precision"] == "bf16-mixed"
        and hardware["gpus"]
    )
    report = json.loads((fold / "report" / "report.json").read_text())
    assert 0.0 <= report["ua"] <= 1.0 and len(report["per_class"]) == 3
