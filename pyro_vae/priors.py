"""Priors p(z): ``nn.Module`` objects whose call returns a distribution.

A prior is called with no arguments and returns a distribution with
``event_shape == (z_dim,)`` and empty batch shape; the ``"data"`` plate broadcasts
it over the batch. Learnable priors hold their parameters as ordinary
``nn.Parameter`` s, registered by the model with ``pyro.module("prior", prior)``.
"""

import torch
from torch import nn

import pyro.distributions as dist


class StandardNormal(nn.Module):
    """p(z) = N(0, I), the prior of Kingma & Welling (2013)."""

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        # Buffers, not parameters: they follow .to(device) and are never trained.
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


PRIORS = {
    "normal": StandardNormal,
}
