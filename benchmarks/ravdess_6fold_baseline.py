"""Classical baseline on the standard RAVDESS 6 speaker-independent folds.

eGeMAPS functionals (88 per clip, opensmile) + logistic regression. The regularisation C is
chosen on each fold's validation speakers (drawn from its training speakers); the test
actors are predicted once, by the model refitted on train+val with that C.

    python benchmarks/ravdess_6fold_baseline.py [--features egemaps|mfcc_stats]

The RAVDESS defaults of ``crossval.py --baseline`` (which has the code and works for any corpus).
"""

from __future__ import annotations

import sys

from common import RESULTS
from crossval import main

if __name__ == "__main__":
    features = sys.argv[sys.argv.index("--features") + 1] if "--features" in sys.argv else "egemaps"
    main(default_corpus="ravdess", default_out=str(RESULTS / "ravdess_6fold_baseline.json"), argv=["--baseline", features])
