"""Where a trained model lives on disk: ``model.safetensors`` (weights) + ``model.json`` (how
to rebuild it). Below the models, so an architecture can start from saved weights without
importing inference; never a pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emorec.errors import EmorecError

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"


def find_model_dir(path: str | os.PathLike) -> Path:
    """A fold dir, a run dir with one fold, or the model.safetensors file itself."""
    path = Path(path)
    if path.is_file() and path.name == MODEL_WEIGHTS:
        path = path.parent
    if (path / MODEL_META).is_file():
        return path
    folds = sorted(path.glob(f"fold_*/{MODEL_META}"))
    if len(folds) == 1:
        return folds[0].parent
    if len(folds) > 1:
        raise EmorecError(f"{path}: a cross-validation run with {len(folds)} folds; name one, e.g. {folds[0].parent}")
    raise EmorecError(f"{path}: no trained model here (expected {MODEL_META} + {MODEL_WEIGHTS})")


def read_model_files(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, state_dict)`` of a model directory (safetensors only)."""
    from safetensors.torch import load_file

    return json.loads((model_dir / MODEL_META).read_text()), load_file(str(model_dir / MODEL_WEIGHTS))
