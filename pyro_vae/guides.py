"""Variational families q(z | x): turn encoder outputs into a distribution over z.

An amortised guide is an encoder network followed by one of these objects. Each
states how many encoder outputs it needs (``num_params``), builds the distribution
(``__call__``, reparameterised), and gives a point estimate (``loc``) used for
reconstructions and latent embeddings.

Encoder output ``params: [..., num_params]``; the returned distribution has
``event_shape == (z_dim,)``.
"""

import torch
from torch import nn

import pyro.distributions as dist


class DiagonalNormal(nn.Module):
    """q(z | x) = N(mu(x), diag(sigma(x)^2)), with sigma = exp(log_var / 2).

    The encoder outputs ``[mu, log_var]``; ``z = mu + sigma * eps`` with
    ``eps ~ N(0, I)`` is the reparameterised sample (Kingma & Welling 2013, eq. 10).
    """

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        self.num_params = 2 * z_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, log_var = params.split(self.z_dim, dim=-1)
        return dist.Normal(loc, torch.exp(0.5 * log_var)).to_event(1)

    def loc(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., : self.z_dim]


GUIDES = {
    "diagonal": DiagonalNormal,
}
