"""eGeMAPS v02 acoustic parameters through openSMILE (optional extra ``emorec[egemaps]``).

Licence: the ``opensmile`` Python package and the openSMILE binary it wraps are released by
audEERING under the openSMILE research licence, which permits **non-commercial** research,
education and personal use only; commercial use needs a licence from audEERING. Installing
the extra and using this extractor is the user's decision; emorec itself does not ship it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emorec.errors import ConfigError, EmorecError
from emorec.features.base import FeatureExtractor, register_extractor

LEVELS = ("lld", "functionals")


def _import_opensmile() -> Any:
    try:
        import opensmile
    except ImportError as err:
        raise EmorecError(
            f"the 'egemaps' extractor needs opensmile ({err}); install it with "
            "`pip install emorec[egemaps]` (openSMILE licence: non-commercial research use only)"
        ) from None
    return opensmile


@register_extractor
class EGeMAPS(FeatureExtractor):
    """eGeMAPSv02 via ``opensmile.Smile.process_signal(wave, sample_rate)``.

    ``level="lld"``: the 25 low-level descriptors, ``(T, 25)`` at 100 frames per second
    (10 ms hop; 60 ms pitch windows, so T is about ``100 * seconds - 5``).
    ``level="functionals"``: the 88 utterance-level functionals, ``(1, 88)``.

    Note: opensmile is licensed for non-commercial use only (audEERING research licence).
    """

    name = "egemaps"

    def __init__(self, *, level: str = "lld", sample_rate: int = 16000):
        if level not in LEVELS:
            raise ConfigError(f"egemaps: level must be one of {LEVELS}, not {level!r}")
        self.level = level
        self.sample_rate = int(sample_rate)
        self._smile: Any = None

    @property
    def frames_per_second(self) -> float:
        return 100.0 if self.level == "lld" else 0.0

    def _get_smile(self) -> Any:
        if self._smile is None:
            opensmile = _import_opensmile()
            feature_level = (
                opensmile.FeatureLevel.LowLevelDescriptors
                if self.level == "lld"
                else opensmile.FeatureLevel.Functionals
            )
            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=feature_level
            )
        return self._smile

    @property
    def feature_names(self) -> list[str]:
        return list(self._get_smile().feature_names)

    def extract(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` mono at ``sample_rate`` -> ``(T, 25)`` (lld) or ``(1, 88)``."""
        frame = self._get_smile().process_signal(
            np.asarray(wave, dtype=np.float32), self.sample_rate
        )
        return np.ascontiguousarray(frame.to_numpy(dtype=np.float32))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_smile"] = None  # rebuilt lazily in each worker process
        return state
