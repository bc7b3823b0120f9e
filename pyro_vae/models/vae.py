"""The variational autoencoder of Kingma & Welling (2013), as a Pyro model and guide."""

import inspect
from typing import Optional, Sequence, Union

import torch
from torch import nn

import pyro
import pyro.poutine as poutine

from ..checks import finite
from ..guides import GUIDES
from ..likelihoods import LIKELIHOODS
from ..nets import Encoder, Decoder
from ..priors import PRIORS


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


class VAE(nn.Module):
    r"""Variational autoencoder with swappable prior, guide family and likelihood.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        z_n ~ p(z)                          site "z"  (prior, default N(0, I))
        x_n ~ p(x | decoder(z_n))           site "x"  (likelihood, default Bernoulli)

    Guide (``guide``), amortised over the same plate::

        z_n ~ q(z | encoder(x_n))           site "z"  (default diagonal Normal)

    Maximising the ELBO, ``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``, trains both.
    ``beta != 1`` scales the ``"z"`` site in model *and* guide, so the objective is
    exactly reconstruction + beta * KL (Higgins et al. 2017).

    :param x_shape: image shape ``(C, H, W)``.
    :param z_dim: latent dimension.
    :param hidden: hidden widths of the encoder MLP; the decoder mirrors them.
    :param activation: a key of :data:`pyro_vae.nets.ACTIVATIONS`.
    :param prior: a key of :data:`pyro_vae.priors.PRIORS` or a prior object.
    :param likelihood: a key of :data:`pyro_vae.likelihoods.LIKELIHOODS` or an object.
    :param guide: a key of :data:`pyro_vae.guides.GUIDES` or a variational family object.
    :param beta: weight of the KL term.
    :param mixture_components: components of the ``"mog"`` prior.
    :param pseudo_inputs: pseudo-inputs of the ``"vamp"`` prior.
    :param flow_layers: flow layers of the ``"iaf"`` guide and the ``"flow"`` prior.
    :param guide_rank: rank of the ``"lowrank"`` guide's covariance factor.
    :param normal_scale: sigma of the ``"normal-fixed"`` likelihood.

    Parts given by name are built with the options above that they take; parts given
    as objects are used as they are. A prior with a ``bind(vae)`` method (the
    VampPrior) is bound to this model once its networks exist.
    """

    cond_dim = 0  # width of a one-hot label appended to both networks' inputs (CVAE)

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
        mixture_components: int = 10,
        pseudo_inputs: int = 500,
        flow_layers: int = 2,
        guide_rank: int = 2,
        normal_scale: float = 0.1,
    ):
        super().__init__()
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 3 or min(x_shape) < 1:
            raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {x_shape}")
        if int(z_dim) != z_dim or z_dim < 1:
            raise ValueError(f"z_dim: expected a positive integer, got {z_dim!r}")
        if any(int(h) != h or h < 1 for h in hidden):
            raise ValueError(f"hidden: expected positive layer widths, got {tuple(hidden)}")
        if not beta > 0:
            raise ValueError(f"beta: expected a positive number, got {beta!r}")
        self.x_shape, self.z_dim, self.beta = x_shape, int(z_dim), float(beta)
        self.hidden, self.activation = tuple(hidden), activation
        self.prior = _part(
            "prior", PRIORS, prior, self.z_dim, x_shape=x_shape,
            num_components=mixture_components, num_pseudo_inputs=pseudo_inputs,
            num_layers=flow_layers,
        )
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood, scale=normal_scale)
        self.posterior = _part(
            "guide", GUIDES, guide, self.z_dim, num_layers=flow_layers, rank=guide_rank
        )
        self.encoder = Encoder(
            x_shape, self.posterior.num_params, hidden, activation, cond_dim=self.cond_dim
        )
        self.decoder = Decoder(
            self.z_dim, x_shape, self.likelihood.params_per_pixel, hidden, activation,
            cond_dim=self.cond_dim,
        )
        if hasattr(self.prior, "bind"):
            self.prior.bind(self)

    # ----------------------------------------------------------------- Pyro
    def model(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """p(x, z) = p(z) p(x | z). ``x: [B, C, H, W]``; ``y`` is ignored."""
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        pyro.module("likelihood", self.likelihood)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)
        return z

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """q(z | x). ``x: [B, C, H, W]``; ``y`` is ignored."""
        pyro.module("encoder", self.encoder)
        pyro.module("posterior", self.posterior)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                return pyro.sample("z", self.posterior(self.encoder(x)))

    # ----------------------------------------------------------- utilities
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior location of ``x: [B, C, H, W]`` -> ``[B, z_dim]``."""
        return self.posterior.loc(self.encoder(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z) for ``z: [..., z_dim]`` -> ``[..., C, H, W]``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z = posterior location of x); same shape as ``x``."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def generate(self, num: int) -> torch.Tensor:
        """``num`` images decoded from prior samples: ``[num, C, H, W]`` in [0, 1]."""
        return self.decode(self.prior().sample((num,)))

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` fits this model."""
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point tensor, got "
                f"{x.dtype if torch.is_tensor(x) else type(x).__name__}"
            )
        if x.dim() != 4 or tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"{name}: expected shape [N, {', '.join(map(str, self.x_shape))}], "
                f"got {list(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one example, got an empty data set")
        finite(name, x)
        self.likelihood.check(x, name)
