"""Training: typed config, LightningModule, losses, augmentation, the run driver."""
