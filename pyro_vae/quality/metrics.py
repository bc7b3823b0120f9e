"""Sample-quality metrics in a feature space: the Frechet distance and k-NN precision/recall.

With features ``f(x)`` of real images ``R`` and generated images ``G``:

* **Frechet distance** (Heusel et al. 2017) between the Gaussians fitted to each set::

      FD = |mu_R - mu_G|^2 + tr(S_R + S_G - 2 (S_R S_G)^{1/2})

  computed by torchmetrics' ``FrechetInceptionDistance`` with ``f`` as its feature
  extractor (statistics accumulated in float64). With Inception-v3 pool features this
  is the FID; here ``f`` is the data set's own classifier, so the numbers are not
  comparable with published Inception FIDs.
* **Precision and recall** (Kynkaanniemi et al. 2019): the k-NN manifold of a set is the
  union of balls around each of its points with radius the distance to its k-th
  nearest neighbour in the set. Precision is the share of ``G`` inside the manifold of
  ``R`` (are samples realistic?); recall the share of ``R`` inside the manifold of ``G``
  (is the data's variety covered?).
"""

from typing import Callable, Dict

import torch
from torch import nn

K_NEIGHBOURS = 3  # Kynkaanniemi et al. 2019's choice


class FeatureMap(nn.Module):
    """``fn: [B, ...] -> [B, D]`` as a module with ``num_features = D``, the form of
    feature extractor torchmetrics' ``FrechetInceptionDistance`` takes."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], num_features: int):
        super().__init__()
        self.fn = fn
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x).flatten(1)


def identity_features(dim: int) -> FeatureMap:
    """Vectors ``[B, dim]`` as their own features."""
    return FeatureMap(lambda x: x, dim)


@torch.no_grad()
def features(extractor: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``extractor`` applied to ``x`` in batches: ``[N, D]`` float64."""
    return torch.cat([extractor(xb).double() for xb in x.split(batch_size)])


def _frechet_metric(extractor: nn.Module):
    from torchmetrics.image.fid import FrechetInceptionDistance  # slow to import: when used

    if not hasattr(extractor, "num_features"):
        raise ValueError("extractor: expected a module with num_features (see FeatureMap)")
    return FrechetInceptionDistance(feature=extractor, reset_real_features=False)


@torch.no_grad()
def frechet_distances(extractor: nn.Module, real: torch.Tensor, fakes: Dict[str, torch.Tensor],
                      batch_size: int = 500) -> Dict[str, float]:
    """The Frechet distance (module docstring) between ``real: [N, ...]`` and each of
    ``fakes`` (name -> ``[M, ...]``) in the features of ``extractor``; the real set's
    statistics are computed once. Each set needs at least 2 items."""
    for name, x in {"real": real, **fakes}.items():
        if len(x) < 2:
            raise ValueError(f"{name}: the Frechet distance needs at least 2 items, got {len(x)}")
    metric = _frechet_metric(extractor).to(real.device)
    for xb in real.split(batch_size):
        metric.update(xb, real=True)
    distances = {}
    for name, x in fakes.items():
        metric.reset()  # the fake statistics only (reset_real_features=False)
        for xb in x.split(batch_size):
            metric.update(xb, real=False)
        distances[name] = float(metric.compute())
    return distances


def frechet_distance(extractor: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    """The Frechet distance between sets ``a`` and ``b`` in the features of ``extractor``."""
    return frechet_distances(extractor, a, {"b": b})["b"]


def knn_radii(f: torch.Tensor, k: int = K_NEIGHBOURS, chunk: int = 1000) -> torch.Tensor:
    """``[N]``: the distance from each row of ``f: [N, D]`` to its k-th nearest other row."""
    if not 0 < k < len(f):
        raise ValueError(f"k: expected 0 < k < {len(f)} (the set's size), got {k}")
    # The (k+1)-th smallest distance of a row counts the row itself, at distance 0.
    return torch.cat([torch.cdist(c, f).kthvalue(k + 1, dim=1).values for c in f.split(chunk)])


def manifold_share(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor,
                   chunk: int = 1000) -> float:
    """Share of the rows of ``query: [M, D]`` within ``radii[j]`` of some row ``j`` of
    ``ref: [N, D]``: inside the k-NN manifold of ``ref``."""
    inside = [(torch.cdist(c, ref) <= radii).any(dim=1) for c in query.split(chunk)]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor,
                     k: int = K_NEIGHBOURS) -> Dict[str, float]:
    """Kynkaanniemi et al. 2019's precision and recall of features ``fake: [M, D]``
    against ``real: [N, D]`` (module docstring); both in [0, 1]."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"fake: expected features of {list(real.shape[1:])}, "
                         f"got {list(fake.shape[1:])}")
    real, fake = real.double(), fake.double()
    return {"precision": manifold_share(fake, real, knn_radii(real, k)),
            "recall": manifold_share(real, fake, knn_radii(fake, k))}
