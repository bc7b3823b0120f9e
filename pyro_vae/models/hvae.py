r"""A hierarchical VAE of L stochastic levels with the ladder guide of Sonderby et al. (2016).

Generative story, top level first: ``z_L ~ p(z_L)`` (any prior of
:data:`~pyro_vae.priors.PRIORS`), ``z_l ~ N(mu_l(z_{l+1}), sigma_l(z_{l+1})^2)`` for
``l = L-1, ..., 1``, ``x ~ p(x | z_1)``. The guide shares one bottom-up deterministic
pass over ``x`` and then runs top-down, combining at every level the bottom-up Gaussian
with the model's own top-down ``p(z_l | z_{l+1})`` by precision weighting (the ladder
VAE's eq. 19-21). Site names: the top level is ``"z"`` (the code that ``encode``,
``decode`` and every tool reading the site ``"z"`` see), the levels below it
``"z{L-1}", ..., "z1"`` (``"z1"`` next to the image). See ``docs/hvae.md``.
"""

import itertools
import math
import types
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from ..config import option
from ..free_bits import (check_elbo as check_free_bits_elbo, check_factorised, check_free_bits,
                         latent_kl, shortfall)
from ..guides import GUIDES
from ..likelihoods import LIKELIHOODS
from ..nets import ACTIVATIONS, activation as make_activation, make_decoder, make_encoder
from ..priors import PRIORS
from .base import Model, batch_size_of, check_output
from .vae import VAEConfig, _part, check_image_model

NORMS = ("none", "batch", "weight")
MIN_SCALE = 1e-3  # the default floor on the ladder's standard deviations
MAX_LOG_VAR = 20.0  # and their ceiling, sigma^2 <= e^20: exp never overflows to inf (NaN grads)


@dataclass
class HVAEConfig(VAEConfig):
    """A run of the hierarchical VAE (:class:`HVAE`): the VAE's options, and its levels."""

    z_dim: int = option(50, "latent dimension of the top level (the code that explore "
                        "tools see); the levels below double it unless --z-dims is given",
                        minimum=1)
    levels: int = option(2, "stochastic levels L (z_L -> ... -> z_1 -> x)", minimum=1)
    z_dims: Tuple[int, ...] = option(None, "latent dimension of each level, z1 (next to x) "
                                     "first, e.g. 64,32; unset: z_dim * 2^(L - l)")
    level_hidden: Tuple[int, ...] = option(None, "width of the two-layer MLP blocks of each "
                                           "level above the first, level 2 first; unset: "
                                           "the last hidden width, halved per level")
    norm: str = option("none", "normalisation of the ladder's layers: none, batch (batch "
                       "norm in the bottom-up pass) or weight (weight norm everywhere)",
                       choices=lambda: NORMS)
    skip: bool = option(False, "the decoder reads every level, p(x | z_1, ..., z_L), "
                        "not z_1 alone (the skip connections of Tomczak & Welling 2018)")
    min_scale: float = option(MIN_SCALE, "floor on the standard deviations of p(z_l | "
                              "z_{l+1}) and of the ladder's bottom-up read-outs: sigma^2 = "
                              "min_scale^2 + exp(network output); 0 is no floor")


# ------------------------------------------------------------------ networks (no Pyro)
def _block(in_dim: int, width: int, act: str, batch_norm: bool) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> act``, twice: one level's deterministic block."""
    layers, d = [], in_dim
    for _ in range(2):
        layers += [nn.Linear(d, width), nn.BatchNorm1d(width) if batch_norm else nn.Identity(),
                   make_activation(act)]
        d = width
    return nn.Sequential(*layers)


