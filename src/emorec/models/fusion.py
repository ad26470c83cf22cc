"""Embedding fusion (seed 000's multimodal workflow): two branch models' ``embed()`` outputs,
concatenated and classified::

    audio sub-batch -> audio branch (any registered audio model).embed -> [B x D_a] ┐
    video sub-batch -> video branch (any registered video model).embed -> [B x D_v] ┴-> concat
      -> LayerNorm -> Dropout -> Linear -> ReLU -> embed [B x fusion_hidden]
      -> Dropout -> Linear -> logits

A branch named ``"precomputed"`` takes embeddings already computed (one ``(1, D)`` "sequence"
per clip, as ``emorec fuse`` caches them) and passes their masked mean through: that is the
fusion classifier trained on cached embeddings. With real branch models it is the end-to-end
model that ``emorec fuse --finetune`` initialises from the two branch checkpoints and from the
fusion classifier (``init_from``), then fine-tunes (or trains the head only: ``freeze_branches``).

A modality absent from the batch, or a clip with no real frame of it, contributes a learned
placeholder embedding, so the fused model still predicts from one modality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import masked_mean
from emorec.models.registry import create_model, model_info, register_model

__all__ = ["PRECOMPUTED", "EmbeddingFusion", "PrecomputedEmbedding"]

PRECOMPUTED = "precomputed"
MODALITIES = ("audio", "video")


class PrecomputedEmbedding(nn.Module):
    """A branch whose input already is an embedding: ``embed`` is the masked mean of ``[B x T x D]``
    (``T = 1`` for cached embeddings)."""

    def __init__(self, modality: str, dim: int):
        super().__init__()
        self.modality = modality
        self.embed_dim = dim

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_mean(batch[self.modality], batch[f"{self.modality}_mask"])  # (B, D)


def _build_branch(
    modality: str, name: str, kwargs: dict[str, Any], num_classes: int, dim: int
) -> nn.Module:
    if name == PRECOMPUTED:
        if kwargs:
            raise ConfigError(
                f"embedding_fusion: a {PRECOMPUTED!r} {modality} branch takes no "
                f"arguments, got {sorted(kwargs)}"
            )
        return PrecomputedEmbedding(modality, dim)
    info = model_info(name)
    if modality not in info.modalities:
        raise ConfigError(
            f"embedding_fusion: {name!r} cannot be the {modality} branch (it reads "
            f"{list(info.modalities)})"
        )
    dims = {
        "audio_dim": dim if modality == "audio" else None,
        "video_dim": dim if modality == "video" else None,
    }
    branch = create_model(name, num_classes=num_classes, **dims, **kwargs)
    if not hasattr(branch, "embed"):
        raise ConfigError(f"embedding_fusion: {name!r} has no embed() method")
    return branch


def _embed_dim(branch: nn.Module, modality: str, dim: int) -> int:
    if hasattr(branch, "embed_dim"):
        return int(branch.embed_dim)
    was_training = branch.training
    branch.eval()
    with torch.no_grad():
        probe = {
            modality: torch.zeros(1, 4, dim),
            f"{modality}_mask": torch.ones(1, 4, dtype=torch.bool),
        }
        size = branch.embed(probe).shape[-1]
    branch.train(was_training)
    return int(size)


@register_model(
    "embedding_fusion",
    modalities=("audio", "video"),
    seed="000",
    summary="Fuses an audio and a video model's embeddings; cached-embedding classifier "
    "or end-to-end (seed 000)",
)
class EmbeddingFusion(nn.Module):
    """Audio branch + video branch embeddings -> fusion MLP -> logits (see the module doc).

    Embedding fusion (seed 000 workflow). ``audio_model`` / ``video_model``: registered model
    names (built with their ``*_kwargs`` on one modality each) or ``"precomputed"`` for cached
    embeddings. ``init_from``: ``{"audio": DIR, "video": DIR, "fusion": DIR}`` trained model
    directories to start from. ``freeze_branches`` trains only the fusion head."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int,
        video_dim: int,
        audio_model: str = "attn_crnn",
        audio_kwargs: dict[str, Any] | None = None,
        video_model: str = "bilstm_attention",
        video_kwargs: dict[str, Any] | None = None,
        fusion_hidden: int = 128,
        dropout: float = 0.3,
        freeze_branches: bool = False,
        init_from: dict[str, str] | None = None,
    ):
        super().__init__()
        specs = {
            "audio": (audio_model, dict(audio_kwargs or {}), audio_dim),
            "video": (video_model, dict(video_kwargs or {}), video_dim),
        }
        self.branch_models = {m: spec[0] for m, spec in specs.items()}
        self.branches = nn.ModuleDict(
            {
                m: _build_branch(m, name, kw, num_classes, dim)
                for m, (name, kw, dim) in specs.items()
            }
        )
        dims = {m: _embed_dim(self.branches[m], m, specs[m][2]) for m in MODALITIES}
        self.placeholders = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(d)) for m, d in dims.items()}
        )
        total = sum(dims.values())
        self.norm = nn.LayerNorm(total)
        self.fusion = nn.Sequential(nn.Dropout(dropout), nn.Linear(total, fusion_hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fusion_hidden, num_classes))
        self.embed_dim = fusion_hidden
        self.num_classes = num_classes
        self.freeze_branches = freeze_branches
        if init_from:
            self.load_initial_weights(init_from)
        for branch in self.branches.values():
            # a branch's own classifier head is kept (so its checkpoint loads as is) but unused: no
            # gradient reaches it, so it is frozen (DDP requires every trained parameter to be used)
            for p in getattr(branch, "head", nn.Module()).parameters():
                p.requires_grad_(False)
        if freeze_branches:
            for p in self.branches.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "EmbeddingFusion":
        super().train(mode)
        if self.freeze_branches:
            self.branches.eval()  # frozen branches keep their BatchNorm statistics and no dropout
        return self

    # -- initialisation from trained runs -------------------------------------------------------
    def load_initial_weights(self, init_from: dict[str, str]) -> None:
        """``init_from``: ``{"audio": DIR, "video": DIR}`` load each branch from a trained model
        directory of that branch's model; ``{"fusion": DIR}`` loads everything but the branches
        (LayerNorm, fusion MLP, head, placeholders) from an ``embedding_fusion`` model, e.g. the
        classifier trained on cached embeddings. Only safetensors files are read."""
        from emorec.inference.model_files import find_model_dir, read_model_files

        unknown = sorted(set(init_from) - {"audio", "video", "fusion"})
        if unknown:
            raise ConfigError(
                f"embedding_fusion: init_from keys must be audio, video or fusion; got {unknown}"
            )
        for key, path in init_from.items():
            if not path:
                continue
            model_dir = find_model_dir(path)
            meta, state = read_model_files(model_dir)
            if key in MODALITIES:
                expected = self.branch_models[key]
                if meta.get("model") != expected:
                    raise ConfigError(
                        f"embedding_fusion: init_from.{key} {model_dir} holds "
                        f"a {meta.get('model')!r} "
                        f"model, the {key} branch is {expected!r}"
                    )
                target, what = self.branches[key], f"the {key} branch"
            else:
                if meta.get("model") != "embedding_fusion":
                    raise ConfigError(
                        f"embedding_fusion: init_from.fusion {model_dir} is a "
                        f"{meta.get('model')!r} model"
                    )
                state = {k: v for k, v in state.items() if not k.startswith("branches.")}
                own = {k for k in self.state_dict() if not k.startswith("branches.")}
                if set(state) != own:
                    raise ConfigError(
                        f"embedding_fusion: init_from.fusion {model_dir} "
                        "does not match this fusion "
                        f"head (keys differ: {sorted(set(state) ^ own)[:4]})"
                    )
                target, what = self, "the fusion head"
            try:
                target.load_state_dict(state, strict=key in MODALITIES)
            except RuntimeError as err:
                first = str(err).strip().splitlines()
                raise ConfigError(
                    f"embedding_fusion: {Path(model_dir)} does not fit {what}: "
                    f"{first[1].strip() if len(first) > 1 else first[0]}"
                ) from None

    # -- forward --------------------------------------------------------------------------------
    def _branch_embedding(
        self, modality: str, batch: dict[str, torch.Tensor], size: int
    ) -> torch.Tensor:
        placeholder = self.placeholders[modality]
        if modality not in batch:
            return placeholder.expand(size, -1)  # (B, D_m)
        mask = batch[f"{modality}_mask"]
        sub = {modality: batch[modality], f"{modality}_mask": mask}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_branches):
            embedding = self.branches[modality].embed(sub)  # (B, D_m)
        return torch.where(
            mask.any(dim=1, keepdim=True), embedding, placeholder.expand_as(embedding)
        )

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused representation ``[B x fusion_hidden]``; ``forward == head(embed)``."""
        present = [m for m in MODALITIES if m in batch]
        if not present:
            raise ValueError("embedding_fusion: the batch holds neither audio nor video")
        size = batch[present[0]].size(0)
        parts = [self._branch_embedding(m, batch, size) for m in MODALITIES]  # [(B, D_a), (B, D_v)]
        return self.fusion(self.norm(torch.cat(parts, dim=-1)))

    def forward(
        self, batch: dict[str, torch.Tensor], return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B x C]``; with ``return_attention`` also the branches' own attention weights
        (for the modalities the batch holds and whose branch has attention)."""
        logits = self.head(self.embed(batch))
        if not return_attention:
            return logits
        attention: dict[str, torch.Tensor] = {}
        for m, branch in self.branches.items():
            if m in batch and not isinstance(branch, PrecomputedEmbedding):
                try:
                    _, weights = branch(
                        {m: batch[m], f"{m}_mask": batch[f"{m}_mask"]}, return_attention=True
                    )
                except TypeError:  # a branch without attention
                    continue
                for key, w in weights.items():
                    attention[key if key not in attention else f"{m}.{key}"] = w
        return logits, attention
