"""Auxiliary deep generative models (Maaloe, Sonderby, Sonderby & Winther 2016).

M2 with one more latent site: an auxiliary ``a`` that the guide draws first, so that
the label guide q(y | a, x) and the code guide q(z | a, y, x) are mixtures over ``a``
rather than single distributions. The ADGM keeps the generative model of x as M2's
and adds p(a | x, y, z) to it; the skip deep generative model (SDGM) generates x
through ``a``. See ``docs/adgm.md`` for the math beside the code and the measured table.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from ..config import option
from ..guides import DiagonalNormal
from ..likelihoods import LIKELIHOODS
from ..nets import ACTIVATIONS, JointMLP
from ..schedules import SCHEDULES
from ..semisupervised import InterleavedBatches
from .base import Model, batch_size_of
from .cvae import UniformLabels, as_labels, check_class_labels
from .m2 import ENUM_DISCRETE, SemiSupervisedConfig
from .vae import _part


@dataclass
class ADGMConfig(SemiSupervisedConfig):
    """A run of the ADGM (or SDGM): M2's labels and classifier weight, the auxiliary
    latent's width, the networks, and the KL warm-up."""

    model: str = option("adgm", "model name, or package.module:Class to import one")
    z_dim: int = option(100, "dimension of the code z", minimum=1)
    a_dim: int = option(100, "dimension of the auxiliary latent a", minimum=1)
    hidden: Tuple[int, ...] = option((500, 500), "hidden widths of every network, e.g. 500,500")
    activation: str = option("relu", "activation", choices=lambda: ACTIVATIONS)
    batch_norm: bool = option(False, "batch-normalise every hidden layer")
    likelihood: str = option("bernoulli", "likelihood p(x | ...)", choices=lambda: LIKELIHOODS)
    classify_samples: int = option(16, "draws of a ~ q(a | x) averaged in q(y | x)", minimum=1)
    beta: float = option(1.0, "weight of the latent sites' terms (z and a)", positive=True)
    warmup: str = option("none", "KL warm-up schedule of beta: none, linear or cyclical",
                         choices=lambda: SCHEDULES)
    warmup_epochs: float = option(10.0, "epochs of the warm-up ramp", positive=True)


@dataclass
class SDGMConfig(ADGMConfig):
    """A run of the SDGM: the ADGM's options."""

    model: str = option("sdgm", "model name, or package.module:Class to import one")


