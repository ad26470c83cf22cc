"""Config fields that carry their own allowed values: ``choice`` (one of some names) and
``ranged`` (a number within bounds). A config section declares each knob once, with its default
and what it may be; :func:`check_fields` reads those from the dataclass, so validation never
repeats a field's range in a second place.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from emorec.errors import ConfigError


def choice(default: str, options: tuple[str, ...]) -> Any:
    """A field whose value must be one of ``options``."""
    return dataclasses.field(default=default, metadata={"choices": tuple(options)})


def ranged(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
) -> Any:
    """A number within ``[low, high]`` (``(low`` / ``high)`` when open); ``None`` passes; a list or
    tuple has each item checked. ``what`` words the expectation in the error (default: the
    interval)."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "what": what}
    return dataclasses.field(default=default, metadata={"range": bounds})


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


def check_range(
    key: str,
    value: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
) -> None:
    """``value`` within ``[low, high]`` (``(low`` / ``high)`` when open); ``None`` passes."""
    if value is None:
        return
    bad = isinstance(value, float) and not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if low_open else value < low)
    if high is not None:
        bad = bad or (value >= high if high_open else value > high)
    if bad:
        if not what:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            what = (
                f"a value in {left}{'-inf' if low is None else low}, "
                f"{'inf' if high is None else high}{right}"
            )
        raise ConfigError(f"{key}: expected {what}, got {value!r}")


def check_fields(section: Any, prefix: str) -> None:
    """Each field of the dataclass instance ``section`` against its declared choices or range."""
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{prefix}.{f.name}"
        if "choices" in f.metadata:
            check_choice(key, str(value) if value is not None else value, f.metadata["choices"])
        elif "range" in f.metadata:
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    check_range(f"{key}[{i}]", item, **f.metadata["range"])
            # e.g. trainer.devices "auto" or "0,1": checked elsewhere
            elif not isinstance(value, str):
                check_range(key, value, **f.metadata["range"])
