"""Errors a user can read: one line that names the thing and the reason."""

from __future__ import annotations

from dataclasses import dataclass


class EmorecError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits 2."""


class BadInputError(EmorecError):
    """A single file cannot be used. Batch jobs catch it, list the file and go on."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LeakageError(EmorecError):
    """A split puts the same speaker or the same audio on both sides."""


class ConfigError(EmorecError):
    """Unknown key, wrong type or impossible value in a config."""


@dataclass(frozen=True)
class SkippedFile:
    """A file a batch job left out, and why (written to ``skipped.csv``)."""

    path: str
    reason: str
    stage: str = ""
