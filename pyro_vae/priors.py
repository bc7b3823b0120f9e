"""Priors p(z): ``nn.Module`` objects whose call returns a distribution.

A prior is called with no arguments and returns a distribution with
``event_shape == (z_dim,)`` and empty batch shape; the ``"data"`` plate broadcasts
it over the batch. Learnable priors hold their parameters as ordinary
``nn.Parameter`` s (and networks as submodules), registered by the model with
``pyro.module("prior", prior)``.

A prior that is built from other parts of the model (the VampPrior uses the encoder
and the guide family) defines ``bind(vae)``; the model calls it once, after it has
built its networks.

=============  ===============================================================
``normal``     N(0, I) (Kingma & Welling 2013)
``learned``    N(mu, diag(sigma^2)) with learnt mu, sigma
``mog``        a mixture of K diagonal Gaussians, all learnt
``vamp``       the VampPrior: the guide's posteriors at K learnt pseudo-inputs
``flow``       N(0, I) pushed through learnt masked autoregressive flows
``class``      p(z | y) = N(mu_y, diag(sigma_y^2)), one learnt Gaussian per class
=============  ===============================================================

A prior that declares ``conditional = True`` (``class``) is called with the label,
``prior(y)``, by models of labelled data; called without it, it is the marginal
``p(z) = sum_y p(y) p(z | y)``.
"""

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

import pyro.distributions as dist
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineAutoregressive
from pyro.nn import AutoRegressiveNN


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


class LearnedNormal(nn.Module):
    """p(z) = N(mu, diag(sigma^2)) with ``mu`` and ``log sigma`` learnt.

    Starts at N(0, I). On its own it adds little (an affine map of z can be absorbed
    by the decoder's first layer) but it is the simplest learnable prior to compare with.
    """

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        self.loc = nn.Parameter(torch.zeros(z_dim))
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


class MixtureOfGaussians(nn.Module):
    r"""p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), everything learnt.

    :param num_components: K. The means start as draws from N(0, I), so the
        components are distinct from the first step; ``pi`` starts uniform and
        ``sigma_k = 1``.
    """

    def __init__(self, z_dim: int, num_components: int = 10):
        super().__init__()
        if int(num_components) != num_components or num_components < 1:
            raise ValueError(
                f"num_components: expected a positive integer, got {num_components!r}"
            )
        self.z_dim, self.num_components = z_dim, int(num_components)
        self.logits = nn.Parameter(torch.zeros(self.num_components))
        self.locs = nn.Parameter(torch.randn(self.num_components, z_dim))
        self.log_scales = nn.Parameter(torch.zeros(self.num_components, z_dim))

    def forward(self) -> dist.Distribution:
        components = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return Mixture(components, self.logits)


def _diagonal_normal(d: dist.Distribution):
    """The elementwise Normal of an ``Independent(Normal)`` with one event dim, else None."""
    if isinstance(d, torch.distributions.Independent) and d.reinterpreted_batch_ndims == 1:
        if isinstance(d.base_dist, torch.distributions.Normal):
            return d.base_dist
    return None


