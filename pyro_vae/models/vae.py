"""The variational autoencoder of Kingma & Welling (2013), as a Pyro model and guide."""

import inspect
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

import pyro
import pyro.poutine as poutine


from ..config import TrainConfig, option
from ..free_bits import (GROUPS as FREE_BITS_GROUPS, check_elbo as check_free_bits_elbo,
                         check_factorised, check_free_bits, guide_factor as free_bits_factor)
from ..guides import GUIDES
from ..likelihoods import LIKELIHOODS
from ..nets import ACTIVATIONS, NETS, make_decoder, make_encoder
from ..priors import PRIORS
from ..schedules import SCHEDULES
from .base import Model, batch_size_of, call, check_output


def _part(kind: str, registry: dict, value, *args, **options) -> nn.Module:
    """A prior, guide or likelihood given as an object, or by its registry name.

    A part built by name gets ``args`` and those ``options`` its constructor takes
    (e.g. ``num_components`` reaches the mixture prior and no other).
    """
    if isinstance(value, nn.Module):
        return value
    if value not in registry:
        raise ValueError(f"{kind}: expected one of {sorted(registry)}, got {value!r}")
    accepted = inspect.signature(registry[value]).parameters
    return registry[value](*args, **{k: v for k, v in options.items() if k in accepted})


def check_image_model(x_shape: Sequence[int], z_dim: int, beta: float, net: str) -> Tuple[int, ...]:
    """``x_shape`` as a tuple of ints, once the arguments every image model of the VAE
    family takes are checked; ``ValueError`` naming the first that cannot work."""
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 3 or min(x_shape) < 1:
        raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {x_shape}")
    if isinstance(z_dim, bool) or int(z_dim) != z_dim or z_dim < 1:
        raise ValueError(f"z_dim: expected a positive integer, got {z_dim!r}")
    if not beta > 0:
        raise ValueError(f"beta: expected a positive number, got {beta!r}")
    if net not in NETS:
        raise ValueError(f"net: expected one of {sorted(NETS)}, got {net!r}")
    return x_shape


@dataclass
class VAEConfig(TrainConfig):
    """A run of the Gaussian VAE family (:class:`VAE`, and what builds on it)."""

    z_dim: int = option(50, "latent dimension", minimum=1)
    net: str = option("mlp", "encoder and decoder: mlp or conv", choices=lambda: NETS)
    hidden: Tuple[int, ...] = option((400,), "hidden widths, e.g. 400 or 200,200")
    activation: str = option("relu", "activation", choices=lambda: ACTIVATIONS)
    prior: str = option("normal", "prior p(z)", choices=lambda: PRIORS)
    likelihood: str = option("bernoulli", "likelihood p(x|z)",
                             choices=lambda: LIKELIHOODS)
    guide: str = option("diagonal", "variational family q(z|x)",
                        choices=lambda: GUIDES)
    beta: float = option(1.0, "weight of the KL term (beta-VAE)", positive=True)
    warmup: str = option("none", "KL warm-up schedule: none, linear or cyclical",
                         choices=lambda: SCHEDULES)
    warmup_epochs: float = option(10.0, "epochs of the linear warm-up ramp, or the period "
                                  "of a cyclical one (ramp over its first half)", positive=True)
    free_bits: float = option(0.0, "free bits (Kingma et al. 2016): nats of batch-mean KL "
                              "per level (or dimension, --free-bits-per) that cost as much "
                              "as none, so below them the KL gets no gradient; 0: off")
    free_bits_per: str = option("level", "what --free-bits counts per: level (each latent "
                                "site; the whole code of a one-level model) or dimension",
                                choices=lambda: FREE_BITS_GROUPS)
    mixture_components: int = option(10, "mixture components of the 'mog' prior", minimum=1)
    pseudo_inputs: int = option(500, "learnt pseudo-inputs of the 'vamp' prior", minimum=1)
    flow_layers: int = option(2, "autoregressive flow layers of the 'iaf' guide and the "
                              "'flow' prior", minimum=1)
    guide_rank: int = option(2, "rank of the covariance factor of the 'lowrank' guide",
                             minimum=1)
    normal_scale: float = option(0.1, "pixel standard deviation of the 'normal-fixed' "
                                 "likelihood", positive=True)
    likelihood_components: int = option(5, "logistic components per pixel of the "
                                        "'dlogistic' likelihood", minimum=1)


