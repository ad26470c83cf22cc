"""A corpus adversary (Ganin & Lempitsky 2015): a small head guesses each training clip's corpus
from the emotion model's embedding through a gradient-reversal layer, so the encoder is pushed to
carry emotion and not the studio, language or microphone a corpus sounds like. Training logic only:
the architecture and the exported model never see it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emorec.errors import ConfigError


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-scale``."""
    return _ReverseGradient.apply(x, scale)


class CorpusAdversary(nn.Module):
    """``embedding (B, D)`` -> corpus logits ``(B, K)`` behind a gradient reversal."""

    def __init__(self, embed_dim: int, num_corpora: int, hidden: int = 128):
        super().__init__()
        if num_corpora < 2:
            raise ConfigError(
                f"loss.corpus_adversary needs two or more training corpora, got {num_corpora}"
            )
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_corpora)
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(reverse_gradient(embedding))

    def loss(self, embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against soft corpus ``targets (B, K)`` (one-hot, or mixed by MixUp)."""
        return -(targets * F.log_softmax(self(embedding), dim=-1)).sum(-1).mean()


def embedding_and_head(model: nn.Module) -> None:
    """:class:`ConfigError` unless ``model`` splits into ``embed(batch)`` and
    ``head(embedding)``."""
    if not (
        hasattr(model, "embed")
        and isinstance(getattr(model, "head", None), nn.Module)
        and hasattr(model, "embed_dim")
    ):
        raise ConfigError(
            "loss.corpus_adversary needs an architecture with embed() and "
            "head (e.g. attn_crnn_v2); "
            f"{type(model).__name__} has none"
        )
