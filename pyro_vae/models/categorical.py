"""The categorical VAE of Jang, Gu & Poole (2017) and Maddison, Mnih & Teh (2017).

A VAE whose code is ``N`` categorical variables of ``K`` classes each, trained with
one of three gradient estimators for the discrete site: the Gumbel-softmax (Concrete)
relaxation, its straight-through variant, or the score function with a baseline.
See ``docs/categorical.md`` for the math beside the code and the measured table.
"""

import contextlib
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.distributions.relaxed_straight_through import QuantizeCategorical
from pyro.infer import TraceGraph_ELBO

from .. import explore
from ..config import TrainConfig, option
from ..likelihoods import LIKELIHOODS
from ..nets import ACTIVATIONS, Decoder, Encoder
from .base import Model, batch_size_of, check_output
from .vae import _part

ESTIMATORS = ("relaxed", "straight-through", "score-function")
BASELINES = ("nn", "average", "none")
KL_TERMS = ("discrete", "relaxed")
# Relaxed draws are exp of (log-probabilities + Gumbel noise) / tau; a class whose
# log-probability sits far below the others underflows to 0 in float32 and its log in
# the relaxed density is -inf. With log q floored at -20 (q >= 2e-9) and float32's
# Gumbel draws within [-2.8, 15.9], every coordinate of a draw is at least
# exp(-38.7 / tau): representable down to tau = 0.4, and no probability that matters moves.
LOG_PROB_FLOOR = -20.0
MIN_TEMPERATURE = 0.4


class StraightThrough(dist.RelaxedOneHotCategoricalStraightThrough):
    """Pyro's straight-through relaxed categorical, without its clamp of the relaxed draw.

    ``rsample`` returns the one-hot ``argmax`` of the relaxed draw ``y`` (the gradient
    passes to ``y`` unchanged) and ``log_prob`` evaluates the relaxed density at ``y``.
    Pyro's class clamps ``y`` to ``[eps, 1 - eps]`` first; the clamped point is neither
    the draw nor on the simplex, and ``log p_tau - log q_tau`` there grows without
    bound as ``q`` sharpens, so training drives the encoder into the clamp (a training
    loss of -2000 nats on MNIST). Here ``y`` is used as drawn; :data:`LOG_PROB_FLOOR`
    keeps it representable.
    """

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        soft = super(dist.RelaxedOneHotCategoricalStraightThrough, self).rsample(sample_shape)
        return QuantizeCategorical.apply(soft)


@dataclass
class CategoricalVAEConfig(TrainConfig):
    """A run of the categorical VAE: its latents, networks, estimator and temperature."""

    model: str = option("categorical", "model name, or package.module:Class to import one")
    num_latents: int = option(30, "categorical latent variables N", minimum=1)
    num_categories: int = option(10, "classes K of each categorical latent", minimum=2)
    hidden: Tuple[int, ...] = option((512, 256), "hidden widths of the encoder, e.g. 512,256; "
                                     "the decoder mirrors them")
    activation: str = option("relu", "activation", choices=lambda: ACTIVATIONS)
    likelihood: str = option("bernoulli", "likelihood p(x|z)", choices=lambda: LIKELIHOODS)
    estimator: str = option("relaxed", "gradient estimator of the discrete code: relaxed "
                            "(Gumbel-softmax), straight-through, or score-function "
                            "(TraceGraph_ELBO with a baseline)", choices=lambda: ESTIMATORS)
    kl: str = option("discrete", "KL term of the relaxed estimators' training objective: "
                     "discrete (the analytic KL of the categoricals, Jang et al.'s surrogate) "
                     "or relaxed (Monte-Carlo KL of the relaxed pair, a bound on the relaxed "
                     "model); score-function takes discrete only", choices=lambda: KL_TERMS)
    baseline: str = option("nn", "score-function baseline: nn (learnt from x), average "
                           "(decaying average of the cost) or none", choices=lambda: BASELINES)
    temperature: float = option(1.0, "initial temperature tau0 of the relaxation",
                                positive=True)
    temperature_min: float = option(0.5, "floor tau_min of the annealed temperature",
                                    positive=True)
    temperature_rate: float = option(0.05, "annealing rate r per epoch: tau(t) = max(tau_min, "
                                     "tau0 exp(-r t)), t in epochs; 0 keeps tau0")


