"""The containers of loaded images: :class:`ImageData`, what :func:`load_dataset` returns,
and ``_Loaded``, what each reader (IDX, arrays, image folders) hands to it."""

from dataclasses import dataclass
from typing import List, NamedTuple, Optional

import torch


@dataclass
class ImageData:
    """A train/test split of images.

    ``x_*: [N, C, H, W]`` float32 (in [0, 1] for bytes and images; floats as stored);
    ``y_*: [N]`` int64 in ``[0, num_classes)``, or all ``-1`` with ``num_classes = 0``
    for unlabelled data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10
    class_names: Optional[List[str]] = None  # label k is class_names[k]; None: no names
    source: Optional[str] = None  # the name or path it was loaded from
    test_fraction: Optional[float] = None  # held out by a seeded split; None: source's own

    @property
    def x_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0


class _Loaded(NamedTuple):
    """What a reader returns: a test set and labels only where the source has them."""

    x_train: torch.Tensor
    y_train: Optional[torch.Tensor]
    x_test: Optional[torch.Tensor]
    y_test: Optional[torch.Tensor]
    class_names: Optional[List[str]] = None