class ADGM(Model):
    r"""The auxiliary deep generative model: M2 with an auxiliary latent ``a``.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        y_n ~ Cat(1/K)                             site "y"  (observed when labelled)
        z_n ~ N(0, I)                              site "z"
        x_n ~ p(x | decoder(y_n, z_n))              site "x"
        a_n ~ N(aux_decoder(x_n, y_n, z_n))         site "a"

    Guide (``guide``)::

        a_n ~ N(aux_encoder(x_n))                  site "a"
        y_n ~ Cat(softmax(classifier(a_n, x_n)))   site "y"  (only when unlabelled)
        z_n ~ N(encoder(a_n, y_n, x_n))            site "z"

    Marginalising ``a`` leaves M2's p(x, y, z) untouched, while the guide's
    q(y, z | x) = int q(a | x) q(y | a, x) q(z | a, y, x) da is a continuous mixture,
    more flexible than M2's (Maaloe et al. 2016, eq. 8). A labelled batch ``(x, y)``
    observes ``"y"`` and adds the factor ``"classification"``,
    ``alpha * log q(y_n | a_n, x_n)`` with ``a_n`` the guide's draw (eq. 14); an
    unlabelled batch ``(x,)`` enumerates ``"y"`` over its ``K`` values under
    ``TraceEnum_ELBO`` (``enum_discrete="parallel"``), exactly as M2 does (eq. 13).

    The label's posterior for classifying is ``q(y | x) = E_{q(a|x)} q(y | a, x)``,
    averaged over ``classify_samples`` draws of ``a``.

    :param x_shape: image shape ``(C, H, W)``. :param num_classes: ``K``.
    :param z_dim: dimension of ``z``. :param a_dim: dimension of ``a``.
    :param hidden: hidden widths of every network (MLPs on the flattened image).
    :param activation: a key of :data:`pyro_vae.nets.ACTIVATIONS`.
    :param batch_norm: batch-normalise the hidden layers.
    :param likelihood: a key of :data:`pyro_vae.likelihoods.LIKELIHOODS` or an object.
    :param alpha: weight of the classification factor (0 turns it off).
    :param enum_discrete: ``"parallel"``, ``"sequential"`` or ``"none"`` (sample y).
    :param classify_samples: draws of ``a`` in :meth:`classify`.
    :param beta: scale of the ``"z"`` and ``"a"`` sites in model and guide (warm-up).
    :param name: this instance's scope in Pyro's param store (default: unique).
    """

    uses_labels = True
    semi_supervised = True
    classifies = True
    elbo = "TraceEnum_ELBO"
    capturable = False  # the label is enumerated through TraceEnum_ELBO
    config_class = ADGMConfig
    skip = False  # SDGM: x is generated from a as well, and a from (y, z) alone

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 z_dim: int = 100, a_dim: int = 100, hidden: Sequence[int] = (500, 500),
                 activation: str = "relu", batch_norm: bool = False,
                 likelihood: Union[str, nn.Module] = "bernoulli", alpha: float = 200.0,
                 enum_discrete: str = "parallel", classify_samples: int = 16,
                 beta: float = 1.0, name: Optional[str] = None):
        _check_arguments(x_shape, num_classes, z_dim, a_dim, hidden, alpha, enum_discrete,
                         classify_samples, beta)
        super().__init__(name)
        self.x_shape = tuple(int(s) for s in x_shape)
        self.num_classes, self.z_dim, self.a_dim = int(num_classes), int(z_dim), int(a_dim)
        self.alpha, self.enum_discrete, self.beta = float(alpha), enum_discrete, float(beta)
        self.classify_samples = int(classify_samples)
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood)
        self.gaussian_z, self.gaussian_a = DiagonalNormal(self.z_dim), DiagonalNormal(self.a_dim)
        d, k, z, a = self.x_shape[0] * self.x_shape[1] * self.x_shape[2], self.num_classes, \
            self.z_dim, self.a_dim
        hidden = tuple(hidden)

        def net(in_dims, out):
            return JointMLP(in_dims, hidden, out, activation, batch_norm)

        pixels = self.likelihood.params_per_pixel * d
        self.aux_encoder = net([d], 2 * a)                  # q(a | x)
        self.classifier = net([a, d], k)                    # q(y | a, x)
        self.encoder = net([a, k, d], 2 * z)                # q(z | a, y, x)
        if self.skip:
            self.aux_decoder = net([k, z], 2 * a)           # p(a | y, z)
            self.decoder = net([a, k, z], pixels)           # p(x | a, y, z)
        else:
            self.decoder = net([k, z], pixels)              # p(x | y, z)
            self.aux_decoder = net([d, k, z], 2 * a)        # p(a | x, y, z)
        self.label_prior = UniformLabels(self.num_classes)
        self.register_buffer("z_loc", torch.zeros(self.z_dim))

    # ------------------------------------------------------------ networks
    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C, H, W]`` -> ``[..., C H W]``."""
        return x.flatten(-3)

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """Integer labels ``[...]`` -> one-hot ``[..., K]`` (float)."""
        return F.one_hot(y, self.num_classes).to(self.z_loc)

    def z_prior(self, n: int) -> dist.Distribution:
        """p(z) = N(0, I), batch ``[n]``."""
        return dist.Normal(self.z_loc, 1.0).to_event(1).expand([n])

    def pixels(self, params: torch.Tensor) -> dist.Distribution:
        """p(x | ...) from the decoder's ``[..., P C H W]``."""
        shape = (self.likelihood.params_per_pixel, *self.x_shape)
        return self.likelihood(params.unflatten(-1, shape))

    def decode_params(self, y1h: torch.Tensor, z: torch.Tensor,
                      a: Optional[torch.Tensor]) -> torch.Tensor:
        """The decoder's output for one-hot labels, codes and (SDGM) auxiliaries."""
        return self.decoder(a, y1h, z) if self.skip else self.decoder(y1h, z)

    def aux_params(self, x: Optional[torch.Tensor], y1h: torch.Tensor,
                   z: torch.Tensor) -> torch.Tensor:
        """p(a | x, y, z) (ADGM) or p(a | y, z) (SDGM) parameters."""
        return self.aux_decoder(y1h, z) if self.skip else self.aux_decoder(self.flat(x), y1h, z)

    def label_posterior(self, a: torch.Tensor, x: torch.Tensor) -> dist.Categorical:
        """q(y | a, x) = Cat(softmax(classifier(a, x)))."""
        return dist.Categorical(logits=self.classifier(a, self.flat(x)))

    # ----------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(y) p(z) p(x | y, z) p(a | x, y, z) (ADGM), or p(y) p(z) p(a | y, z)
        p(x | a, y, z) (SDGM), and for labelled ``(x, y)`` the classification factor.
        ``x: [B, C, H, W]`` observed, or ``None`` to draw ``num`` images. Returns ``x``."""
        self.register("decoder", "aux_decoder", "likelihood")
        n = batch_size_of(x, y, num)
        with pyro.plate("data", n):
            label = pyro.sample("y", self.label_prior(), obs=y)
            y1h = self.one_hot(label)
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", self.z_prior(n))
            if self.skip:
                with poutine.scale(scale=self.beta):
                    a = pyro.sample("a", self.gaussian_a(self.aux_params(None, y1h, z)))
                x = pyro.sample("x", self.pixels(self.decode_params(y1h, z, a)), obs=x)
            else:
                x = pyro.sample("x", self.pixels(self.decode_params(y1h, z, None)), obs=x)
                with poutine.scale(scale=self.beta):
                    a = pyro.sample("a", self.gaussian_a(self.aux_params(x, y1h, z)))
            if y is not None and self.alpha > 0 and x is not None:
                self.register("classifier")
                pyro.factor("classification", self.alpha * self.label_posterior(a, x).log_prob(y))
        return x

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """q(a | x) q(y | a, x) q(z | a, y, x); ``y`` observed when given, else enumerated
        (or drawn). ``x: [B, C, H, W]``. Returns ``z``."""
        if x is None:
            raise ValueError("x: the guide needs images; for the prior predictive use "
                             "Predictive(model) without a guide")
        self.register("aux_encoder", "classifier", "encoder")
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                a = pyro.sample("a", self.gaussian_a(self.aux_encoder(self.flat(x))))
            if y is None:
                infer = {} if self.enum_discrete == "none" else {"enumerate": self.enum_discrete}
                y = pyro.sample("y", self.label_posterior(a, x), infer=infer)
            with poutine.scale(scale=self.beta):
                return pyro.sample("z", self.gaussian_z(
                    self.encoder(a, self.one_hot(y), self.flat(x))))

    # ---------------------------------------------------------- the runner
    def check_elbo(self, elbo) -> None:
        """Enumerating the label needs ``TraceEnum_ELBO``."""
        if self.enum_discrete != "none" and not isinstance(elbo, pyro.infer.TraceEnum_ELBO):
            raise ValueError(
                f"elbo: {type(self).__name__} enumerates its label and needs TraceEnum_ELBO "
                f"(its default), got {type(elbo).__name__}; or build it with "
                "enum_discrete='none' to sample the label"
            )

    def batching(self, batch_size: int) -> InterleavedBatches:
        """Unlabelled batches ``(x,)`` with a labelled ``(x, y)`` batch after each."""
        return InterleavedBatches(batch_size)

    def check_labels(self, y: torch.Tensor, num: int, name: str = "labels",
                     allow_missing: bool = False) -> None:
        check_class_labels(y, num, self.num_classes, name, allow_missing)

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        super().check_data(x, name)
        self.likelihood.check(x, name)

    # ----------------------------------------------------------- utilities
    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``q(y | x) = E_{q(a|x)} q(y | a, x)`` over ``classify_samples`` draws of ``a``:
        ``x: [B, C, H, W]`` -> ``[B, K]``."""
        q_a = self.gaussian_a(self.aux_encoder(self.flat(x)))
        a = q_a.sample((self.classify_samples,))                      # [S, B, A]
        return self.label_posterior(a, x).probs.mean(0)

    def _labels(self, y, num: int) -> torch.Tensor:
        return as_labels(y, num, self.num_classes, self.z_loc.device, type(self).__name__)

    @property
    def latent_shape(self) -> Tuple[int]:
        """``(z_dim,)``: the code ``z`` that :meth:`decode` reads, with a label."""
        return (self.z_dim,)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The mean of q(z | a, y, x) at the mean of q(a | x), with ``y`` given or the
        most probable label: ``[B, z_dim]``."""
        a = self.gaussian_a.loc(self.aux_encoder(self.flat(x)))
        y = self.classify(x).argmax(-1) if y is None else self._labels(y, len(x))
        return self.gaussian_z.loc(self.encoder(a, self.one_hot(y), self.flat(x)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """The mean image of p(x | y, z) (SDGM: at the mean of p(a | y, z)) for
        ``z: [N, z_dim]`` and labels ``y`` (one, or ``[N]``): ``[N, C, H, W]``."""
        y1h = self.one_hot(self._labels(y, len(z)))
        a = self.gaussian_a.loc(self.aux_params(None, y1h, z)) if self.skip else None
        return self.likelihood.mean(self.decode_params(y1h, z, a).unflatten(
            -1, (self.likelihood.params_per_pixel, *self.x_shape)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """:meth:`decode` of :meth:`encode`, with ``y`` given or the most probable label."""
        y = self.classify(x).argmax(-1) if y is None else self._labels(y, len(x))
        return self.decode(self.encode(x, y), y)

    def latent_draws(self, num: int, y=None) -> torch.Tensor:
        """``num`` draws of p(z) = N(0, I): ``[num, z_dim]``."""
        return self.z_prior(num).sample()

    @torch.no_grad()
    def generate(self, num: int, y=None) -> torch.Tensor:
        """``num`` images of class ``y`` (one, ``[num]``, or ``None``: drawn from p(y)):
        ``[num, C, H, W]``."""
        y = self.label_prior().sample((num,)) if y is None else self._labels(y, num)
        return self.decode(self.latent_draws(num), y)


class SDGM(ADGM):
    r"""The skip deep generative model: the ADGM with ``a`` on the generative path.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        y_n ~ Cat(1/K)                             site "y"  (observed when labelled)
        z_n ~ N(0, I)                              site "z"
        a_n ~ N(aux_decoder(y_n, z_n))              site "a"
        x_n ~ p(x | decoder(a_n, y_n, z_n))         site "x"

    and the ADGM's guide, classification factor and enumeration. With ``a`` between
    ``(y, z)`` and ``x``, the model is a two-stochastic-layer generative model whose
    decoder also skips to ``(y, z)`` (Maaloe et al. 2016, section 2.3).
    """

    skip = True
    config_class = SDGMConfig


def _check_arguments(x_shape, num_classes, z_dim, a_dim, hidden, alpha, enum_discrete,
                     classify_samples, beta) -> None:
    if len(tuple(x_shape)) != 3 or min(x_shape) < 1:
        raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {tuple(x_shape)}")
    for name, value in (("num_classes", num_classes), ("z_dim", z_dim), ("a_dim", a_dim),
                        ("classify_samples", classify_samples)):
        if isinstance(value, bool) or int(value) != value or value < (2 if name == "num_classes"
                                                                     else 1):
            raise ValueError(f"{name}: expected a positive integer"
                             f"{' >= 2' if name == 'num_classes' else ''}, got {value!r}")
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise ValueError(f"hidden: expected positive layer widths, got {tuple(hidden)}")
    if not alpha >= 0:
        raise ValueError(f"alpha: expected a non-negative weight, got {alpha!r}")
    if enum_discrete not in ENUM_DISCRETE:
        raise ValueError(f"enum_discrete: expected one of {ENUM_DISCRETE}, got {enum_discrete!r}")
    if not beta > 0:
        raise ValueError(f"beta: expected a positive number, got {beta!r}")