def _diagonal_normal_log_probs(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
    r"""``log N(z; loc_k, diag(scale_k^2))`` for every ``z`` and component: ``[..., K]``.

    ``z: [..., D]``; ``loc, scale: [K, D]``. Expands the square,

        sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . s_k^-2 - 2 z . (mu_k s_k^-2) + mu_k^2 . s_k^-2,

    so the work is two matrix products and the memory ``[..., K]``, not the
    ``[..., K, D]`` of broadcasting (the VampPrior has K = 500 components).
    """
    precision = scale.pow(-2)
    quad = (
        z.pow(2) @ precision.T
        - 2 * z @ (loc * precision).T
        + (loc.pow(2) * precision).sum(-1)
    )
    log_norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    return -0.5 * quad - log_norm


class Mixture(dist.TorchDistribution):
    r"""p(z) = sum_k pi_k p_k(z), with mixing weights ``pi = softmax(logits)``.

    ``components`` batch the K densities in their last batch dim. Unlike Pyro's
    ``MixtureSameFamily`` it evaluates diagonal-Normal components by matrix
    products (see :func:`_diagonal_normal_log_probs`), and others by broadcasting
    ``z`` to ``[..., K, z_dim]`` itself, so components whose ``log_prob`` cannot
    broadcast against ``[..., 1, z_dim]`` work too.

    :param components: a distribution with ``batch_shape == (K,)`` and
        ``event_shape == (z_dim,)``.
    :param logits: ``[K]`` unnormalised log mixing weights (zeros: a uniform mixture).
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, components: dist.Distribution, logits: torch.Tensor, validate_args=None):
        if len(components.batch_shape) != 1 or len(components.event_shape) != 1:
            raise ValueError(
                "components: expected batch_shape (K,) and event_shape (z_dim,), got "
                f"{tuple(components.batch_shape)} and {tuple(components.event_shape)}"
            )
        k = components.batch_shape[0]
        if logits.shape != (k,):
            raise ValueError(f"logits: expected shape ({k},), got {tuple(logits.shape)}")
        self.components, self.log_weights = components, logits.log_softmax(-1)
        super().__init__(torch.Size(), components.event_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return self.components.support

    def expand(self, batch_shape, _instance=None):
        # Every batch element shares the same components; log_prob broadcasts over z.
        new = self._get_checked_instance(Mixture, _instance)
        new.components, new.log_weights = self.components, self.log_weights
        super(Mixture, new).__init__(torch.Size(batch_shape), self.event_shape,
                                     validate_args=False)
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        normal = _diagonal_normal(self.components)
        if normal is not None:
            lp = _diagonal_normal_log_probs(value, normal.loc, normal.scale)
        else:
            k, d = self.log_weights.shape[0], self.event_shape[0]
            lp = self.components.log_prob(value.unsqueeze(-2).expand(value.shape[:-1] + (k, d)))
        lp = (lp + self.log_weights).logsumexp(-1)
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            draws = self.components.sample(shape)  # [*shape, K, z_dim]
            pick = dist.Categorical(logits=self.log_weights).sample(shape)[..., None, None]
            return draws.gather(-2, pick.expand(shape + (1, draws.shape[-1]))).squeeze(-2)


class VampPrior(nn.Module):
    r"""The VampPrior of Tomczak & Welling (2018, eq. 9): the guide at learnt pseudo-inputs.

        p(z) = (1/K) sum_k q0(z | u_k),    u_k in [0, 1]^{C x H x W} learnt

    where ``q0(z | x) = family.base(encoder(x))`` uses the model's own encoder and
    guide family, so the prior follows the posteriors during training. For Gaussian
    guide families ``base`` is the whole of q(z | x), as in the paper. For a flow
    guide it is the Gaussian that the flow starts from: evaluating the flow's own
    density at the model's ``z`` would invert it once per component, ``z_dim``
    sequential network passes each, far too slow for training.

    Pseudo-inputs start near 0.05 with spread 0.01 and are clipped to [0, 1] by a
    hard tanh, as in the paper's code.

    :param z_dim: latent dimension (checked against the model's in :meth:`bind`).
    :param x_shape: image shape ``(C, H, W)`` of the pseudo-inputs.
    :param num_pseudo_inputs: K.
    """

    def __init__(self, z_dim: int, x_shape: Sequence[int], num_pseudo_inputs: int = 500):
        super().__init__()
        if int(num_pseudo_inputs) != num_pseudo_inputs or num_pseudo_inputs < 1:
            raise ValueError(
                f"num_pseudo_inputs: expected a positive integer, got {num_pseudo_inputs!r}"
            )
        self.z_dim, self.x_shape = z_dim, tuple(int(s) for s in x_shape)
        self.pseudo_inputs = nn.Parameter(
            0.05 + 0.01 * torch.randn((int(num_pseudo_inputs),) + self.x_shape)
        )
        # (encoder, family): a tuple keeps them out of this module's submodules, so
        # their parameters are registered once, by the guide, not twice.
        self._guide_parts: Optional[tuple] = None

    def bind(self, vae: nn.Module) -> None:
        """Use ``vae.encoder`` and ``vae.posterior`` for the components."""
        if tuple(vae.x_shape) != self.x_shape or vae.z_dim != self.z_dim:
            raise ValueError(
                f"prior: a VampPrior for x_shape {self.x_shape} and z_dim {self.z_dim} "
                f"cannot serve a model with x_shape {tuple(vae.x_shape)} and z_dim {vae.z_dim}"
            )
        if not callable(getattr(vae.posterior, "base", None)):
            raise TypeError(
                f"prior: the VampPrior needs a guide family with a base(params) method, "
                f"got {type(vae.posterior).__name__}"
            )
        self._guide_parts = (vae.encoder, vae.posterior)

    def forward(self) -> dist.Distribution:
        if self._guide_parts is None:
            raise RuntimeError("VampPrior: call bind(vae) before use (VAE does this)")
        encoder, family = self._guide_parts
        u = F.hardtanh(self.pseudo_inputs, 0.0, 1.0)
        uniform = self.pseudo_inputs.new_zeros(len(self.pseudo_inputs))
        return Mixture(family.base(encoder(u)), uniform)


class ClassNormal(nn.Module):
    r"""p(z | y) = N(mu_y, diag(sigma_y^2)): one learnt Gaussian per class.

    For a class-conditional model: samples of class ``y`` come from the region of the
    latent space its images are encoded to, whether the decoder reads the label or
    the code (an MLP decoder with a wide ``z`` often learns to ignore the label).
    Without a label it is the uniform mixture over classes. The means start as draws
    from N(0, loc_scale^2 I), far enough apart that the classes stay apart: within a
    short run Adam moves each mean by well under one unit per coordinate, so where they
    start is roughly where they end (``docs/variants.md`` measures the effect);
    ``sigma_y = 1``.

    :param num_classes: K; labels are integers in ``[0, K)``, or enumerated ``[K, 1]``.
    :param loc_scale: spread of the initial means.
    """

    conditional = True

    def __init__(self, z_dim: int, num_classes: int = 10, loc_scale: float = 2.0):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
        if not loc_scale > 0:
            raise ValueError(f"loc_scale: expected a positive number, got {loc_scale!r}")
        self.z_dim, self.num_classes = z_dim, int(num_classes)
        # A generator of their own, seeded by one draw of the global stream: the means are
        # reproducible under pyro.set_rng_seed(S), yet not the very normals that sampling
        # with the same seed draws first (which would tie sample i to class i's mean).
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.locs = nn.Parameter(
            loc_scale * torch.randn(self.num_classes, z_dim, generator=generator))
        self.log_scales = nn.Parameter(torch.zeros(self.num_classes, z_dim))

    def forward(self, y: Optional[torch.Tensor] = None) -> dist.Distribution:
        """``y: [...]`` integer labels -> batch shape ``[...]``; ``None``: the mixture."""
        if y is None:
            components = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
            return Mixture(components, self.locs.new_zeros(self.num_classes))
        return dist.Normal(self.locs[y], self.log_scales[y].exp()).to_event(1)


class FlowPrior(nn.Module):
    r"""p(z): N(0, I) pushed through ``num_layers`` masked autoregressive flows::

        f = f_L o ... o f_1,   z = f^{-1}(e),   e ~ N(0, I),
        log p(z) = log N(f(z); 0, I) + log |det df/dz|

    Each ``f_l`` is an affine autoregressive transform (Pyro's
    ``AffineAutoregressive``, a MADE network), used in the direction that makes
    ``log p(z)`` one parallel pass per layer (a MAF, Papamakarios et al. 2017): the
    model only ever evaluates the prior density at the guide's samples. Drawing from
    the prior (``generate``) inverts each layer, ``z_dim`` sequential passes.

    :param num_layers: L.
    :param hidden_dims: hidden widths of each MADE; default ``[3 * z_dim + 1]``.
    """

    def __init__(self, z_dim: int, num_layers: int = 2, hidden_dims: Sequence[int] = ()):
        super().__init__()
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive integer, got {num_layers!r}")
        if z_dim < 2:
            raise ValueError(f"z_dim: the flow prior needs z_dim >= 2, got {z_dim}")
        self.z_dim = z_dim
        hidden = list(hidden_dims) or [3 * z_dim + 1]
        # Alternate layers read z in reverse order (fixed, not Pyro's random default,
        # so a model rebuilt from its config has the same masks).
        orders = [torch.arange(z_dim), torch.arange(z_dim).flip(0)]
        self.layers = nn.ModuleList(
            AffineAutoregressive(
                AutoRegressiveNN(z_dim, hidden, permutation=orders[i % 2]), stable=True
            )
            for i in range(int(num_layers))
        )
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self) -> dist.Distribution:
        base = dist.Normal(self.loc, self.scale).to_event(1)
        # TransformedDistribution applies transforms in order when sampling; the
        # density inverts them, which for ``.inv`` is the parallel (MAF) direction.
        return dist.TransformedDistribution(base, [t.inv for t in reversed(self.layers)])


PRIORS = {
    "normal": StandardNormal,
    "learned": LearnedNormal,
    "mog": MixtureOfGaussians,
    "vamp": VampPrior,
    "flow": FlowPrior,
    "class": ClassNormal,
}
