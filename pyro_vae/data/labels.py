"""Class labels: the check that labels are ``[N]`` integers in ``[0, num_classes)``, and the
balanced draw of the examples whose labels a semi-supervised run keeps."""

from typing import Optional

import torch

from ..checks import integer


def check_labels(y: torch.Tensor, num_classes: int, n: Optional[int] = None,
                 name: str = "labels") -> None:
    """Raise unless ``y`` is ``[n]`` integers in ``[0, num_classes)``."""
    if not torch.is_tensor(y) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor, got "
                        f"{y.dtype if torch.is_tensor(y) else type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name}: expected one dimension [N], got shape {list(y.shape)}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name}: expected {n} labels, one per example, got {len(y)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: expected classes in [0, {num_classes - 1}], got values in "
                         f"[{int(y.min())}, {int(y.max())}]")


def select_labels(y: torch.Tensor, num_labels: int, seed: int = 0,
                  num_classes: int = 10) -> torch.Tensor:
    """Indices of ``num_labels`` examples whose labels a semi-supervised run keeps.

    Balanced as in Kingma et al. (2014): ``num_labels // K`` examples of each of the
    ``K`` classes, and one more of each of ``num_labels % K`` classes drawn at
    random; within a class the examples are drawn at random. The same ``seed``
    gives the same indices. Returns sorted ``int64`` indices into ``y``.

    Raises ``ValueError`` when more labels are asked for than exist, overall or in
    one class.
    """
    num_classes = integer("num_classes", num_classes)
    check_labels(y, num_classes, name="y")
    num_labels = integer("num_labels", num_labels, minimum=0)
    if num_labels > len(y):
        raise ValueError(f"num_labels: expected at most the {len(y)} examples there are, "
                         f"got {num_labels}")
    generator = torch.Generator().manual_seed(seed)
    wanted = torch.full((num_classes,), num_labels // num_classes)
    wanted[torch.randperm(num_classes, generator=generator)[: num_labels % num_classes]] += 1
    chosen = []
    for c in range(num_classes):
        members = (y == c).nonzero().squeeze(1)
        if wanted[c] > len(members):
            raise ValueError(
                f"num_labels: {num_labels} labels spread over {num_classes} classes need "
                f"{int(wanted[c])} examples of class {c}, but there are {len(members)}"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[: wanted[c]]])
    return torch.cat(chosen).sort().values