class VAE(Model):
    r"""Variational autoencoder with swappable networks, prior, guide family and likelihood.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        z_n ~ p(z)                          site "z"  (prior, default N(0, I))
        x_n ~ p(x | decoder(z_n))           site "x"  (likelihood, default Bernoulli)

    Guide (``guide``), amortised over the same plate::

        z_n ~ q(z | encoder(x_n))           site "z"  (default diagonal Normal)

    Maximising the ELBO, ``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``, trains both.
    ``beta != 1`` scales the ``"z"`` site in model *and* guide, so the objective is
    exactly reconstruction + beta * KL (Higgins et al. 2017). ``free_bits = lambda``
    replaces the KL by ``max(lambda, KL)``, KL the batch mean (of each dimension with
    ``free_bits_per="dimension"``), through a factor in the guide in training steps
    (:mod:`pyro_vae.free_bits`; Kingma et al. 2016, eq. 15).

    ``model(num=k)`` without images draws ``k`` of them (``"x"`` sampled, not
    observed), so ``pyro.infer.Predictive(vae.model, num_samples=s)()`` is the prior
    predictive. Models of labelled data (:class:`~pyro_vae.models.CVAE`,
    :class:`~pyro_vae.models.M2`) add a label site by overriding the hooks
    :meth:`label`, :meth:`guide_label`, :meth:`condition` and :meth:`auxiliary`;
    the bodies of ``model`` and ``guide`` are this class's.

    :param x_shape: image shape ``(C, H, W)``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder; the decoder mirrors them.
    :param activation: a key of :data:`pyro_vae.nets.ACTIVATIONS`.
    :param prior: a key of :data:`pyro_vae.priors.PRIORS` or a prior object.
    :param likelihood: a key of :data:`pyro_vae.likelihoods.LIKELIHOODS` or an object.
    :param guide: a key of :data:`pyro_vae.guides.GUIDES` or a variational family object.
    :param beta: weight of the KL term.
    :param free_bits: ``lambda``, nats per image (per dimension with
        ``free_bits_per="dimension"``); 0 turns free bits off.
    :param free_bits_per: ``"level"`` (the whole code) or ``"dimension"``.
    :param net: the networks built when none are given: a key of :data:`pyro_vae.nets.NETS`
        (``"mlp"``, ``"conv"``).
    :param encoder: any ``nn.Module`` mapping ``x: [B, C, H, W]`` (and a one-hot label
        ``[B, K]`` for labelled models) to the guide family's ``[B, num_params]``.
    :param decoder: any ``nn.Module`` mapping ``z: [..., z_dim]`` (and a one-hot label)
        to the likelihood's ``[..., P, C, H, W]``, ``P = likelihood.params_per_pixel``.
    :param mixture_components: components of the ``"mog"`` prior.
    :param pseudo_inputs: pseudo-inputs of the ``"vamp"`` prior.
    :param flow_layers: flow layers of the ``"iaf"`` guide and the ``"flow"`` prior.
    :param guide_rank: rank of the ``"lowrank"`` guide's covariance factor.
    :param normal_scale: sigma of the ``"normal-fixed"`` likelihood.
    :param likelihood_components: logistic components of the ``"dlogistic"`` likelihood.
    :param name: this instance's scope in Pyro's param store (default: unique).

    Parts given by name are built with the options above that they take; parts given
    as objects are used as they are. A prior with a ``bind(vae)`` method (the
    VampPrior) is bound to this model once its networks exist.
    """

    cond_dim = 0  # width of the one-hot label both networks read (CVAE, M2)
    num_classes = 0
    config_class = VAEConfig

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dim: int = 50,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        prior: Union[str, nn.Module] = "normal",
        likelihood: Union[str, nn.Module] = "bernoulli",
        guide: Union[str, nn.Module] = "diagonal",
        beta: float = 1.0,
        net: str = "mlp",
        free_bits: float = 0.0,
        free_bits_per: str = "level",
        encoder: Optional[nn.Module] = None,
        decoder: Optional[nn.Module] = None,
        mixture_components: int = 10,
        pseudo_inputs: int = 500,
        flow_layers: int = 2,
        guide_rank: int = 2,
        normal_scale: float = 0.1,
        likelihood_components: int = 5,
        name: Optional[str] = None,
    ):
        x_shape = check_image_model(x_shape, z_dim, beta, net)
        if any(int(h) != h or h < 1 for h in hidden):
            raise ValueError(f"hidden: expected positive layer widths, got {tuple(hidden)}")
        check_free_bits(free_bits, free_bits_per)
        super().__init__(name)
        self.x_shape, self.z_dim, self.beta = x_shape, int(z_dim), float(beta)
        self.free_bits, self.free_bits_per = float(free_bits), free_bits_per
        self.hidden, self.activation, self.net = tuple(hidden), activation, net
        self.prior = _part(
            "prior", PRIORS, prior, self.z_dim, x_shape=x_shape,
            num_classes=max(self.num_classes, 1),
            num_components=mixture_components, num_pseudo_inputs=pseudo_inputs,
            num_layers=flow_layers,
        )
        if getattr(self.prior, "conditional", False) and not self.uses_labels:
            raise ValueError(f"prior: {type(self.prior).__name__} is conditioned on a label; "
                             "use it with a model of labelled data (cvae, m2)")
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood, scale=normal_scale,
                                num_components=likelihood_components)
        self.posterior = _part(
            "guide", GUIDES, guide, self.z_dim, num_layers=flow_layers, rank=guide_rank
        )
        q_params, p_params = self.posterior.num_params, self.likelihood.params_per_pixel
        self.encoder = self._network("encoder", encoder, [q_params], lambda: make_encoder(
            net, x_shape, q_params, self.hidden, activation, self.cond_dim))
        self.decoder = self._network("decoder", decoder, [p_params, *x_shape], lambda: make_decoder(
            net, self.z_dim, x_shape, p_params, self.hidden, activation, self.cond_dim))
        if hasattr(self.prior, "bind"):
            self.prior.bind(self)
        if self.free_bits and free_bits_per == "dimension":  # the parts must factorise
            label = torch.zeros(1, dtype=torch.long) if self.uses_labels else None
            check_factorised(self.posterior(torch.zeros(1, q_params)), self.latent_prior(label))

    def _network(self, part: str, given: Optional[nn.Module], out_shape: Sequence[int],
                 build) -> nn.Module:
        """``given``, its output on a dummy batch of two checked against ``[2, *out_shape]``;
        else ``build()``, the network ``net`` names."""
        if given is None:
            return build()
        if not isinstance(given, nn.Module):
            raise TypeError(f"{part}: expected an nn.Module, got {type(given).__name__}")
        inputs = [torch.zeros(2, *(self.x_shape if part == "encoder" else (self.z_dim,)))]
        if self.cond_dim:
            inputs.append(torch.zeros(2, self.cond_dim))
        check_output(part, given, inputs, [2, *out_shape])
        return given

    # ----------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z) = p(z) p(x | z). ``x: [B, C, H, W]`` observed, or ``None`` to draw
        ``num`` images (default 1); ``y`` is the label of labelled models. Returns ``x``."""
        self.register("decoder", "prior", "likelihood")
        with pyro.plate("data", batch_size_of(x, y, num)):
            label = self.label(y)
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", self.latent_prior(label))
            params = call(self.decoder, z, self.condition(label))
            x = pyro.sample("x", self.likelihood(params), obs=x)
            self.auxiliary(x, y)
        return x

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
              num: Optional[int] = None) -> torch.Tensor:
        """q(z | x). ``x: [B, C, H, W]``; ``y`` as in :meth:`model`. Returns ``z``."""
        if x is None:
            raise ValueError("x: the guide q(z | x) needs images; for the prior predictive "
                             "use Predictive(model) without a guide")
        self.register("encoder", "posterior")
        with pyro.plate("data", x.shape[0]):
            label = self.guide_label(x, y)  # None here; [B], or [K, 1] when enumerated
            with poutine.scale(scale=self.beta):
                q = self.posterior(call(self.encoder, x, self.condition(label)))
                z = pyro.sample("z", q)
                if self.free_bits and self.training and torch.is_grad_enabled():
                    free_bits_factor(q, self.latent_prior(label), z, self.free_bits,
                                     self.free_bits_per)
        return z

    def check_elbo(self, elbo) -> None:
        """Free bits correct the KL term, which the importance-weighted bound has not."""
        check_free_bits_elbo(self.free_bits, elbo)

    # Hooks for models with a label, called inside the plate "data".
    def label(self, y: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The model's label site; the VAE has none (``y`` is ignored)."""
        return None

    def guide_label(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The label that q(z | x, .) conditions on; the VAE has none."""
        return None

    def condition(self, label: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """What the networks read beside their input: nothing for the VAE."""
        return None

    def latent_prior(self, label: Optional[torch.Tensor]):
        """p(z), or p(z | y) for a prior conditioned on the label."""
        if label is not None and getattr(self.prior, "conditional", False):
            return self.prior(label)
        return self.prior()

    def auxiliary(self, x: Optional[torch.Tensor], y: Optional[torch.Tensor]) -> None:
        """Extra factors of the training objective in the model: none here."""

    # ----------------------------------------------------------- utilities
    def _labels(self, y, num: int) -> Optional[torch.Tensor]:
        return None

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Posterior location of ``x: [B, C, H, W]`` -> ``[B, z_dim]``."""
        condition = self.condition(self._labels(y, len(x)))
        return self.posterior.loc(call(self.encoder, x, condition))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Mean image of p(x | z) for ``z: [..., z_dim]`` -> ``[..., C, H, W]``."""
        condition = self.condition(self._labels(y, len(z)))
        return self.likelihood.mean(call(self.decoder, z, condition))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Mean of p(x | z = posterior location of x); same shape as ``x``."""
        return self.decode(self.encode(x, y), y)

    @torch.no_grad()
    def generate(self, num: int, y=None) -> torch.Tensor:
        """``num`` images decoded from prior samples: ``[num, C, H, W]`` in [0, 1]."""
        return self.decode(self.latent_draws(num))

    @property
    def latent_shape(self) -> Tuple[int]:
        """``(z_dim,)``."""
        return (self.z_dim,)

    def latent_draws(self, num: int, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``num`` draws of p(z), or of p(z | y) for ``[num]`` labels: ``[num, z_dim]``."""
        if y is not None and getattr(self.prior, "conditional", False):
            return self.prior(y).sample()
        return self.prior().sample((num,))

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` fits this model."""
        super().check_data(x, name)
        self.likelihood.check(x, name)
