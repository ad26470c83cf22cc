"""RAVDESS speech, 8 classes, the standard 6 speaker-independent folds: log-mel + Attention CRNN.

Inductive: normalisation statistics come from each fold's training actors, checkpoints are
chosen on validation actors drawn from the training actors, the 4 test actors are read once.

    python benchmarks/ravdess_6fold.py [--config configs/ravdess_attn_crnn_cosine.yaml] [--speaker-norm] [--jobs 2]

The RAVDESS defaults of ``crossval.py`` (which has the code). The default recipe is the headline's; results go to ``results/ravdess_6fold.json`` unless ``--out``,
and every fold's validation and test probabilities to ``results/predictions/<out name>.csv.gz``
(what ``ravdess_ensemble.py`` averages once the run directories are gone).

``--jobs N`` trains the folds in N processes of one thread each (on a 2-core machine two
single-thread processes train ~1.4x faster than one two-thread process) and merges their folds.
On a GPU machine the processes share the GPU: on one H100 with 16 cores, ``--jobs 6`` for two
recipes at once (12 processes) trained each 60-epoch fold in about 4 minutes (``train_seconds``
in ``results/search/*.json``), against about 20 minutes per fold on the 2-core CPU.

``--speaker-norm`` (per-speaker standardisation, which reads the test actors' unlabelled clips)
is transductive; its result goes to a separate file and is never the headline.
"""

from __future__ import annotations

import sys

from common import REPO, RESULTS
from crossval import main

if __name__ == "__main__":
    name = "ravdess_6fold_speaker_norm.json" if "--speaker-norm" in sys.argv else "ravdess_6fold.json"
    main(default_corpus="ravdess", default_config=str(REPO / "configs" / "ravdess_attn_crnn_cosine.yaml"),
         default_out=str(RESULTS / name))