class CategoricalVAE(Model):
    r"""A VAE with ``N`` categorical latents of ``K`` classes (Jang et al. 2017).

    Generative story (``model``), for each image ``b`` in the plate ``"data"``::

        z_b ~ prod_n OneHotCategorical(1/K, ..., 1/K)    site "z", [N, K] one-hot
        x_b ~ Bernoulli(sigmoid(decoder(flatten(z_b))))   site "x"

    Guide (``guide``), amortised over the same plate::

        z_b ~ prod_n OneHotCategorical(softmax(encoder(x_b)_n))    site "z"

    ``z`` has event shape ``[N, K]`` (the ``N`` categoricals are independent given
    ``x``); the decoder reads it flattened to ``N K`` inputs.

    Training needs a gradient through the discrete draw; ``estimator`` picks how:

    - ``"relaxed"``: guide and prior are the Concrete / Gumbel-softmax relaxations at
      temperature ``tau``, ``z = softmax((log q + g) / tau)``, ``g ~ Gumbel(0, 1)``
      (reparameterised), and the decoder reads the relaxed draw.
    - ``"straight-through"``: the same relaxed pair, but the decoder reads the
      one-hot ``argmax`` of the relaxed draw while gradients flow through the relaxed
      draw (Jang et al. 2017; Pyro's ``RelaxedOneHotCategoricalStraightThrough``,
      as :class:`StraightThrough`).
    - ``"score-function"``: the exact ``OneHotCategorical`` in guide and prior,
      trained with ``TraceGraph_ELBO`` (its default here; any other ELBO is refused),
      which differentiates ``E_q[f(z)]`` as ``E_q[(f(z) - b(x)) grad log q(z | x)]``
      with the baseline ``b`` learnt from ``x`` (``"nn"``), a decaying average of
      ``f`` (``"average"``) or none. Its objective is the discrete model's ELBO,
      whose KL is already the discrete one, so it takes ``kl="discrete"`` only.

    For the two relaxed estimators, ``kl`` picks the KL term of the training objective:

    - ``"discrete"`` (default), Jang et al.'s objective: the relaxed draw for the
      reconstruction term and the analytic KL of the *discrete* distributions,
      ``E_q_tau[log p(x | z)] - sum_n KL(Cat(q_n) || Cat(p_n))``, with
      ``KL = sum_n (log K + sum_k q_nk log q_nk)`` for the uniform prior. The ``"z"``
      site keeps its relaxed draw but is masked (``poutine.mask(mask=False)`` in
      model and guide), so its log-densities do not enter the objective, and the KL
      enters as the guide's factor ``"kl"`` with value ``+KL`` per image (the ELBO
      subtracts the guide's log-densities), an auxiliary site that
      :mod:`pyro_vae.evaluate` leaves out. This is a *surrogate*: the two terms
      belong to different models, and it is a bound on neither the relaxed model's
      log-likelihood nor the discrete one's.
    - ``"relaxed"``: the prior is the relaxed uniform at the *same* ``tau``, so the
      objective is the ELBO of the relaxed model, a proper bound whose KL term is
      the Monte-Carlo ``log q_tau(z | x) - log p_tau(z)`` (Maddison et al. 2017). At
      one temperature this KL does not depend on ``tau`` and exceeds the discrete
      KL, the more so the more confident ``q`` (``docs/categorical.md``): it drives
      posteriors towards uniform.

    Whatever the estimator, the relaxation is a device of training only: it is used
    while the module is in training mode *and* autograd records (an SVI step). In
    eval mode, and under ``torch.no_grad()`` as in :mod:`pyro_vae.evaluate`, guide
    and prior are the exact ``OneHotCategorical`` s, so ``elbo_terms`` reports the
    discrete model's -ELBO with the closed-form KL
    ``sum_n (log K + sum_k q_nk log q_nk)`` and ``iw_log_likelihood`` its NLL.

    The temperature is set from outside before each step (``model.temperature``;
    :meth:`temperature_at` is the schedule ``tau(t) = max(tau_min, tau0 exp(-r t))``
    with ``t`` in epochs, which :class:`~pyro_vae.training.callbacks.Temperature`
    applies during training).

    :param x_shape: image shape ``(C, H, W)``.
    :param num_latents: ``N``, the number of categorical latents (paper: 30).
    :param num_categories: ``K``, classes per latent (paper: 10).
    :param hidden: encoder widths; the decoder mirrors them (paper: 512, 256).
    :param activation: a key of :data:`pyro_vae.nets.ACTIVATIONS`.
    :param likelihood: a key of :data:`pyro_vae.likelihoods.LIKELIHOODS` or an object.
    :param estimator: ``"relaxed"``, ``"straight-through"`` or ``"score-function"``.
    :param kl: the relaxed estimators' KL term, ``"discrete"`` (surrogate) or ``"relaxed"``.
    :param baseline: the score-function baseline, ``"nn"``, ``"average"`` or ``"none"``.
    :param temperature: ``tau0``, also the temperature until a schedule sets another.
    :param temperature_min: ``tau_min``.
    :param temperature_rate: ``r`` per epoch (0: constant ``tau0``).
    :param encoder: any ``nn.Module`` mapping ``x: [B, C, H, W]`` to logits ``[B, N K]``.
    :param decoder: any ``nn.Module`` mapping ``[..., N K]`` to the likelihood's
        ``[..., P, C, H, W]``.
    :param name: this instance's scope in Pyro's param store (default: unique).
    """

    config_class = CategoricalVAEConfig
    capturable = False  # the temperature changes between steps
    latent_kind = "categorical"

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), num_latents: int = 30,
                 num_categories: int = 10, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", likelihood: Union[str, nn.Module] = "bernoulli",
                 estimator: str = "relaxed", kl: str = "discrete", baseline: str = "nn",
                 temperature: float = 1.0,
                 temperature_min: float = 0.5, temperature_rate: float = 0.05,
                 encoder: Optional[nn.Module] = None, decoder: Optional[nn.Module] = None,
                 name: Optional[str] = None):
        _check_arguments(x_shape, num_latents, num_categories, estimator, kl, baseline,
                         temperature, temperature_min, temperature_rate)
        super().__init__(name)
        self.x_shape = tuple(int(s) for s in x_shape)
        self.num_latents, self.num_categories = int(num_latents), int(num_categories)
        self.hidden, self.activation = tuple(hidden), activation
        self.estimator, self.kl, self.baseline = estimator, kl, baseline
        self.temperature = self.temperature0 = float(temperature)
        self.temperature_min = float(temperature_min)
        self.temperature_rate = float(temperature_rate)
        self.elbo = "TraceGraph_ELBO" if estimator == "score-function" else "Trace_ELBO"
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood)
        self.register_buffer("prior_logits", torch.zeros(self.num_latents, self.num_categories))
        code, p = self.num_latents * self.num_categories, self.likelihood.params_per_pixel
        self.encoder = self._network("encoder", encoder, (2, *self.x_shape), [2, code], lambda:
                                     Encoder(self.x_shape, code, self.hidden, activation))
        self.decoder = self._network("decoder", decoder, (2, code), [2, p, *self.x_shape], lambda:
                                     Decoder(code, self.x_shape, p, self.hidden, activation))
        if estimator == "score-function" and baseline == "nn":
            # b(x): one number per image, the expected downstream cost of its code.
            self.baseline_net = nn.Sequential(Encoder(self.x_shape, 1, (64,), activation),
                                              nn.Flatten(0))

    def _network(self, part, given, in_shape, out_shape, build) -> nn.Module:
        """``given``, its output on zeros of ``in_shape`` checked against ``out_shape``;
        else ``build()``."""
        if given is None:
            return build()
        if not isinstance(given, nn.Module):
            raise TypeError(f"{part}: expected an nn.Module, got {type(given).__name__}")
        check_output(part, given, [torch.zeros(in_shape)], out_shape)
        return given

    # ------------------------------------------------------ distributions
    @property
    def relaxed(self) -> bool:
        """Whether this trace uses the relaxation: a relaxed estimator, in training
        mode, under autograd (an SVI step); otherwise the exact discrete model."""
        return self.estimator != "score-function" and self.training and torch.is_grad_enabled()

    @property
    def surrogate(self) -> bool:
        """Whether this trace trains Jang et al.'s surrogate: relaxed draws, discrete KL."""
        return self.relaxed and self.kl == "discrete"

    def code_site(self, fn: dist.Distribution, **kwargs) -> torch.Tensor:
        """Site ``"z"`` of ``fn``; for the surrogate, masked: the draw is kept, its
        log-density leaves the objective (in model and guide alike)."""
        with poutine.mask(mask=False) if self.surrogate else contextlib.nullcontext():
            return pyro.sample("z", fn, **kwargs)

    def discrete_kl(self, logits: torch.Tensor) -> torch.Tensor:
        """``sum_n KL(Cat(q_n) || Cat(p_n))`` for logits ``[B, N, K]``: ``[B]``; with the
        uniform prior, ``sum_n (log K + sum_k q_nk log q_nk)``."""
        q = dist.OneHotCategorical(logits=logits)
        return torch.distributions.kl_divergence(
            q, dist.OneHotCategorical(logits=self.prior_logits)).sum(-1)

    def code_dist(self, logits: torch.Tensor) -> dist.Distribution:
        """q or p over ``z`` for logits ``[..., N, K]``: event shape ``[N, K]``; the exact
        one-hot categorical, or its relaxation at ``self.temperature`` (see :attr:`relaxed`)."""
        if not self.relaxed:
            return dist.OneHotCategorical(logits=logits).to_event(1)
        tau = logits.new_tensor(self.temperature)
        if self.estimator == "straight-through":
            return StraightThrough(tau, logits=logits).to_event(1)
        return dist.RelaxedOneHotCategorical(tau, logits=logits).to_event(1)

    def prior(self) -> dist.Distribution:
        """p(z): ``N`` uniform categoricals over ``K`` classes (relaxed in training)."""
        return self.code_dist(self.prior_logits)

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x) for ``x: [B, C, H, W]``: batch ``[B]``, event ``[N, K]``."""
        return self.code_dist(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log q(z_n = k | x) of ``x: [B, C, H, W]``: ``[B, N, K]``, floored at
        :data:`LOG_PROB_FLOOR`."""
        logits = self.encoder(x).reshape(-1, self.num_latents, self.num_categories)
        return logits.log_softmax(-1).clamp(min=LOG_PROB_FLOOR)

    # ----------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y=None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z) = p(z) p(x | z). ``x: [B, C, H, W]`` observed, or ``None`` to draw
        ``num`` images (default 1). Returns ``x``."""
        self.register("decoder", "likelihood")
        with pyro.plate("data", batch_size_of(x, None, num)):
            z = self.code_site(self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z.flatten(-2))), obs=x)

    def guide(self, x: torch.Tensor, y=None, num: Optional[int] = None) -> torch.Tensor:
        """q(z | x). ``x: [B, C, H, W]``. Returns ``z: [B, N, K]``. For the surrogate, also
        the factor ``"kl"``: ``+KL`` here is ``-KL`` in the ELBO."""
        if x is None:
            raise ValueError("x: the guide q(z | x) needs images; for the prior predictive "
                             "use Predictive(model) without a guide")
        self.register("encoder")
        with pyro.plate("data", x.shape[0]):
            logits = self.logits(x)
            z = self.code_site(self.code_dist(logits), infer=self.baseline_options(x))
            if self.surrogate:
                # A deterministic function of the encoder's output: reparameterised.
                pyro.factor("kl", self.discrete_kl(logits), has_rsample=True)
            return z

    def baseline_options(self, x: torch.Tensor) -> dict:
        """The site's ``infer`` options: TraceGraph_ELBO's baseline for the score function."""
        if self.estimator != "score-function" or self.baseline == "none":
            return {}
        if self.baseline == "average":
            return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.95}}
        self.register("baseline_net")
        return {"baseline": {"nn_baseline": self.baseline_net, "nn_baseline_input": x}}

    def check_elbo(self, elbo) -> None:
        """The score-function estimator needs TraceGraph_ELBO's baselines."""
        if self.estimator == "score-function" and not isinstance(elbo, TraceGraph_ELBO):
            raise ValueError(f"elbo: --estimator score-function trains with TraceGraph_ELBO (or "
                             f"auto), got {type(elbo).__name__}")

    # ------------------------------------------------------------ schedule
    def temperature_at(self, t: float) -> float:
        """``tau(t) = max(tau_min, tau0 exp(-r t))``, ``t`` the training progress in epochs."""
        return max(self.temperature_min, self.temperature0 * math.exp(-self.temperature_rate * t))

    # ----------------------------------------------------------- utilities
    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Posterior probabilities q(z_n = k | x) of ``x: [B, C, H, W]``: ``[B, N, K]``."""
        return self.logits(x).exp()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Mean image of p(x | z) for codes ``z: [..., N, K]`` -> ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z.flatten(-2)))

    def one_hot_mode(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable code under q(z | x): ``[B, N, K]`` one-hot."""
        probs = self.encode(x)
        return nn.functional.one_hot(probs.argmax(-1), self.num_categories).to(probs)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Mean of p(x | z = the most probable code of x); same shape as ``x``."""
        return self.decode(self.one_hot_mode(x))

    @torch.no_grad()
    def generate(self, num: int, y=None) -> torch.Tensor:
        """``num`` images decoded from draws of the exact uniform prior: ``[num, C, H, W]``."""
        return self.decode(self.latent_draws(num))

    @property
    def latent_shape(self) -> Tuple[int, int]:
        """``(N, K)``: a code is N one-hot rows of K classes."""
        return (self.num_latents, self.num_categories)

    def latent_draws(self, num: int, y=None) -> torch.Tensor:
        """``num`` draws of the exact uniform prior: ``[num, N, K]`` one-hot."""
        return dist.OneHotCategorical(logits=self.prior_logits).sample((num,))

    @torch.no_grad()
    def traverse_categorical(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Latent ``n`` of each image's most probable code set to each of its ``K`` classes
        in turn, all else kept, decoded: ``x: [B, C, H, W]`` -> ``[B, K, C, H, W]``."""
        if not 0 <= n < self.num_latents:
            raise ValueError(f"n: expected a latent in [0, {self.num_latents}), got {n!r}")
        return explore.traverse_categorical(self, self.one_hot_mode(x), [n])[:, 0]

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` fits this model."""
        super().check_data(x, name)
        self.likelihood.check(x, name)


def traverse_categorical(model: CategoricalVAE, x: torch.Tensor, n: int) -> torch.Tensor:
    """:meth:`CategoricalVAE.traverse_categorical`: ``[B, K, C, H, W]``."""
    return model.traverse_categorical(x, n)


def _check_arguments(x_shape, num_latents, num_categories, estimator, kl, baseline,
                     temperature, temperature_min, temperature_rate) -> None:
    """Refuse constructor arguments that cannot work, naming the first."""
    if len(tuple(x_shape)) != 3 or min(x_shape) < 1:
        raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {tuple(x_shape)}")
    for name, value, least in (("num_latents", num_latents, 1),
                               ("num_categories", num_categories, 2)):
        if isinstance(value, bool) or int(value) != value or value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
    if kl not in KL_TERMS:
        raise ValueError(f"kl: expected one of {list(KL_TERMS)}, got {kl!r}")
    if estimator == "score-function" and kl != "discrete":
        raise ValueError(f"kl: --estimator score-function trains the discrete model, whose KL "
                         f"is exact; --kl {kl} applies to the relaxed estimators only")
    if baseline not in BASELINES:
        raise ValueError(f"baseline: expected one of {list(BASELINES)}, got {baseline!r}")
    if not 0 < temperature_min <= temperature:
        raise ValueError(f"temperature_min: expected 0 < temperature_min <= temperature "
                         f"({temperature!r}), got {temperature_min!r}")
    if estimator != "score-function" and temperature_min < MIN_TEMPERATURE:
        raise ValueError(f"temperature_min: relaxed draws underflow in float32 below "
                         f"{MIN_TEMPERATURE}, got {temperature_min!r}")
    if not temperature_rate >= 0:
        raise ValueError(f"temperature_rate: expected a rate >= 0 per epoch, got "
                         f"{temperature_rate!r}")
