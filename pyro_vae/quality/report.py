"""The sample quality of a trained model: its samples and its reconstructions against the
real test images, beside the floor that real training images reach against them.

Every comparison uses ``n`` images on each side and the same ``n`` test images, so the
numbers differ only by what is compared: a model whose samples were as good as real
images would reach the floor (which is above 0, from sampling noise alone, and falls as
``n`` grows: compare only numbers of the same ``n``).
"""

from typing import Callable, Dict, Optional

import torch
from torch import nn

from .classifier import Judge, load_or_train
from .metrics import K_NEIGHBOURS, FeatureMap, features, frechet_distances, precision_recall

DEFAULT_SAMPLES = 2000
SETS = ("samples", "reconstructions", "train_floor")


def _in_batches(make: Callable[[int, slice], torch.Tensor], n: int,
                batch_size: int) -> torch.Tensor:
    return torch.cat([make(min(batch_size, n - i), slice(i, i + batch_size))
                      for i in range(0, n, batch_size)])


@torch.no_grad()
def compared_sets(model: nn.Module, data, n: int, seed: int = 0,
                  batch_size: int = 500) -> Dict[str, torch.Tensor]:
    """``"real"``: ``n`` test images drawn without replacement (seeded); ``"samples"``:
    ``model.generate``; ``"reconstructions"``: of those test images; ``"train_floor"``:
    ``n`` training images. Each ``[n, C, H, W]`` on the model's device."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    test = torch.randperm(len(data.x_test), generator=generator)[:n]
    train = torch.randperm(len(data.x_train), generator=generator)[:n]
    x, y = data.x_test[test].to(device), data.y_test[test].to(device)
    labels = model.uses_labels
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        samples = _in_batches(lambda b, _: model.generate(b), n, batch_size)
    recon = _in_batches(lambda _, s: model.reconstruct(x[s], y[s] if labels else None),
                        n, batch_size)
    sets = {"real": x, "samples": samples, "reconstructions": recon,
            "train_floor": data.x_train[train].to(device)}
    for name, images in sets.items():
        if images.shape[1:] != x.shape[1:]:
            raise ValueError(f"sample_quality: the model's {name} are {list(images.shape[1:])}, "
                             f"the data's images {list(x.shape[1:])}; they must match")
    return sets


def sample_quality(model: nn.Module, data, num: Optional[int] = None, seed: int = 0,
                   judge: Optional[Judge] = None) -> Dict[str, float]:
    """FID and precision/recall of ``model``'s samples and reconstructions against
    ``data``'s test images, and of its training images (the floor), in the features of
    ``judge`` (default: :func:`~pyro_vae.quality.classifier.load_or_train` of ``data``).

    ``num`` images per side (default ``min(test size, 2000)``, never more than either
    split holds). Keys: ``fid_<set>``, ``precision_<set>``, ``recall_<set>`` for each set
    of :data:`SETS`, ``quality_samples`` and ``quality_classifier_accuracy``.
    """
    least = K_NEIGHBOURS + 1  # each image needs its k nearest neighbours besides itself
    if num is not None and num < least:
        raise ValueError(f"quality_samples: expected an integer >= {least}, got {num}")
    n = min(len(data.x_test), len(data.x_train), num or DEFAULT_SAMPLES)
    if n < least:
        raise ValueError(f"quality_samples: the data set's splits hold {n} images; the "
                         f"k-nearest-neighbour recall needs at least {least}")
    judge = judge or load_or_train(data)
    sets = compared_sets(model, data, n, seed)
    real = sets.pop("real")
    net = judge.net.to(real.device).eval()
    extractor = FeatureMap(net.features, net.num_features)
    fids = frechet_distances(extractor, real, sets)
    real_features = features(extractor, real)
    result = {}
    for name, images in sets.items():
        pr = precision_recall(real_features, features(extractor, images))
        result.update({f"fid_{name}": fids[name], f"precision_{name}": pr["precision"],
                       f"recall_{name}": pr["recall"]})
    result.update(quality_samples=n, quality_classifier_accuracy=judge.test_accuracy)
    return result
