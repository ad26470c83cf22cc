"""Media in: mono float32 audio from any file (``audio``), video frames and tracks (``video``),
the one silence rule (``silence``) and recording conditions applied to a waveform
(``conditions``). Nothing here knows about corpora, features or models."""
