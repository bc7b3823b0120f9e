"""What training draws from in-memory data each epoch: shuffled batches of indices, a
binarised (Bernoulli) sample of the pixels, and pixels perturbed by noise."""

from typing import Iterable, Optional

import torch

BINARIZE = ("none", "dynamic")


def binarize(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A Bernoulli sample of each pixel: ``x_bin ~ Bernoulli(x)``, same shape and dtype.

    ``generator`` is used when it lives on ``x``'s device; for data on a GPU and a CPU
    generator the GPU's own random stream is used instead, so no batch leaves the GPU.
    """
    if generator is not None and generator.device != x.device:
        return torch.bernoulli(x)
    return torch.bernoulli(x, generator=generator)


def perturb(x: torch.Tensor, rate: float,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``x`` with each value replaced, with probability ``rate``, by a uniform draw from
    [0, 1] (Ren et al. 2019's input perturbation); same shape and dtype."""
    if generator is not None and generator.device != x.device:
        generator = None
    replace = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < rate
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(replace, noise, x)


def batch_indices(
    n: int, batch_size: int, generator: Optional[torch.Generator] = None, shuffle: bool = True
) -> Iterable[torch.Tensor]:
    """Index tensors of consecutive batches over a (shuffled) order of ``range(n)``.

    The last batch is smaller when ``batch_size`` does not divide ``n``.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)
