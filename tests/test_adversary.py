"""The gradient-reversal corpus adversary (loss.corpus_adversary): reversal, training step, exported
weights."""

from __future__ import annotations

import pytest
import torch

from emorec.data import pad_collate
from emorec.errors import ConfigError
from emorec.training.adversary import CorpusAdversary, reverse_gradient
from emorec.training.module import EmotionClassifier

KWARGS = {
    "channels": [4, 8],
    "time_pool": [2, 2],
    "freq_pool": [2, 2],
    "gru_hidden": 8,
    "attention_heads": 2,
    "dense": 8,
}


def _batch(n: int = 6) -> dict:
    g = torch.Generator().manual_seed(0)
    items = [
        {
            "audio": torch.randn(20 + 3 * i, 16, generator=g),
            "label": i % 3,
            "index": i,
            "corpus": i % 2,
        }
        for i in range(n)
    ]
    return pad_collate(items)


def test_reversal_is_identity_forward_and_negated_gradient_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_the_adversary_pushes_the_encoder_away_from_telling_corpora_apart():
    """Its own layers descend on the corpus loss; the embedding feeding it gets the opposite
    gradient."""
    head = CorpusAdversary(embed_dim=4, num_corpora=2, hidden=5)
    embedding = torch.randn(8, 4, requires_grad=True)
    targets = torch.nn.functional.one_hot(torch.arange(8) % 2, 2).float()
    head.loss(embedding, targets).backward()
    plain = embedding.detach().clone().requires_grad_(True)
    (-(targets * torch.log_softmax(head.net(plain), -1)).sum(-1).mean()).backward()
    assert torch.allclose(embedding.grad, -plain.grad)
    with pytest.raises(ConfigError, match="two or more"):
        CorpusAdversary(4, 1)


def test_a_training_step_adds_the_corpus_loss_and_the_exported_model_lacks_the_head():
    common = dict(
        model_name="attn_crnn_v2", model_kwargs=KWARGS, num_classes=3, audio_dim=16, mixup_alpha=0.2
    )
    torch.manual_seed(0)
    plain = EmotionClassifier(**common)
    torch.manual_seed(0)
    adversarial = EmotionClassifier(**common, corpus_adversary=0.5, num_corpora=2)
    plain.log = adversarial.log = lambda *a, **k: None  # no trainer attached
    batch = _batch()
    with_head = adversarial.training_step(batch, 0)
    without = plain.training_step(batch, 0)
    # the same model and data, plus 0.5 x corpus CE
    assert torch.isfinite(with_head) and float(with_head) > float(without)
    with_head.backward()
    assert all(p.grad is not None for p in adversarial.corpus_head.parameters())
    # export reads module.model only
    assert set(adversarial.model.state_dict()) == set(plain.model.state_dict())
