"""Anomaly and out-of-distribution detection with a trained model.

:class:`Scorer` gives per-item scores (higher means more anomalous; the list in
:mod:`pyro_vae.anomaly.scores`), :mod:`~pyro_vae.anomaly.metrics` measures how well a
score separates normal items from anomalies and cuts it at a quantile of normal data,
and :func:`typicality_test` tests whole batches. ``pyro-vae score`` runs all of it on a
run folder. See ``docs/anomaly.md``.
"""

from .compress import COMPRESSORS, compressed_bits
from .metrics import auprc, auroc, detection_metrics, fpr_at_tpr, quantile_threshold, typicality_test
from .scores import SCORES, Reference, Scorer, posterior_mean

__all__ = [
    "COMPRESSORS", "SCORES", "Reference", "Scorer", "auprc", "auroc", "compressed_bits",
    "detection_metrics", "fpr_at_tpr", "posterior_mean", "quantile_threshold", "typicality_test",
]
