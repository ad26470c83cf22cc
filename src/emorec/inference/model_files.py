"""Where a trained model lives on disk: ``model.safetensors`` (weights) + ``model.json`` (how
to rebuild it). Below the models, so an architecture can start from saved weights without
importing inference; never a pickle."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
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
        raise EmorecError(
            f"{path}: a cross-validation run with {len(folds)} folds; name "
            f"one, e.g. {folds[0].parent}"
        )
    raise EmorecError(f"{path}: no trained model here (expected {MODEL_META} + {MODEL_WEIGHTS})")


def read_model_files(model_dir: Path) -> tuple["ModelMeta", dict[str, Any]]:
    """``(meta, state_dict)`` of a model directory (safetensors only)."""
    from safetensors.torch import load_file

    return ModelMeta.read(model_dir), load_file(str(model_dir / MODEL_WEIGHTS))


@dataclass
class ModelMeta(MutableMapping):
    """What ``model.json`` holds, typed: how to rebuild a trained model (architecture, sizes), read
    its input (front end, normalisers), turn its logits into probabilities (calibration), and how
    its weights were made (``record``: fold, epochs, validation scores, weight average ...).

    The one reader (:meth:`read`) and writer (:meth:`write`, atomic) of the file, whose layout stays
    the flat JSON object it has always been: unknown keys of an older or newer file land in
    ``record`` and are written back as they were. Mapping access (``meta["features"]``,
    ``meta.get("best_epoch")``) reads the same values, for callers that treat it as the dict it was.
    """

    model: str  # registry name of the architecture
    num_classes: int
    class_names: list[str]
    features: dict[str, dict[str, Any]]  # modality -> extractor spec ({"name": "logmel", ...})
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    audio_dim: int | None = None  # feature sizes the model was built for
    video_dim: int | None = None
    # modality -> Normalizer.to_dict()
    normalizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    speaker_norm: bool = False  # transductive: statistics of each speaker's own clips
    calibration: dict[str, Any] | None = None  # {"temperature": T, ...} fitted on validation clips
    format: int = 1
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "record")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelMeta":
        known = {k: v for k, v in data.items() if k in cls.fields()}
        missing = [k for k in ("model", "num_classes", "class_names", "features") if k not in known]
        if missing:
            raise EmorecError(
                f"model.json lacks {', '.join(missing)}: not a model file emorec wrote"
            )
        return cls(**known, record={k: v for k, v in data.items() if k not in cls.fields()})

    @classmethod
    def read(cls, model_dir: str | os.PathLike) -> "ModelMeta":
        path = Path(model_dir) / MODEL_META
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise EmorecError(
                f"{Path(model_dir)}: no trained model here (no {MODEL_META})"
            ) from None
        except json.JSONDecodeError as err:
            raise EmorecError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        return cls.from_dict(data)

    @staticmethod
    def peek(model_dir: str | os.PathLike) -> dict[str, Any]:
        """The file's keys as they stand, ``{}`` when it is absent or unreadable: for views of runs
        in progress (``emorec runs``, ``monitor``), which show what is there and never fail on
        it."""
        try:
            data = json.loads((Path(model_dir) / MODEL_META).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            **{k: getattr(self, k) for k in self.fields() if k != "format"},
            **self.record,
        }

    def write(self, model_dir: str | os.PathLike) -> Path:
        from emorec.atomic import write_json

        path = Path(model_dir) / MODEL_META
        write_json(path, self.to_dict())
        return path

    @property
    def temperature(self) -> float:
        """The calibration temperature (1.0 for a model without one)."""
        return float((self.calibration or {}).get("temperature", 1.0))

    # -- the mapping view -------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self.fields():
            return getattr(self, key)
        return self.record[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.fields():
            setattr(self, key, value)
        else:
            self.record[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self.fields():
            raise KeyError(f"{key} is part of every model.json")
        del self.record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.fields()) + len(self.record)
