"""The LightningModule: training logic around any registered architecture.

The architecture (an ``nn.Module`` from the registry) knows nothing of losses, optimisers or
augmentation; this module knows nothing of layers. Metrics are torchmetrics attributes logged
as ``train/…`` and ``val/…``. The test split is never seen here: evaluation runs after
training, on the checkpoint chosen by validation (see ``run.py``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics

from emorec.models import create_model
from emorec.training.adversary import CorpusAdversary, embedding_and_head
from emorec.training.augment import (
    add_noise,
    frequency_shift,
    mixup,
    modality_dropout,
    spec_augment,
    time_stretch,
)
from emorec.training.losses import SoftTargetLoss


class EmotionClassifier(L.LightningModule):
    def __init__(
        self,
        *,
        model_name: str,
        model_kwargs: dict[str, Any],
        num_classes: int,
        audio_dim: int | None = None,
        video_dim: int | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_factor: float = 0.5,
        lr_patience: int = 2,
        schedule: str = "plateau",
        warmup_epochs: int = 0,
        max_epochs: int = 30,
        focal_gamma: float = 0.0,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        noise: float = 0.0,
        mixup_alpha: float = 0.0,
        spec_augment: dict[str, int] | None = None,
        freq_shift: int = 0,
        time_stretch: float = 0.0,
        modality_dropout: float = 0.0,
        feature_planes: int = 1,
        corpus_adversary: float = 0.0,
        num_corpora: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(
            model_name,
            num_classes=num_classes,
            audio_dim=audio_dim,
            video_dim=video_dim,
            **model_kwargs,
        )
        self.corpus_head = None
        if corpus_adversary > 0:
            embedding_and_head(self.model)
            self.corpus_head = CorpusAdversary(self.model.embed_dim, num_corpora)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss_fn = SoftTargetLoss(
            num_classes, gamma=focal_gamma, class_weights=weights, label_smoothing=label_smoothing
        )
        self.eval_loss_fn = SoftTargetLoss(num_classes, gamma=focal_gamma, class_weights=weights)
        task = dict(task="multiclass", num_classes=num_classes)
        self.train_acc = torchmetrics.Accuracy(**task, average="micro")
        self.val_acc = torchmetrics.Accuracy(**task, average="micro")
        self.val_ua = torchmetrics.Accuracy(**task, average="macro")
        self.val_f1 = torchmetrics.F1Score(**task, average="macro")
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_config(
        cls,
        config,
        *,
        num_classes: int,
        dims: dict[str, int],
        class_weights: list[float] | None = None,
        feature_planes: int = 1,
        num_corpora: int = 0,
    ) -> "EmotionClassifier":
        """The module a :class:`~emorec.training.config.TrainConfig` describes, for features of
        ``dims`` (``{"audio": F_a, "video": F_v}``); augmentation off when ``augment.enabled``
        is."""
        aug, optim, loss = config.augment, config.optim, config.loss
        on = aug.enabled
        spec = dict(
            time_masks=aug.spec_time_masks,
            freq_masks=aug.spec_freq_masks,
            time_width=aug.spec_time_width,
            freq_width=aug.spec_freq_width,
        )
        return cls(
            model_name=config.model.get("name", "attn_crnn"),
            model_kwargs={k: v for k, v in config.model.items() if k != "name"},
            num_classes=num_classes,
            audio_dim=dims.get("audio"),
            video_dim=dims.get("video"),
            lr=optim.lr,
            betas=tuple(optim.betas),
            weight_decay=optim.weight_decay,
            lr_factor=optim.lr_factor,
            lr_patience=optim.lr_patience,
            schedule=optim.schedule,
            warmup_epochs=optim.warmup_epochs,
            max_epochs=config.trainer.epochs,
            focal_gamma=loss.gamma if loss.name == "focal" else 0.0,
            class_weights=class_weights,
            label_smoothing=loss.label_smoothing,
            noise=aug.noise if on else 0.0,
            mixup_alpha=aug.mixup if on else 0.0,
            spec_augment=spec if on and (aug.spec_time_masks or aug.spec_freq_masks) else None,
            freq_shift=aug.freq_shift if on else 0,
            time_stretch=aug.time_stretch if on else 0.0,
            modality_dropout=aug.modality_dropout if on else 0.0,
            feature_planes=feature_planes,
            corpus_adversary=loss.corpus_adversary,
            num_corpora=num_corpora,
            seed=config.trainer.seed,
        )

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels = batch["label"]
        targets = F.one_hot(labels, self.hparams.num_classes).float()  # (B, C)
        hp = self.hparams
        batch = time_stretch(batch, hp.time_stretch, self._rng)
        planes = hp.feature_planes  # 3 for features made with deltas: true
        batch = frequency_shift(batch, hp.freq_shift, self._rng, planes=planes)
        if hp.spec_augment:
            batch = spec_augment(batch, rng=self._rng, planes=planes, **hp.spec_augment)
        batch = add_noise(batch, hp.noise)
        # corpus targets ride along, so MixUp mixes them with the same weights
        if self.corpus_head is not None:
            targets = torch.cat(
                [targets, F.one_hot(batch["corpus"], hp.num_corpora).float()], dim=1
            )
        batch, targets = mixup(batch, targets, hp.mixup_alpha, self._rng)
        batch = modality_dropout(batch, hp.modality_dropout, self._rng)  # after MixUp's mask union
        if self.corpus_head is None:
            logits = self.model(batch)
            loss = self.loss_fn(logits, targets, batch.get("classes"))
        else:
            targets, corpus_targets = targets[:, : hp.num_classes], targets[:, hp.num_classes :]
            embedding = self.model.embed(batch)  # (B, D)
            logits = self.model.head(embedding)
            adversary = self.corpus_head.loss(embedding, corpus_targets)
            loss = (
                self.loss_fn(logits, targets, batch.get("classes"))
                + hp.corpus_adversary * adversary
            )
            self.log(
                "train/corpus_loss",
                adversary,
                on_step=False,
                on_epoch=True,
                batch_size=labels.shape[0],
            )
        self.train_acc(logits.argmax(-1), labels)
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=labels.shape[0],
            sync_dist=True,
        )
        self.log(
            "train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=labels.shape[0]
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels = batch["label"]
        logits = self.model(batch)
        loss = self.eval_loss_fn(logits, labels)
        preds = logits.argmax(-1)
        n = labels.shape[0]
        self.val_acc(preds, labels)
        self.val_ua(preds, labels)
        self.val_f1(preds, labels)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, batch_size=n)
        self.log("val/ua", self.val_ua, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val/macro_f1", self.val_f1, on_epoch=True, batch_size=n)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"probs": self.model(batch).float().softmax(-1), "index": batch["index"]}

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.Adam(
            self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        if hp.schedule == "cosine":
            lr_lambda = CosineWithWarmup(hp.warmup_epochs, hp.max_epochs)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
            }
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.lr_factor, patience=hp.lr_patience
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"},
        }


class CosineWithWarmup:
    """Epoch -> LR multiplier: linear warm-up over ``warmup`` epochs, then cosine decay reaching 0
    after ``total`` epochs. A class, not a closure, so the scheduler state stays picklable."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = max(0, int(warmup)), max(1, int(total))

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (epoch - self.warmup) / span)
        return 0.5 * (1.0 + float(np.cos(np.pi * progress)))
