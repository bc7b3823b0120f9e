"""Likelihoods p(x | z): turn decoder outputs into a distribution over images.

A likelihood object states how many decoder outputs it needs per pixel
(``params_per_pixel``), builds the distribution from them (``__call__``), gives the
image it would show a person (``mean``), and checks that data lie in its support
(``check``) before any training step.

Decoder output ``params: [..., P, C, H, W]``; the returned distribution has
``event_shape == (C, H, W)``, so ``log_prob`` sums over pixels and keeps one value
per image.

========================  =====================================================
``bernoulli``             binary pixels (or the cross-entropy on intensities)
``continuous-bernoulli``  intensities in [0, 1], a normalised density
``normal``                N(mu(z), sigma(z)^2), both output by the decoder
``normal-fixed``          N(mu(z), sigma^2), sigma a fixed number
========================  =====================================================
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

import pyro.distributions as dist
from pyro.distributions import constraints


def _check_unit_interval(kind: str, x: torch.Tensor, name: str) -> None:
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name}: the {kind} likelihood needs values in [0, 1], "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )


def _check_finite(kind: str, x: torch.Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: the {kind} likelihood needs finite values, got NaN or inf")


class Bernoulli(nn.Module):
    """x ~ Bernoulli(sigmoid(logits)), independent over pixels.

    log p(x | z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i),  p = sigmoid(decoder(z)).

    For binary data this is a normalised likelihood. For intensities in [0, 1] it is
    the cross-entropy that the reference VAE implementations train on (not a
    normalised density over [0, 1]; use ``--binarize dynamic`` for likelihoods
    comparable with the literature, or the ``continuous-bernoulli`` likelihood).
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
        _check_unit_interval("bernoulli", x, name)


class ContinuousBernoulliLogits(dist.TorchDistribution):
    r"""The continuous Bernoulli distribution (Loaiza-Ganem & Cunningham 2019) on [0, 1].

        p(x | eta) = C(eta) exp(x eta - softplus(eta)),
        C(eta)     = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = eta / tanh(eta / 2),

    with ``lambda = sigmoid(eta)`` and ``C(0) = 2``. Written in the logits ``eta``
    because ``torch.distributions.ContinuousBernoulli`` computes ``C`` from
    ``lambda``, which saturates in float32 beyond ``|eta| ~ 16``: there its
    normaliser stops growing (``log C(100)`` is 2.77 instead of 4.61), which
    understates every saturated pixel's log-density by up to ``log |eta| - 2.77``.
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, logits: torch.Tensor, validate_args=None):
        self.logits = logits
        super().__init__(logits.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ContinuousBernoulliLogits, _instance)
        new.logits = self.logits.expand(batch_shape)
        super(ContinuousBernoulliLogits, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @staticmethod
    def log_normalizer(logits: torch.Tensor) -> torch.Tensor:
        """``log C(eta)``, elementwise; ``log(2 + eta^2 / 6)`` near 0, where the
        ratio is 0/0 (the next term, ``-eta^4 / 360``, is below float32 precision)."""
        small = logits.abs() < 1e-3
        safe = torch.where(small, torch.ones_like(logits), logits)
        return torch.where(
            small, torch.log(2 + logits.pow(2) / 6), torch.log(safe / torch.tanh(safe / 2))
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        eta = self.logits
        return value * eta - F.softplus(eta) + self.log_normalizer(eta)

    @property
    def mean(self) -> torch.Tensor:
        """``E[x] = 1 / (1 - exp(-eta)) - 1 / eta``; a Taylor series near 0, where the
        two terms cancel."""
        eta = self.logits
        small = eta.abs() < 0.1
        safe = torch.where(small, torch.ones_like(eta), eta)
        exact = 1 / -torch.expm1(-safe) - 1 / safe
        return torch.where(small, 0.5 + eta / 12 - eta.pow(3) / 720, exact)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """The inverse CDF at ``u ~ U(0, 1)``: ``log(1 + u (e^eta - 1)) / eta``,
        rewritten for positive ``eta`` so that ``e^eta`` never overflows."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            eta = self.logits.expand(shape)
            u = torch.rand(shape, dtype=eta.dtype, device=eta.device)
            small = eta.abs() < 1e-3
            safe = torch.where(small, torch.ones_like(eta), eta)
            neg = torch.log1p(u * torch.expm1(safe.clamp(max=0))) / safe
            pos = 1 + torch.log(u + (1 - u) * torch.exp(-safe.clamp(min=0))) / safe
            x = torch.where(safe < 0, neg, pos)
            return torch.where(small, u, x).clamp(0, 1)


class ContinuousBernoulli(nn.Module):
    """x ~ ContinuousBernoulli(logits = decoder(z)), independent over pixels.

    The normalised counterpart of the Bernoulli cross-entropy for intensities in
    [0, 1] (Loaiza-Ganem & Cunningham 2019): log p(x | z) adds ``log C(eta)`` per
    pixel; see :class:`ContinuousBernoulliLogits`. ``mean`` is E[x | z], which is
    not ``sigmoid(eta)``.
    """

    params_per_pixel = 1

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return ContinuousBernoulliLogits(params.squeeze(-4)).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return ContinuousBernoulliLogits(params.squeeze(-4)).mean

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        _check_unit_interval("continuous-bernoulli", x, name)


class LearnedScaleNormal(nn.Module):
    r"""x ~ N(mu(z), sigma(z)^2), independent over pixels, with ``mu`` and ``sigma``
    both output by the decoder.

        log p(x | z) = sum_i -log sigma_i - (x_i - mu_i)^2 / (2 sigma_i^2) - log(2 pi) / 2
        sigma = min_scale + softplus(decoder output)

    A density on the real line, so defined for any finite data; its values are
    comparable with discrete likelihoods only after dequantisation. ``min_scale``
    keeps the density bounded where a pixel is constant in the data (MNIST's
    background is exactly 0, where the maximum-likelihood sigma would be 0).

    :param min_scale: the floor on sigma.
    """

    params_per_pixel = 2

    def __init__(self, min_scale: float = 1e-2):
        super().__init__()
        if not min_scale > 0:
            raise ValueError(f"min_scale: expected a positive number, got {min_scale!r}")
        self.min_scale = float(min_scale)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = params.unbind(-4)
        return dist.Normal(loc, self.min_scale + F.softplus(raw_scale)).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.select(-4, 0)

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        _check_finite("normal", x, name)


class FixedScaleNormal(nn.Module):
    r"""x ~ N(mu(z), sigma^2), independent over pixels, with a fixed sigma.

        log p(x | z) = -||x - mu(z)||^2 / (2 sigma^2) - D log sigma - D log(2 pi) / 2

    Up to constants, the squared-error autoencoder loss with the KL weighted by
    ``2 sigma^2``: a smaller sigma trades sample quality for sharper reconstructions.

    :param scale: sigma.
    """

    params_per_pixel = 1

    def __init__(self, scale: float = 0.1):
        super().__init__()
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
        self.scale = float(scale)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc = params.squeeze(-4)
        return dist.Normal(loc, torch.full_like(loc, self.scale)).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.squeeze(-4)

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        _check_finite("normal", x, name)


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "normal": LearnedScaleNormal,
    "normal-fixed": FixedScaleNormal,
}
