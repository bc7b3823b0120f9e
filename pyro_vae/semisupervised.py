"""Partially labelled data: which labels to keep, and how to batch the two halves.

A partially labelled training set is ``(x, y)`` with ``y = -1`` where the label is
missing (scikit-learn's convention for semi-supervised estimators).
:func:`keep_labels` makes one from a labelled set; :class:`InterleavedBatches` is a
batching policy for :func:`pyro_vae.infer.fit` that yields labelled batches
``(x, y)`` and unlabelled batches ``(x,)``, so a model sees ``model(x, y)`` or
``model(x)`` and decides what a missing label means (:class:`~pyro_vae.models.M2`).
"""

import math
from typing import List, Optional, Tuple

import torch

MISSING = -1


def keep_labels(y: torch.Tensor, num_labels: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A copy of ``y: [N]`` keeping ``num_labels`` labels, balanced over the classes.

    Each class keeps ``num_labels // num_classes`` labels (the remainder goes to
    classes drawn by ``seed``), at positions drawn by ``seed``; every other entry
    becomes ``-1``.
    """
    if isinstance(num_labels, bool) or int(num_labels) != num_labels or num_labels < 0:
        raise ValueError(f"labels: expected a non-negative integer, got {num_labels!r}")
    if num_labels > len(y):
        raise ValueError(f"labels: asked for {num_labels} labels, the training set has {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    per_class = torch.full((num_classes,), num_labels // num_classes)
    per_class[torch.randperm(num_classes, generator=generator)[: num_labels % num_classes]] += 1
    kept = torch.full_like(y, MISSING)
    for k in range(num_classes):
        members = (y == k).nonzero().squeeze(-1)
        if len(members) < per_class[k]:
            raise ValueError(
                f"labels: {num_labels} balanced labels need {per_class[k].item()} of class "
                f"{k}, the training set has {len(members)}"
            )
        chosen = members[torch.randperm(len(members), generator=generator)[: per_class[k]]]
        kept[chosen] = y[chosen]
    return kept


class InterleavedBatches:
    """Batching policy for :func:`~pyro_vae.infer.fit` on a partially labelled ``(x, y)``.

    An epoch is one shuffled pass over the unlabelled images in batches ``(x_u,)`` of
    ``batch_size``; a labelled batch ``(x_l, y_l)`` of ``labelled_batch_size``
    (default ``batch_size``, at most the number of labels) follows every
    ``unlabelled_per_labelled``-th of them and the last one. Labelled batches run
    through the labelled images in a fresh shuffled order each pass, so with few
    labels each is seen many times per epoch. Without unlabelled images an epoch is
    one pass over the labelled ones; without labels, the unlabelled pass alone.

    As every step's loss is a sum over its batch, the default (one labelled batch per
    unlabelled batch, both of ``B`` images) weights each labelled image's terms about
    ``N_u / N_l`` times as much as an unlabelled image's. ``unlabelled_per_labelled``
    at least the number of unlabelled batches gives one labelled batch per epoch.
    """

    def __init__(
        self,
        batch_size: int = 128,
        labelled_batch_size: Optional[int] = None,
        unlabelled_per_labelled: int = 1,
    ):
        for name, value in (("batch_size", batch_size),
                            ("labelled_batch_size", labelled_batch_size or 1),
                            ("unlabelled_per_labelled", unlabelled_per_labelled)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.batch_size = int(batch_size)
        self.labelled_batch_size = labelled_batch_size
        self.unlabelled_per_labelled = int(unlabelled_per_labelled)

    def __call__(
        self, data: Tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> List[Tuple[torch.Tensor, ...]]:
        x, y = data

        def shuffled(idx: torch.Tensor) -> torch.Tensor:
            return idx[torch.randperm(len(idx), generator=generator)]

        def labelled_batch(idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            idx = idx.to(x.device)
            return x[idx], y[idx]

        labelled = (y != MISSING).nonzero().squeeze(-1).cpu()
        unlabelled = (y == MISSING).nonzero().squeeze(-1).cpu()
        if not len(unlabelled):  # fully labelled: one pass
            return [labelled_batch(idx) for idx in shuffled(labelled).split(self.batch_size)]
        unlabelled_batches = shuffled(unlabelled).split(self.batch_size)
        if not len(labelled):
            return [(x[idx.to(x.device)],) for idx in unlabelled_batches]

        # Enough shuffled passes over the labelled images to fill one batch per slot.
        size = min(self.labelled_batch_size or self.batch_size, len(labelled))
        slots = math.ceil(len(unlabelled_batches) / self.unlabelled_per_labelled)
        passes = math.ceil(slots * size / len(labelled))
        stream = torch.cat([shuffled(labelled) for _ in range(passes)])
        labelled_batches = list(stream[: slots * size].split(size))

        out: List[Tuple[torch.Tensor, ...]] = []
        for i, idx in enumerate(unlabelled_batches, start=1):
            out.append((x[idx.to(x.device)],))
            if i % self.unlabelled_per_labelled == 0 or i == len(unlabelled_batches):
                out.append(labelled_batch(labelled_batches.pop(0)))
        return out
