"""What a run folder says: ``metrics.csv`` one row per epoch (``epochs``), how the kept weights
were made (``kept``), ``run.json`` and the fold directories (``folder``), the status of a run and
its folds (``status``) and the live views of ``emorec monitor`` and ``emorec runs``
(``monitor``). Training writes these files; evaluation, the workflows and the CLI read them."""
