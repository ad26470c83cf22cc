"""Models that ship inside the package: one folder each (``model.safetensors``, ``model.json``,
``MODEL_CARD.md``), found without a download. :data:`DEFAULT` is what ``emorec.load()`` and
``emorec predict`` without a model use."""

from __future__ import annotations

from pathlib import Path

from emorec.errors import EmorecError
from emorec.inference.model_files import MODEL_META

HERE = Path(__file__).resolve().parent
DEFAULT = "emorec-voice-encoder-multicorpus"


def released_models() -> list[str]:
    """Names of the released models this installation holds."""
    return sorted(p.parent.name for p in HERE.glob(f"*/{MODEL_META}"))


def released_model_dir(name: str) -> Path | None:
    path = HERE / name
    return path if (path / MODEL_META).is_file() else None


def default_model_dir() -> Path:
    path = released_model_dir(DEFAULT)
    if path is None:
        raise EmorecError(
            f"this installation holds no released model {DEFAULT!r} (released: "
            f"{', '.join(released_models()) or 'none'}); give a trained model's folder"
        )
    return path