class BatchNormed(nn.Module):
    """``norm(h)`` over every leading dimension of ``h: [..., W]`` (importance samples
    and batch alike), so a batch norm serves inputs of any number of leading dims."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)


class LadderEncoder(nn.Module):
    """The bottom-up deterministic pass and each level's Gaussian read-out of it.

    ``x: [B, C, H, W]`` -> a list of ``L`` tensors, level 1 first::

        d_1 = act(trunk(x))                  trunk: the encoder of ``net`` (mlp or conv)
        d_l = block_l(d_{l-1}),  l >= 2      two Linear -> act layers each
        out_l = head_l(d_l)                  [mu_l, log sigma_l^2] (2 z_l numbers), and
                                             the top guide family's parameters at l = L

    :param trunk: maps ``x`` to ``[B, widths[0]]`` before its activation.
    :param widths: width of ``d_l`` for each level.
    :param out_dims: width of each head's output.
    :param batch_norm: batch-normalise ``d_1`` and each block's layers (before the activation).
    """

    def __init__(self, trunk: nn.Module, widths: Sequence[int], out_dims: Sequence[int],
                 act: str = "relu", batch_norm: bool = False):
        super().__init__()
        self.trunk = trunk
        self.first = nn.Sequential(BatchNormed(widths[0]) if batch_norm else nn.Identity(),
                                   make_activation(act))
        self.blocks = nn.ModuleList(_block(w_in, w, act, batch_norm)
                                    for w_in, w in zip(widths, widths[1:]))
        self.heads = nn.ModuleList(nn.Linear(w, o) for w, o in zip(widths, out_dims))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        d = self.first(self.trunk(x))
        outs = [self.heads[0](d)]
        for block, head in zip(self.blocks, self.heads[1:]):
            d = block(d.reshape(-1, d.shape[-1])).reshape(d.shape[:-1] + (-1,))
            outs.append(head(d))
        return outs


def _top_down(z_dim: int, width: int, out_dim: int, act: str) -> nn.Sequential:
    """``z_{l+1} -> [mu_l, log sigma_l^2]``: two ``Linear -> act`` layers, then a Linear."""
    return nn.Sequential(nn.Linear(z_dim, width), make_activation(act),
                         nn.Linear(width, width), make_activation(act),
                         nn.Linear(width, out_dim))


def _weight_normed(net: nn.Module) -> nn.Module:
    """``net`` with every linear and convolutional layer weight-normalised
    (Salimans & Kingma 2016: ``w = g v / ||v||``, ``g`` and ``v`` learnt)."""
    for module in list(net.modules()):
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            weight_norm(module)
    return net


def floored_variance(log_var: torch.Tensor, min_scale: float = 0.0) -> torch.Tensor:
    """``sigma^2 = min_scale^2 + exp(min(log_var, 20))``: a variance that never reaches 0
    (so ``1 / sigma^2`` stays finite) nor ``inf``; ``min_scale = 0`` is ``exp`` alone."""
    return torch.exp(log_var.clamp(max=MAX_LOG_VAR)) + min_scale ** 2


def diagonal_normal(params: torch.Tensor, min_scale: float = 0.0) -> dist.Distribution:
    """``N(mu, diag(sigma^2))`` from ``params = [mu, log s^2]: [..., 2 D]``, with
    ``sigma^2 = min_scale^2 + s^2`` (:func:`floored_variance`)."""
    loc, log_var = params.chunk(2, -1)
    return dist.Normal(loc, floored_variance(log_var, min_scale).sqrt()).to_event(1)


def precision_weighted(up: torch.Tensor, prior: dist.Distribution,
                       min_scale: float = 0.0) -> dist.Distribution:
    r"""The ladder's q(z_l | z_{l+1}, x): the product of two diagonal Gaussians, normalised.

    ``up = [mu_hat, log s^2]`` is the bottom-up read-out, whose variance is
    ``sigma_hat^2 = min_scale^2 + s^2`` (:func:`floored_variance`), ``prior`` the model's
    ``p(z_l | z_{l+1}) = N(mu_p, sigma_p^2)`` (Sonderby et al. 2016, eq. 19-21)::

        sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2)
        mu_q      = sigma_q^2 (mu_hat sigma_hat^-2 + mu_p sigma_p^-2)
    """
    loc_up, log_var_up = up.chunk(2, -1)
    p = prior.base_dist
    precision_up = floored_variance(log_var_up, min_scale).reciprocal()
    precision_p = p.scale.pow(-2)
    var = 1.0 / (precision_up + precision_p)
    return dist.Normal(var * (loc_up * precision_up + p.loc * precision_p),
                       var.sqrt()).to_event(1)


# ------------------------------------------------------------------------ the model
class HVAE(Model):
    r"""Hierarchical VAE: ``L`` Gaussian levels, any top prior, the ladder guide.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``, with
    ``z_L`` the site ``"z"`` and ``z_l`` the site ``"z{l}"`` below it::

        z_L ~ p(z_L)                                   site "z"   (prior, default N(0, I))
        z_l ~ N(mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2)  sites "z{L-1}", ..., "z1"
        x   ~ p(x | decoder(z_1))                      site "x"   (likelihood)
        x   ~ p(x | decoder([z_1, ..., z_L]))          instead, with ``skip=True``

    Guide (``guide``), the ladder of Sonderby et al. (2016): one bottom-up pass
    ``d_1 = f_1(x), d_l = f_l(d_{l-1})`` with Gaussian read-outs ``(mu_hat_l, sigma_hat_l)``,
    then top-down over the same plate::

        z_L ~ q(z_L | d_L)                             the top guide family (``guide``)
        z_l ~ N(mu_q, sigma_q^2),  sigma_q^-2 = sigma_hat_l^-2 + sigma_l(z_{l+1})^-2,
              mu_q = sigma_q^2 (mu_hat_l sigma_hat_l^-2 + mu_l(z_{l+1}) sigma_l(z_{l+1})^-2)

    so the guide's top-down path is the model's own ``p(z_l | z_{l+1})``. ``beta`` scales
    every latent site in model and guide. ``free_bits = lambda > 0`` adds to the model,
    per level and item, a factor ``-relu(lambda - KL_l)`` with ``KL_l`` the batch mean of
    the level's KL term as ``TraceMeanField_ELBO`` (this model's default ELBO) charges it:
    the objective then holds ``B max(lambda, KL_l)`` for that level (Kingma et al. 2016,
    eq. 15), and a level below ``lambda`` gets no KL gradient. With ``free_bits_per =
    "dimension"`` the same holds for each dimension of each level
    (:mod:`pyro_vae.free_bits`).

    :param x_shape: image shape ``(C, H, W)``.
    :param z_dim: the top level's dimension (default ``z_dims``: ``z_dim * 2^(L - l)``).
    :param levels: ``L``.
    :param z_dims: dimension of each level, ``z_1`` first.
    :param hidden: hidden widths of the level-1 encoder and of the decoder (mirrored);
        the last is the width of ``d_1``.
    :param level_hidden: width of each level's blocks above the first (``d_2`` first).
    :param net: ``"mlp"`` or ``"conv"``, the network between ``x`` and the first level.
    :param norm: ``"none"``, ``"batch"`` (the bottom-up pass) or ``"weight"`` (every layer).
    :param skip: the decoder reads ``[z_1, ..., z_L]`` concatenated (``sum(z_dims)``
        numbers), so every level reaches the image directly (Tomczak & Welling 2018).
    :param min_scale: floor on every standard deviation of ``p(z_l | z_{l+1})`` and of the
        bottom-up read-outs, ``sigma^2 = min_scale^2 + exp(out)``: precisions stay finite,
        so a long run does not stop at an infinite KL or gradient; 0 is no floor.
    :param free_bits: ``lambda`` in nats per image and level (or dimension); 0: off.
    :param free_bits_per: ``"level"`` or ``"dimension"``, what ``lambda`` is counted per.
    :param prior, likelihood, guide: as for :class:`~pyro_vae.models.VAE`; ``guide`` is the
        top level's family, any of :data:`~pyro_vae.guides.GUIDES`.
    :param encoder: a :class:`LadderEncoder`-like module mapping ``x`` to the list of
        each level's read-out, level 1 first.
    :param top_down: one module per level below the top, ``z_{l+1} -> [mu_l, log sigma_l^2]``,
        level 1 first.
    :param decoder: ``z_1 -> [..., P, C, H, W]`` (with ``skip``, ``[z_1, ..., z_L] ->``),
        the likelihood's parameters.

    The other parameters are the VAE's.
    """

    elbo = "TraceMeanField_ELBO"  # closed-form KL per level: lower variance, exact free bits
    capturable = True  # an instance with norm="batch" declares False
    latent_kind = "continuous"  # the top level's code, latent_shape (z_L,)
    config_class = HVAEConfig

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dim: int = 50,
        levels: int = 2,
        z_dims: Optional[Sequence[int]] = None,
        hidden: Sequence[int] = (400,),
        level_hidden: Optional[Sequence[int]] = None,
        activation: str = "relu",
        prior: Union[str, nn.Module] = "normal",
        likelihood: Union[str, nn.Module] = "bernoulli",
        guide: Union[str, nn.Module] = "diagonal",
        beta: float = 1.0,
        net: str = "mlp",
        norm: str = "none",
        skip: bool = False,
        min_scale: float = MIN_SCALE,
        free_bits: float = 0.0,
        free_bits_per: str = "level",
        encoder: Optional[nn.Module] = None,
        top_down: Optional[Sequence[nn.Module]] = None,
        decoder: Optional[nn.Module] = None,
        mixture_components: int = 10,
        pseudo_inputs: int = 500,
        flow_layers: int = 2,
        guide_rank: int = 2,
        normal_scale: float = 0.1,
        likelihood_components: int = 5,
        name: Optional[str] = None,
    ):
        x_shape, levels, z_dims, hidden, widths = _check_arguments(
            x_shape, z_dim, levels, z_dims, hidden, level_hidden, net, norm, activation, beta,
            free_bits, free_bits_per, prior)
        super().__init__(name)
        self.x_shape, self.levels, self.z_dims = x_shape, levels, tuple(int(d) for d in z_dims)
        self.z_dim = self.z_dims[-1]
        self.widths, self.hidden, self.activation = widths, hidden, activation
        self.net, self.norm, self.skip = net, norm, bool(skip)
        self.min_scale = _check_min_scale(min_scale)
        self.beta, self.free_bits, self.free_bits_per = float(beta), float(free_bits), \
            free_bits_per
        # Sites top first: "z" (level L), then "z{L-1}", ..., "z1".
        self.sites = ("z",) + tuple(f"z{l}" for l in range(levels - 1, 0, -1))
        if norm == "batch":  # a captured graph would not update the running statistics
            self.capturable = False

        self.prior = _part("prior", PRIORS, prior, self.z_dim, x_shape=x_shape,
                           num_components=mixture_components,
                           num_pseudo_inputs=pseudo_inputs, num_layers=flow_layers)
        if getattr(self.prior, "conditional", False):
            raise ValueError(f"prior: {type(self.prior).__name__} is conditioned on a label; "
                             "the HVAE models unlabelled images")
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood, scale=normal_scale,
                                num_components=likelihood_components)
        self.posterior = _part("guide", GUIDES, guide, self.z_dim, num_layers=flow_layers,
                               rank=guide_rank)
        reads = [2 * d for d in self.z_dims[:-1]] + [self.posterior.num_params]
        p_params = self.likelihood.params_per_pixel
        self.encoder = self._given("encoder", encoder, [torch.zeros(2, *x_shape)],
                                   [(2, r) for r in reads], lambda: self._ladder(reads))
        self.top_down = self._top_downs(top_down, widths, activation)
        reads_z = sum(self.z_dims) if self.skip else self.z_dims[0]
        self.decoder = self._given(
            "decoder", decoder, [torch.zeros(2, reads_z)], (2, p_params, *x_shape),
            lambda: make_decoder(net, reads_z, x_shape, p_params, hidden, activation))
        if norm == "weight":
            for part in (self.encoder, self.top_down, self.decoder):
                _weight_normed(part)
        if hasattr(self.prior, "bind"):
            # The VampPrior's components are the top level's q(z_L | u_k): the bottom-up
            # pass up to the top read-out, and the top guide family.
            self.prior.bind(types.SimpleNamespace(x_shape=x_shape, z_dim=self.z_dim,
                                                  encoder=self.top_params,
                                                  posterior=self.posterior))
        if self.free_bits and free_bits_per == "dimension":  # the top's parts must factorise
            check_factorised(self.posterior(torch.zeros(1, self.posterior.num_params)),
                             self.prior())

    def _top_downs(self, given: Optional[Sequence[nn.Module]], widths: Sequence[int],
                   activation: str) -> nn.ModuleList:
        """The networks ``z_{l+1} -> [mu_l, log sigma_l^2]``, level 1 first: ``given``
        (each checked on a dummy batch), else built."""
        if given is None:
            return nn.ModuleList(
                _top_down(self.z_dims[i + 1], widths[i + 1], 2 * self.z_dims[i], activation)
                for i in range(self.levels - 1))
        if len(given) != self.levels - 1:
            raise ValueError(f"top_down: expected {self.levels - 1} networks (one per level "
                             f"below the top), got {len(given)}")
        return nn.ModuleList(
            self._given(f"top_down[{i}]", net_i, [torch.zeros(2, self.z_dims[i + 1])],
                        (2, 2 * self.z_dims[i]), None) for i, net_i in enumerate(given))

    def _ladder(self, reads: Sequence[int]) -> LadderEncoder:
        trunk = make_encoder(self.net, self.x_shape, self.widths[0], self.hidden[:-1],
                             self.activation)
        return LadderEncoder(trunk, self.widths, reads, self.activation, self.norm == "batch")

    @staticmethod
    def _given(part: str, given: Optional[nn.Module], inputs, expected, build) -> nn.Module:
        """``given``, its output on a dummy batch of two checked; else ``build()``."""
        if given is None:
            return build()
        if not isinstance(given, nn.Module):
            raise TypeError(f"{part}: expected an nn.Module, got {type(given).__name__}")
        tensors = itertools.chain(given.parameters(), given.buffers())
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
        inputs = [t.to(dtype) for t in inputs]
        if part != "encoder":
            check_output(part, given, inputs, expected)
            return given
        training = given.training
        try:
            with torch.no_grad():
                outs = given.eval()(*inputs)
        finally:
            given.train(training)
        got = [tuple(o.shape) for o in outs] if isinstance(outs, (list, tuple)) else outs
        if got != [tuple(e) for e in expected]:
            raise ValueError(f"encoder: expected a list of outputs of shapes {expected} (one "
                             f"per level, level 1 first), got {got}")
        return given

    # ------------------------------------------------------------ distributions
    def conditional_prior(self, level: int, z_above: torch.Tensor) -> dist.Distribution:
        """p(z_l | z_{l+1}) for ``level = l`` in ``1 .. L-1``."""
        return diagonal_normal(self.top_down[level - 1](z_above), self.min_scale)

    def ladder_posterior(self, read_out: torch.Tensor,
                         prior: dist.Distribution) -> dist.Distribution:
        """q(z_l | z_{l+1}, x) from the level's bottom-up ``read_out`` and the model's
        ``prior = p(z_l | z_{l+1})`` (:func:`precision_weighted`)."""
        return precision_weighted(read_out, prior, self.min_scale)

    def decode_levels(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The likelihood's parameters ``[..., P, C, H, W]`` from the levels ``zs``, top
        first: ``decoder(z_1)``, or ``decoder([z_1, ..., z_L])`` with ``skip``."""
        return self.decoder(torch.cat(zs[::-1], -1) if self.skip else zs[-1])

    def top_params(self, x: torch.Tensor) -> torch.Tensor:
        """The top guide family's parameters of ``x``: the bottom-up pass's last read-out."""
        return self.encoder(x)[-1]

    # --------------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z_1..L) = p(z_L) prod_l p(z_l | z_{l+1}) p(x | z_1) (``p(x | z_1..L)`` with
        ``skip``). ``x: [B, C, H, W]`` observed, or ``None`` to draw ``num`` images
        (default 1). Returns ``x``."""
        self.register("decoder", "top_down", "prior", "likelihood")
        with pyro.plate("data", batch_size_of(x, None, num)):
            with poutine.scale(scale=self.beta):
                priors = [self.prior()]
                zs = [pyro.sample("z", priors[0])]
                for level, site in zip(range(self.levels - 1, 0, -1), self.sites[1:]):
                    priors.append(self.conditional_prior(level, zs[-1]))
                    zs.append(pyro.sample(site, priors[-1]))
                if self.free_bits and x is not None:
                    self.free_bits_factors(x, zs, priors)
            return pyro.sample("x", self.likelihood(self.decode_levels(zs)), obs=x)

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """q(z_L | x) prod_l q(z_l | z_{l+1}, x), the ladder. Returns ``z_1``."""
        if x is None:
            raise ValueError("x: the guide needs images; for the prior predictive use "
                             "Predictive(model) without a guide")
        self.register("encoder", "top_down", "posterior")
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                up = self.encoder(x)
                z = pyro.sample("z", self.posterior(up[-1]))
                for level, site in zip(range(self.levels - 1, 0, -1), self.sites[1:]):
                    q = self.ladder_posterior(up[level - 1], self.conditional_prior(level, z))
                    z = pyro.sample(site, q)
        return z

    def free_bits_factors(self, x: torch.Tensor, zs: List[torch.Tensor],
                          priors: List[dist.Distribution]) -> None:
        """One factor per level, ``-relu(lambda - mean_n KL_l(n))`` for each item.

        ``KL_l(n)`` is the level's KL term as ``TraceMeanField_ELBO`` charges it, from the
        guide's q rebuilt here at the same draws (closed form where registered, else
        ``log q - log p`` at the draw). Summed over the batch the factor turns the level's
        ``sum_n KL_l(n)`` into ``B max(lambda, mean_n KL_l(n))``: exactly so, gradients
        included, under ``TraceMeanField_ELBO``. Under ``Trace_ELBO``, whose KL term is the
        one-sample ``log q - log p``, a level below ``lambda`` keeps a KL gradient of zero
        mean (the sample's noise around the closed form) and the value is the free-bits
        objective plus that noise. The rebuilt q costs one more bottom-up pass (with
        ``norm="batch"``, a second update of its running statistics per step).
        """
        kls = self.level_kls(x, zs, priors)
        for site, kl in zip(self.sites, kls):
            pyro.factor(f"free_bits_{site}", -shortfall(kl, self.free_bits))

    def level_kls(self, x: torch.Tensor, zs: List[torch.Tensor],
                  priors: List[dist.Distribution]) -> List[torch.Tensor]:
        """Each level's KL term per item ``[B]`` (per item and dimension, ``[B, D_l]``,
        with ``free_bits_per="dimension"``), top first, at the draws ``zs`` (top first)
        with the model's ``priors`` at those draws."""
        up = self.encoder(x)
        qs = [self.posterior(up[-1])] + [
            self.ladder_posterior(up[level - 1], p)
            for level, p in zip(range(self.levels - 1, 0, -1), priors[1:])]
        return [latent_kl(q, p, z, self.free_bits_per) for q, p, z in zip(qs, priors, zs)]

    def check_elbo(self, elbo) -> None:
        """Free bits correct a KL term per level, which the importance-weighted bound has not."""
        check_free_bits_elbo(self.free_bits, elbo)

    # ---------------------------------------------------------------- utilities
    @property
    def latent_shape(self) -> Tuple[int]:
        """``(z_L,)``: the top level's code."""
        return (self.z_dim,)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The top posterior's location, ``[B, z_L]``."""
        return self.posterior.loc(self.top_params(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Mean image of the top-down pass from ``z: [..., z_L]`` with each lower level at
        its conditional mean: ``[..., C, H, W]``."""
        zs = [z]
        for level in range(self.levels - 1, 0, -1):
            zs.append(self.conditional_prior(level, zs[-1]).mean)
        return self.likelihood.mean(self.decode_levels(zs))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Mean image of the ladder guide run at its means (every level's information
        of ``x``, not only the top's); same shape as ``x``."""
        up = self.encoder(x)
        zs = [self.posterior.loc(up[-1])]
        for level in range(self.levels - 1, 0, -1):
            zs.append(self.ladder_posterior(up[level - 1],
                                            self.conditional_prior(level, zs[-1])).mean)
        return self.likelihood.mean(self.decode_levels(zs))

    @torch.no_grad()
    def generate(self, num: int, y=None) -> torch.Tensor:
        """``num`` images by ancestral sampling of every level, each shown as the mean of
        p(x | z_1): ``[num, C, H, W]``."""
        zs = [self.latent_draws(num)]
        for level in range(self.levels - 1, 0, -1):
            zs.append(self.conditional_prior(level, zs[-1]).sample())
        return self.likelihood.mean(self.decode_levels(zs))

    def latent_draws(self, num: int, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``num`` draws of the top prior p(z_L): ``[num, z_L]``."""
        return self.prior().sample((num,))

    def metrics(self, x: torch.Tensor) -> Dict[str, float]:
        """Per level, top first: ``kl_<site>``, the mean KL term in nats (they sum to the
        ELBO's ``kl``), and ``active_units_<site>`` (Burda et al. 2015; a level below the
        top is scored by its guide's means at one draw of the levels above)."""
        from ..evaluate import kl_per_site, latent_statistics

        out: Dict[str, float] = {}
        training = self.training
        self.eval()
        try:
            for site, kl in kl_per_site(self.model, self.guide, x).items():
                out[f"kl_{site}"] = kl
            for site in self.sites:
                stats = latent_statistics(self.model, self.guide, x, site=site)
                out[f"active_units_{site}"] = stats["active_units"]
        finally:
            self.train(training)
        return out

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` fits this model."""
        super().check_data(x, name)
        self.likelihood.check(x, name)


def _check_arguments(x_shape, z_dim, levels, z_dims, hidden, level_hidden, net, norm,
                     activation, beta, free_bits, free_bits_per, prior):
    """The HVAE's arguments checked (``ValueError`` naming the first that cannot work):
    ``(x_shape, levels, z_dims, hidden, widths)`` as the model keeps them."""
    x_shape = check_image_model(x_shape, z_dim, beta, net)
    if isinstance(levels, bool) or int(levels) != levels or levels < 1:
        raise ValueError(f"levels: expected a positive integer, got {levels!r}")
    levels = int(levels)
    z_dims = (tuple(int(z_dim) * 2 ** (levels - 1 - i) for i in range(levels))
              if not z_dims else tuple(z_dims))
    if len(z_dims) != levels or any(int(d) != d or d < 1 for d in z_dims):
        raise ValueError(f"z_dims: expected {levels} positive dimensions (one per level, "
                         f"z1 first), got {z_dims}")
    hidden = tuple(hidden)
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise ValueError(f"hidden: expected one or more positive widths, got {hidden}")
    widths = (hidden[-1],) + (tuple(level_hidden) if level_hidden else tuple(
        max(hidden[-1] // 2 ** i, 1) for i in range(1, levels)))
    if len(widths) != levels or any(int(w) != w or w < 1 for w in widths):
        raise ValueError(f"level_hidden: expected {levels - 1} positive widths (one per "
                         f"level above the first), got {tuple(level_hidden)}")
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {list(NORMS)}, got {norm!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, "
                         f"got {activation!r}")
    check_free_bits(free_bits, free_bits_per)
    if norm == "batch" and prior == "vamp":
        raise ValueError("norm: batch norm in the bottom-up pass would normalise the "
                         "VampPrior's pseudo-inputs by their own statistics; use "
                         "--norm weight or none with --prior vamp")
    return x_shape, levels, z_dims, hidden, widths


def _check_min_scale(min_scale: float) -> float:
    """``min_scale`` as a float, or a ``ValueError`` unless finite and >= 0."""
    if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) \
            or not math.isfinite(min_scale) or min_scale < 0:
        raise ValueError(f"min_scale: expected a finite number >= 0, got {min_scale!r}")
    return float(min_scale)
