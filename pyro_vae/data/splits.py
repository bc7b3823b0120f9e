"""Seeded splits stratified by class (the held-out test set, the validation set), and the
class filters that apply to the training split only."""

from typing import List, Optional, Tuple

import numpy as np
import torch

from ..checks import positive_number
from .dataset import ImageData


def _split_indices(y: torch.Tensor, fraction: float, seed: int,
                   name: str, part: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sorted indices (kept, held out): a seeded draw of ``round(N * fraction)`` examples,
    spread over the classes of ``y`` in proportion (largest remainder)."""
    n = len(y)
    held = round(n * fraction)
    if held == 0 or held == n:
        raise ValueError(f"{name}: {fraction} of {n} examples leaves the "
                         f"{part if held == 0 else 'training'} set empty")
    classes, counts = torch.unique(y, return_counts=True)
    quota = counts.double() * fraction
    take = quota.floor().long()
    order = sorted(range(len(classes)), key=lambda k: (-(quota[k] - take[k]).item(), k))
    for k in order[: max(0, held - int(take.sum()))]:
        take[k] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c, k in zip(classes, take):
        members = (y == c).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.cat(chosen)] = True
    return (~mask).nonzero().squeeze(1), mask.nonzero().squeeze(1)


def _fraction(name: str, value) -> float:
    value = positive_number(name, value)
    if value >= 1:
        raise ValueError(f"{name}: expected a fraction in (0, 1), got {value!r}")
    return value


def split_validation(x: torch.Tensor, y: Optional[torch.Tensor], fraction: float,
                     seed: int = 0, name: str = "fraction"):
    """Hold out ``round(N * fraction)`` examples of ``x: [N, ...]`` (and ``y: [N]``).

    Returns ``(x_train, y_train, x_val, y_val)`` (``y_*`` ``None`` when ``y`` is). The
    draw is seeded and stratified by ``y`` (unlabelled ``-1`` is one group); both parts
    keep their original order. ``name`` is the argument named in errors (a trainer
    passes ``"val_fraction"``). Raises ``ValueError`` for a fraction outside (0, 1) or
    one that leaves either side empty.
    """
    fraction = _fraction(name, fraction)
    if y is not None and len(y) != len(x):
        raise ValueError(f"y: expected {len(x)} labels, one per example, got {len(y)}")
    groups = y if y is not None else torch.zeros(len(x), dtype=torch.int64)
    keep, held = _split_indices(groups, fraction, seed, name, "validation")
    if y is None:
        return x[keep], None, x[held], None
    return x[keep], y[keep], x[held], y[held]


def _class_ids(name: str, values, num_classes: int, class_names) -> List[int]:
    if num_classes == 0:
        raise ValueError(f"{name}: the data is unlabelled (num_classes 0), so it has no classes")
    ids = []
    for value in values:
        if isinstance(value, str) and class_names and value in class_names:
            ids.append(class_names.index(value))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
                and 0 <= value < num_classes:
            ids.append(int(value))
        else:
            known = f"0..{num_classes - 1}" + (f" or one of {class_names}" if class_names else "")
            raise ValueError(f"{name}: expected labels in {known}, got {value!r}")
    return ids


def _filter_training(data: ImageData, classes, exclude_classes) -> ImageData:
    """Keep the training images of ``classes`` and not of ``exclude_classes``."""
    if classes is None and exclude_classes is None:
        return data
    keep = torch.ones(len(data.y_train), dtype=torch.bool)
    if classes is not None:
        ids = _class_ids("classes", classes, data.num_classes, data.class_names)
        keep &= torch.isin(data.y_train, torch.tensor(ids, dtype=torch.int64))
    if exclude_classes is not None:
        ids = _class_ids("exclude_classes", exclude_classes, data.num_classes, data.class_names)
        keep &= ~torch.isin(data.y_train, torch.tensor(ids, dtype=torch.int64))
    if not keep.any():
        name = "classes" if classes is not None else "exclude_classes"
        raise ValueError(f"{name}: no training images left after keeping {classes} and "
                         f"excluding {exclude_classes}")
    data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    return data
