"""Likelihoods p(x | z): turn decoder outputs into a distribution over images.

A likelihood object states how many decoder outputs it needs per pixel
(``params_per_pixel``), builds the distribution from them (``__call__``), gives the
image it would show a person (``mean``), and checks that data lie in its support
(``check``) before any training step.

Decoder output ``params: [..., P, C, H, W]``; the returned distribution has
``event_shape == (C, H, W)``, so ``log_prob`` sums over pixels and keeps one value
per image.
"""

import torch
import torch.nn.functional as F
from torch import nn

import pyro.distributions as dist


class Bernoulli(nn.Module):
    """x ~ Bernoulli(sigmoid(logits)), independent over pixels.

    log p(x | z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i),  p = sigmoid(decoder(z)).

    For binary data this is a normalised likelihood. For intensities in [0, 1] it is
    the cross-entropy that the reference VAE implementations train on (not a
    normalised density over [0, 1]; use ``--binarize dynamic`` for likelihoods
    comparable with the literature).
    """

    params_per_pixel = 1

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        logits = params.squeeze(-4)
        # validate_args=False: the support check would reject intensities in (0, 1);
        # ``check`` enforces the [0, 1] range once, before training.
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params.squeeze(-4))

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name}: the bernoulli likelihood needs values in [0, 1], "
                f"got values in [{lo:.4g}, {hi:.4g}]"
            )


class Normal(nn.Module):
    """x ~ N(mu(z), diag(sigma(z)^2)), both output by the decoder, independent over pixels.

    ``sigma = softplus(s) + min_scale``; the floor keeps the density bounded where the
    data barely vary (e.g. the inactive units of a VAE's codes, the data of a stacked
    M2). For real-valued data such as latent codes; any real value is in its support.
    """

    params_per_pixel = 2

    def __init__(self, min_scale: float = 1e-3):
        super().__init__()
        self.min_scale = min_scale

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = params.unbind(-4)
        return dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.unbind(-4)[0]

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        """Every finite value is in the support (the model checks finiteness)."""


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "normal": Normal,
}
