"""Variational families q(z | x): turn encoder outputs into a distribution over z.

An amortised guide is an encoder network followed by one of these objects. Each
states how many encoder outputs it needs (``num_params``), builds the distribution
(``__call__``, reparameterised), gives a point estimate (``loc``) used for
reconstructions and latent embeddings, and its Gaussian part (``base``): the whole
of q for the Gaussian families, the distribution a flow starts from otherwise.
Networks a family owns (a flow's MADEs) are submodules, registered by the guide
with ``pyro.module("posterior", family)``.

Encoder output ``params: [..., num_params]``; the returned distribution has
``event_shape == (z_dim,)`` and batch shape ``params.shape[:-1]``.

==============  ============================================================
``diagonal``    N(mu(x), diag(sigma(x)^2))
``lowrank``     N(mu(x), W(x) W(x)^T + diag(sigma(x)^2)), W of rank r
``full``        N(mu(x), L(x) L(x)^T), L lower-triangular
``iaf``         a diagonal Gaussian through inverse autoregressive flows
                conditioned on encoder features (Kingma et al. 2016)
==============  ============================================================

Any guide *function* with the model's signature works with :func:`pyro_vae.fit`
and :mod:`pyro_vae.evaluate` as well; these objects only save writing one.
"""

from typing import Sequence

import torch
from torch import nn

import pyro.distributions as dist
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN


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

    def base(self, params: torch.Tensor) -> dist.Distribution:
        return self(params)

    def loc(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., : self.z_dim]


class LowRankNormal(nn.Module):
    """q(z | x) = N(mu(x), W(x) W(x)^T + diag(sigma(x)^2)), ``W: [z_dim, rank]``.

    Correlations between latent dimensions at ``rank * z_dim`` extra outputs;
    ``z = mu + W eps_1 + sigma * eps_2``. The encoder outputs
    ``[mu, log_var, vec(W)]``.

    :param rank: r, the number of columns of ``W``.
    """

    def __init__(self, z_dim: int, rank: int = 2):
        super().__init__()
        if int(rank) != rank or rank < 1:
            raise ValueError(f"rank: expected a positive integer, got {rank!r}")
        self.z_dim, self.rank = z_dim, int(rank)
        self.num_params = z_dim * (2 + self.rank)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, log_var, factor = params.split([self.z_dim, self.z_dim, self.z_dim * self.rank], -1)
        factor = factor.reshape(factor.shape[:-1] + (self.z_dim, self.rank))
        return dist.LowRankMultivariateNormal(loc, factor, log_var.exp())

    def base(self, params: torch.Tensor) -> dist.Distribution:
        return self(params)

    def loc(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., : self.z_dim]


class FullNormal(nn.Module):
    """q(z | x) = N(mu(x), L(x) L(x)^T), ``L`` lower-triangular with a positive diagonal.

    The encoder outputs ``[mu, log diag(L), strictly-lower entries of L]``,
    ``z_dim (z_dim + 3) / 2`` numbers; ``z = mu + L eps``.
    """

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        self.num_params = z_dim * (z_dim + 3) // 2
        rows, cols = torch.tril_indices(z_dim, z_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        z = self.z_dim
        loc, log_diag, lower = params.split([z, z, self.num_params - 2 * z], -1)
        tril = lower.new_zeros(lower.shape[:-1] + (z, z))
        tril[..., self.rows, self.cols] = lower
        # exp keeps the diagonal positive, so L is a valid Cholesky factor whatever
        # the encoder outputs.
        tril = tril + torch.diag_embed(log_diag.exp())
        return dist.MultivariateNormal(loc, scale_tril=tril)

    def base(self, params: torch.Tensor) -> dist.Distribution:
        return self(params)

    def loc(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., : self.z_dim]


class IAFNormal(nn.Module):
    r"""q(z | x): a diagonal Gaussian through ``L`` inverse autoregressive flows
    (Kingma et al. 2016), each conditioned on encoder features ``h(x)``.

        z_0 ~ N(mu(x), diag(sigma(x)^2))
        z_l = s_l * z_{l-1} + (1 - s_l) * m_l,   [m_l, logit s_l] = MADE_l(z_{l-1}, h(x))
        log q(z_L | x) = log N(z_0) - sum_l sum_i log s_{l,i}

    (the "stable" update of the paper's eq. 14: ``s = sigmoid(. + 2)`` starts near
    the identity). Sampling and the density at the sample are one parallel pass per
    layer; Pyro caches ``z_0`` with each sample, so no flow is ever inverted during
    training or importance sampling. Built from Pyro's own
    ``ConditionalAffineAutoregressive`` and ``ConditionalAutoRegressiveNN``.

    The encoder outputs ``[mu, log_var, h]``.

    :param num_layers: L.
    :param context_dim: width of ``h``; default ``z_dim``.
    :param hidden_dims: hidden widths of each MADE; default ``[2 * z_dim + context_dim]``.
    """

    def __init__(
        self,
        z_dim: int,
        num_layers: int = 2,
        context_dim: int = 0,
        hidden_dims: Sequence[int] = (),
    ):
        super().__init__()
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive integer, got {num_layers!r}")
        if z_dim < 2:
            raise ValueError(f"z_dim: the iaf guide needs z_dim >= 2, got {z_dim}")
        self.z_dim = z_dim
        self.context_dim = int(context_dim) or z_dim
        self.num_params = 2 * z_dim + self.context_dim
        hidden = list(hidden_dims) or [2 * z_dim + self.context_dim]
        # Alternate layers read z in reverse order, so after two layers every
        # coordinate depends on every other. Fixed orders (not Pyro's random
        # default) make a model rebuilt from its config have the same masks.
        orders = [torch.arange(z_dim), torch.arange(z_dim).flip(0)]
        self.layers = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(
                    z_dim, self.context_dim, hidden, permutation=orders[i % 2]
                ),
                stable=True,
            )
            for i in range(int(num_layers))
        )

    def base(self, params: torch.Tensor) -> dist.Distribution:
        loc, log_var = params[..., : 2 * self.z_dim].split(self.z_dim, -1)
        return dist.Normal(loc, torch.exp(0.5 * log_var)).to_event(1)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        context = params[..., 2 * self.z_dim:]
        flows = [layer.condition(context) for layer in self.layers]
        return dist.TransformedDistribution(self.base(params), flows)

    def loc(self, params: torch.Tensor) -> torch.Tensor:
        """The base mean pushed through the flows (a point estimate, not E_q[z])."""
        z = params[..., : self.z_dim]
        context = params[..., 2 * self.z_dim:]
        for layer in self.layers:
            z = layer.condition(context)(z)
        return z


GUIDES = {
    "diagonal": DiagonalNormal,
    "lowrank": LowRankNormal,
    "full": FullNormal,
    "iaf": IAFNormal,
}
