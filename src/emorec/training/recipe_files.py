"""Recipe files as text: ``--set KEY=VALUE`` pairs read as YAML, the chain of ``base:`` files a
recipe is built from, and what differs between two resolved recipes (``emorec config show``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from emorec.errors import ConfigError


def yaml_problem(err: yaml.YAMLError) -> str:
    """``not valid YAML at line L, column C: PROBLEM`` (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def key_values(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["trim_floor_db=6", "deltas=true"]`` -> ``{"trim_floor_db": 6, "deltas": True}`` (values as
    YAML)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            settings[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{flag} {pair!r}: {yaml_problem(err)}") from None
    return settings


def recipe_chain(path: str | os.PathLike) -> list[Path]:
    """The recipe files ``path`` is built from, itself first, then its ``base:`` and that one's
    base."""
    chain, path = [], Path(path)
    while path.is_file() and path not in chain:
        chain.append(path)
        base = (yaml.safe_load(path.read_text()) or {}).get("base")
        if not base:
            break
        path = (path.parent / base).resolve()
    return chain


def differences(
    new: dict[str, Any], old: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` wherever two config dicts differ."""
    found = []
    for key in sorted(set(new) | set(old), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(b, a, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found
