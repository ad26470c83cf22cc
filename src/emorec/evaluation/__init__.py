"""Evaluation: metrics (WA, UA, macro-F1, ROC-AUC, bootstrap CI), plots and reports.

``metrics`` is imported eagerly; ``plots`` and ``report`` (which import matplotlib and select
the headless Agg backend) are loaded on first use of one of their names, so that importing
the metrics alone neither costs a matplotlib import nor changes the plotting backend.
"""

from __future__ import annotations

import importlib
from typing import Any

from emorec.evaluation.metrics import bootstrap_ci, classification_metrics, summarise_folds

_LAZY = {
    "plot_confusion_matrix": "plots",
    "plot_roc_curves": "plots",
    "plot_history": "history_plot",
    "plot_fold_summary": "plots",
    "read_metrics_csv": "history_plot",
    "write_report": "report",
    "write_cv_summary": "report",
    "SPEAKER_DEPENDENT_WARNING": "report_markdown",
}

__all__ = ["bootstrap_ci", "classification_metrics", "summarise_folds", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"emorec.evaluation.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'emorec.evaluation' has no attribute {name!r}")
