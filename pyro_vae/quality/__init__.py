"""Sample quality without downloads: FID and precision/recall in the features of a small
classifier trained on the data set's own real images.

:mod:`.classifier` is the judge (trained once, cached), :mod:`.metrics` the math on
features, :mod:`.report` a trained model's samples and reconstructions against the test
set, beside the floor of real training images. ``pyro-vae evaluate RUN --sample-quality``
prints the report. These are classifier-feature FIDs, not Inception FIDs.
"""

from .classifier import CACHE, EPOCHS, Classifier, Judge, load_or_train, predict, test_accuracy
from .metrics import (
    FeatureMap, features, frechet_distance, frechet_distances, identity_features,
    precision_recall,
)
from .report import DEFAULT_SAMPLES, SETS, sample_quality

__all__ = [
    "CACHE", "DEFAULT_SAMPLES", "EPOCHS", "SETS", "Classifier", "FeatureMap", "Judge",
    "features", "frechet_distance", "frechet_distances", "identity_features", "load_or_train",
    "precision_recall", "predict", "sample_quality", "test_accuracy",
]
