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
``dlogistic``             8-bit intensities k/255, a discretised logistic mixture
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


class DiscretizedLogisticMixture(dist.TorchDistribution):
    r"""A mixture of ``K`` logistics, discretised to the 256 levels ``k / 255`` of [0, 1]
    (Salimans et al. 2017, PixelCNN++, eq. 2), one independent mixture per element.

    With ``u = k / 255``, half a bin ``d = 1 / 510`` and ``sigma`` the logistic CDF::

        P(x = u) = sum_j pi_j [F_j(u + d) - F_j(u - d)],   F_j(t) = sigma((t - mu_j) / s_j)

    where ``F_j(u - d)`` is 0 at ``k = 0`` and ``F_j(u + d)`` is 1 at ``k = 255``: the edge
    levels take the tails, so the 256 masses sum to 1. The paper works on [-1, 1]; this is
    the same distribution on [0, 1] with ``mu`` and ``s`` halved in scale.

    An interior bin's mass is computed from the exact identity, with ``a, b`` the two
    standardised bin edges::

        sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - exp(b - a)),

    in logs: ``logsigmoid(a) + logsigmoid(-b) + log(-expm1(b - a))``. Every term is
    finite, so no bin underflows to ``log 0``, in either tail; this replaces the paper
    code's switch to the mid-bin density where ``F(a) - F(b) < 1e-5``.

    ``log_scale`` is floored at :attr:`MIN_LOG_SCALE`, as in the paper's code: below it a
    component already puts all its mass in one bin and only the gradients would grow.

    A value ``x`` in [0, 1] is read at its nearest level ``round(255 x) / 255``, which is
    what storing it as an 8-bit image does.

    :param logits: mixture logits ``[..., K]``.
    :param loc: component locations ``mu`` on the [0, 1] intensity scale, ``[..., K]``.
    :param log_scale: component log-scales ``log s``, ``[..., K]``.
    """

    arg_constraints = {
        "logits": constraints.real,
        "loc": constraints.real,
        "log_scale": constraints.real,
    }
    support = constraints.unit_interval
    has_rsample = False
    levels = 256
    MIN_LOG_SCALE = -7.0 - math.log(2.0)  # the paper's floor of -7 on [-1, 1], moved to [0, 1]

    def __init__(self, logits, loc, log_scale, validate_args=None):
        self.logits, self.loc, self.log_scale = torch.broadcast_tensors(logits, loc, log_scale)
        super().__init__(self.logits.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.logits.shape[-1:]
        new.logits = self.logits.expand(shape)
        new.loc = self.loc.expand(shape)
        new.log_scale = self.log_scale.expand(shape)
        super(DiscretizedLogisticMixture, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        last = self.levels - 1
        k = (value * last).round().clamp(0, last).unsqueeze(-1)  # [..., 1], level index
        inv_s = torch.exp(-self.log_scale.clamp(min=self.MIN_LOG_SCALE))
        centred = k / last - self.loc
        a = (centred + 0.5 / last) * inv_s  # upper bin edge, standardised
        b = (centred - 0.5 / last) * inv_s  # lower bin edge
        # a - b from the bin width, not by subtracting two large numbers
        interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-inv_s / last))
        # The edge levels integrate out to -inf and +inf; all three branches are finite,
        # so ``where`` passes no NaN gradients.
        log_mass = torch.where(
            k == 0, F.logsigmoid(a), torch.where(k == last, F.logsigmoid(-b), interior)
        )
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + log_mass, -1)

    @property
    def mean(self) -> torch.Tensor:
        """The mixture mean ``sum_j pi_j mu_j`` clamped to [0, 1]: the image to show.
        Not exactly E[x], which the edge levels pull towards [0, 1]'s interior."""
        return (torch.softmax(self.logits, -1) * self.loc).sum(-1).clamp(0, 1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Pick a component, draw ``mu + s log(u / (1 - u))``, and round to the nearest
        level: rounding a logistic draw is exactly the binning above, the clamp to [0, 1]
        gives the edge levels their tails."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            j = dist.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            loc = self.loc.expand(shape + self.loc.shape[-1:]).gather(-1, j).squeeze(-1)
            log_s = self.log_scale.clamp(min=self.MIN_LOG_SCALE)
            s = log_s.expand(shape + log_s.shape[-1:]).gather(-1, j).squeeze(-1).exp()
            tiny = torch.finfo(loc.dtype).tiny
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp(tiny, 1 - 1e-7)
            x = loc + s * (torch.log(u) - torch.log1p(-u))
            last = self.levels - 1
            return (x * last).round().clamp(0, last) / last


class DiscretizedLogistic(nn.Module):
    r"""x ~ a discretised mixture of ``K`` logistics per pixel and channel (PixelCNN++).

        log p(x | z) = sum_{c,h,w} log sum_j pi_j [F_j(x + 1/510) - F_j(x - 1/510)]

    for 8-bit images stored as intensities ``k / 255`` in [0, 1]; see
    :class:`DiscretizedLogisticMixture`. A normalised likelihood over the 256 levels, so
    its values are directly comparable with published bits per dimension. Each channel
    of a pixel is its own mixture: unlike the paper, there is no coupling of R, G and B
    through the mixture's component or linear terms in the means.

    The decoder gives ``P = 3 K`` numbers per pixel and channel, in three blocks along
    dimension ``-4``: ``K`` mixture logits, ``K`` locations (intensity scale), ``K``
    log-scales.

    :param num_components: ``K``.
    """

    def __init__(self, num_components: int = 5):
        super().__init__()
        if int(num_components) != num_components or num_components < 1:
            raise ValueError(
                f"num_components: expected a positive integer, got {num_components!r}"
            )
        self.num_components = int(num_components)
        self.params_per_pixel = 3 * self.num_components

    def _dist(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        # [..., 3K, C, H, W] -> three [..., C, H, W, K]: the mixture dimension last.
        logits, loc, log_scale = params.movedim(-4, -1).chunk(3, -1)
        return DiscretizedLogisticMixture(logits, loc, log_scale)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return self._dist(params).to_event(3)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self._dist(params).mean

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        _check_unit_interval("dlogistic", x, name)


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "normal": LearnedScaleNormal,
    "normal-fixed": FixedScaleNormal,
    "dlogistic": DiscretizedLogistic,
}
