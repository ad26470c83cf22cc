"""emorec: emotion recognition from speech and face video.

    import emorec
    rec = emorec.load()              # the released model; emorec.load("runs/x/fold_1") for your own
    rec.predict("clip.wav")

The package root is the public facade: ``load`` imports the model stack on first use, so
``import emorec`` stays light.
"""

from emorec.version import __version__

__all__ = ["__version__", "load"]


def load(model=None, **kwargs):
    """A :class:`emorec.inference.api.Recognizer` for ``model`` (default: the released model); see
    :func:`emorec.inference.api.load`."""
    from emorec.inference.api import load as _load

    return _load(model, **kwargs)
