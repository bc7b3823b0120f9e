"""What normal data looks like for a run: its reference statistics and saved thresholds.

A run's normal data is its training split (after ``--classes``/``--exclude-class``),
binarised once with a fixed seed for a ``--binarize dynamic`` run. The :class:`Reference`
of the ``latent`` and ``dose`` scores is fitted on up to ``reference_size`` training items
(a seeded draw); thresholds are quantiles of scores on the validation split
(``--val-fraction``), which training never saw. Both come from normal data only.
Thresholds are saved in ``RUN/anomaly.json`` (written atomically) with the settings
that produced them, so new data is scored and flagged the same way later.
"""

from pathlib import Path
from typing import Dict, Optional

import torch

from ..checkpoint import read_json, write_json
from ..data import binarize, split_validation

THRESHOLDS = "anomaly.json"
NORMAL_SEED = 20190


def _as_model_data(config, x: torch.Tensor) -> torch.Tensor:
    if config.binarize == "dynamic":
        return binarize(x, torch.Generator().manual_seed(NORMAL_SEED))
    return x


def normal_splits(run, reference_size: int = 10000, data=None):
    """``((x_ref, y_ref), (x_val, y_val) or None)``: normal items of ``run`` for the
    reference (a seeded draw of at most ``reference_size`` training items) and for
    thresholds (the run's validation split, ``None`` when it has none). ``data``: the
    run's data set already loaded (``prepare_data(run.config)``), else loaded here."""
    from ..train import prepare_data

    config = run.config
    data = prepare_data(config) if data is None else data
    x, y = data.x_train, data.y_train
    x_val = y_val = None
    if config.val_fraction:
        x, y, x_val, y_val = split_validation(x, y, config.val_fraction, seed=config.seed,
                                              name="val_fraction")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(NORMAL_SEED))
    pick = pick[:reference_size]
    reference = (_as_model_data(config, x[pick]), y[pick])
    validation = None if x_val is None else (_as_model_data(config, x_val), y_val)
    return reference, validation


def save_thresholds(folder, quantile: float, thresholds: Dict[str, float],
                    settings: Dict) -> Path:
    """Write ``RUN/anomaly.json``: the quantile, one threshold per score, the settings."""
    path = Path(folder) / THRESHOLDS
    write_json(path, {"quantile": quantile, "thresholds": thresholds, "settings": settings})
    return path


def load_thresholds(folder) -> Optional[Dict]:
    """The saved ``RUN/anomaly.json``, or ``None`` when thresholds were never calibrated."""
    path = Path(folder) / THRESHOLDS
    return read_json(path, "anomaly thresholds") if path.is_file() else None


def check_shape(run, x: torch.Tensor, name: str = "data") -> None:
    """One line naming ``name`` when ``x: [N, C, H, W]`` does not have the run's shape."""
    expected = tuple(run.model.x_shape)
    if x.dim() != 1 + len(expected) or tuple(x.shape[1:]) != expected:
        raise ValueError(f"{name}: items of shape {tuple(x.shape[1:])}, but the run was "
                         f"trained on {expected}; resize them (--image-size) or use other data")
