"""Trained model on disk (safetensors + JSON, never a pickle) -> probabilities for files.

``model.safetensors`` holds the architecture's weights; ``model.json`` holds what is needed to
rebuild it and to turn a media file into its input: model name and arguments, class names,
feature extractor configs and normalisation statistics.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from safetensors.torch import load_file, save_file

from emorec.atomic import publish
from emorec.data import Normalizer, missing_modality_frames, pad_collate
from emorec.errors import BadInputError, EmorecError, SkippedFile
from emorec.features.base import (
    extractor_from_spec,
    resolve_bundled,
    split_frame_mask,
    validate_features,
)
from emorec.inference.model_files import MODEL_META, MODEL_WEIGHTS, ModelMeta, find_model_dir
from emorec.models import create_model

__all__ = [
    "MODEL_META",
    "MODEL_WEIGHTS",
    "EnsemblePredictor",
    "Predictor",
    "export_model",
    "find_model_dir",
]


def export_model(
    module: Any,
    out_dir: Path,
    *,
    class_names: Sequence[str],
    feature_specs: dict[str, dict],
    normalizers: dict[str, Normalizer],
    speaker_norm: bool = False,
    extra: dict | None = None,
) -> None:
    hp = module.hparams
    # the files an extractor reads (an encoder's weights)
    # go into the folder, so the model travels whole
    feature_specs = {
        m: {**spec, **extractor_from_spec(spec).bundle(out_dir)}
        for m, spec in feature_specs.items()
    }
    meta = ModelMeta.from_dict(
        {
            "model": hp.model_name,
            "model_kwargs": dict(hp.model_kwargs),
            "num_classes": hp.num_classes,
            "audio_dim": hp.audio_dim,
            "video_dim": hp.video_dim,
            "class_names": list(class_names),
            "features": feature_specs,
            "normalizers": {m: n.to_dict() for m, n in normalizers.items()},
            "speaker_norm": speaker_norm,
            **(extra or {}),
        }
    )
    tmp = out_dir / f".{MODEL_WEIGHTS}.tmp"
    state = {k: v.detach().cpu().contiguous() for k, v in module.model.state_dict().items()}
    save_file(state, str(tmp))
    publish(tmp, out_dir / MODEL_WEIGHTS)
    meta.write(out_dir)


@dataclass
class Predictor:
    model: torch.nn.Module
    meta: ModelMeta

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Predictor":
        model_dir = find_model_dir(path)
        meta = ModelMeta.read(model_dir)
        meta.features = {m: resolve_bundled(spec, model_dir) for m, spec in meta.features.items()}
        model = create_model(
            meta.model,
            num_classes=meta.num_classes,
            audio_dim=meta.audio_dim,
            video_dim=meta.video_dim,
            **meta.model_kwargs,
        )
        model.load_state_dict(load_file(str(model_dir / MODEL_WEIGHTS)))
        model.eval()
        return cls(model=model, meta=meta)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    def normalizers(self) -> dict[str, Normalizer]:
        return {m: Normalizer.from_dict(d) for m, d in self.meta.normalizers.items()}

    @property
    def temperature(self) -> float:
        """The temperature scaling fitted on validation clips at export (1.0 for models without
        one)."""
        return self.meta.temperature

    @torch.inference_mode()
    def predict_items(self, items: Sequence[dict], batch_size: int = 32) -> np.ndarray:
        """``items`` as a dataset yields them -> calibrated probabilities ``(N, C)``:
        ``softmax(logits / T)``."""
        out = []
        for start in range(0, len(items), batch_size):
            batch = pad_collate(items[start : start + batch_size])
            out.append((self.model(batch).float() / self.temperature).softmax(-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def features_for_file(self, path: str | os.PathLike) -> dict:
        """One file -> a dataset-style item. With several modalities, one the file lacks (a video
        without an audio track) is a missing modality: one invalid zero frame, as in training;
        only a file with none of them is a :class:`BadInputError`."""
        return self._item(lambda extractor: extractor.extract_file(path))

    def features_for_wave(self, wave: np.ndarray, name: str = "<samples>") -> dict:
        """Mono samples ``(n,)`` at the model's sample rate -> a dataset-style item (audio-only
        models)."""
        if any(extractor.modality != "audio" for extractor in self._front_end()[0].values()):
            raise EmorecError("this model reads video: give it a file, not samples")
        return self._item(lambda extractor: validate_features(name, extractor.extract(wave)))

    def _front_end(self) -> tuple[dict, dict]:
        """Each modality's extractor and the normalisers, built once per predictor (a mel filterbank
        and float arrays from JSON are a measurable share of one clip's prediction)."""
        cached = self.__dict__.get("_front")
        if cached is None:
            cached = self.__dict__["_front"] = (
                {m: extractor_from_spec(spec) for m, spec in self.meta["features"].items()},
                self.normalizers(),
            )
        return cached

    def _item(self, extract) -> dict:
        extractors, norms = self._front_end()
        item: dict = {"label": -1, "index": 0}
        specs = self.meta["features"]
        errors: list[BadInputError] = []
        for modality, spec in specs.items():
            extractor = extractors[modality]
            try:
                features, valid = split_frame_mask(spec["name"], extract(extractor))
            except BadInputError as err:
                if len(specs) == 1:
                    raise
                errors.append(err)
                features, valid = missing_modality_frames(self.meta[f"{modality}_dim"])
            if modality in norms:
                features = norms[modality](features, valid=valid)
            if valid is not None:
                features = np.where(valid[:, None], features, 0.0).astype(np.float32)
                item[f"{modality}_valid"] = torch.from_numpy(valid)
            item[modality] = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        if len(errors) == len(specs):
            raise errors[0]
        return item

    @property
    def audio_only(self) -> bool:
        return set(self.meta["features"]) == {"audio"}

    @property
    def sample_rate(self) -> int:
        return int(self.meta["features"].get("audio", {}).get("sample_rate", 16000))

    def predict_files(
        self, paths: Sequence[str | os.PathLike], answers: dict | None = None
    ) -> tuple[list[tuple[str, np.ndarray]], list[SkippedFile]]:
        """Probabilities for each readable file; unreadable ones are listed, not fatal. An audio
        model answers through :func:`emorec.inference.long_input.answer_files`, as every backend
        does (input longer than a training clip windowed over its speech, its
        :class:`~emorec.inference.long_input.WindowedAnswer` in ``answers[path]``); a model that
        reads video takes each file whole."""
        from emorec.inference.long_input import answer_files, check_length
        from emorec.media.audio import probe_duration

        whole = lambda path: self.predict_items([self.features_for_file(path)])[0]  # noqa: E731
        if self.audio_only:
            return answer_files(self, paths, answers, whole_clip=whole)
        results, skipped = [], []
        for path in paths:
            try:
                # precomputed-feature extractors look files up by name instead
                if os.path.exists(path):
                    check_length(path, probe_duration(path))
                results.append((str(path), whole(path)))
            except BadInputError as err:
                skipped.append(SkippedFile(err.path, err.reason, "predict"))
        return results, skipped

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Mono waveforms at the model's rate -> calibrated probabilities ``(N, C)`` in input order.
        Clips are batched by length (little padding); masks make the result batch-independent."""
        items = [self.features_for_wave(w) for w in waves]
        order = sorted(range(len(items)), key=lambda i: items[i]["audio"].shape[0])
        out = np.zeros((len(items), len(self.class_names)), np.float32)
        for start in range(0, len(order), max(1, batch_size)):
            chosen = order[start : start + max(1, batch_size)]
            out[chosen] = self.predict_items([items[i] for i in chosen], batch_size=len(chosen))
        return out


@dataclass
class EnsemblePredictor:
    """Several exported models over the same classes; probabilities averaged with equal weights.

    Each member turns a file into its own input (its features and normalisation), so members
    may differ in features as well as architecture. A file any member cannot read is skipped.
    """

    members: list[Predictor]

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike]) -> "EnsemblePredictor":
        members = [Predictor.load(p) for p in paths]
        for path, member in zip(paths[1:], members[1:]):
            if member.class_names != members[0].class_names:
                raise EmorecError(
                    f"{path}: classes {member.class_names} differ from {paths[0]}'s "
                    f"{members[0].class_names}"
                )
        return cls(members=members)

    @property
    def class_names(self) -> list[str]:
        return self.members[0].class_names

    @property
    def audio_only(self) -> bool:
        return all(m.audio_only for m in self.members)

    @property
    def sample_rate(self) -> int:
        return self.members[0].sample_rate

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """The members' mean probabilities ``(N, C)`` (each member reads the waves at its own
        rate)."""
        rate = self.sample_rate
        return np.mean(
            [
                m.probabilities(
                    waves
                    if m.sample_rate == rate
                    else [soxr.resample(w, rate, m.sample_rate).astype(np.float32) for w in waves],
                    batch_size,
                )
                for m in self.members
            ],
            axis=0,
        )

    def predict_files(
        self, paths: Sequence[str | os.PathLike], answers: dict | None = None
    ) -> tuple[list[tuple[str, np.ndarray]], list[SkippedFile]]:
        """The members' mean probabilities: audio members through the one path of every backend
        (long input windowed once, over the mean); with a video member, each member's own answers
        averaged."""
        if self.audio_only:
            from emorec.inference.long_input import answer_files

            return answer_files(
                self,
                paths,
                answers,
                whole_clip=lambda path: np.mean(
                    [m.predict_items([m.features_for_file(path)])[0] for m in self.members], axis=0
                ),
            )
        per_member = [
            member.predict_files(paths, answers if i == 0 else None)
            for i, member in enumerate(self.members)
        ]
        skipped = {s.path: s for _, member_skipped in per_member for s in member_skipped}
        probs = [dict(results) for results, _ in per_member]
        results = [
            (str(p), np.mean([m[str(p)] for m in probs], axis=0))
            for p in paths
            if all(str(p) in m for m in probs)
        ]
        return results, list(skipped.values())
