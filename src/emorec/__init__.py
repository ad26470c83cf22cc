"""emorec: emotion recognition from speech and face video."""

__version__ = "0.1.0"
