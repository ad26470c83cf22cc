"""Workflows over whole runs: ``crossval`` (``emorec train`` / ``resume``: folds trained, then
evaluated), ``compare`` (two recipes on one split), ``fusion`` (two trained models' embeddings
fused) and ``demo`` (a synthetic corpus end to end)."""
