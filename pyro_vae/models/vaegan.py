"""The VAE-GAN of Larsen, Sonderby, Larochelle & Winther (2016), as a Pyro model and guide.

A VAE whose reconstruction term is measured in a discriminator's hidden features
(``Dis_l``) instead of pixels, trained beside that discriminator. The VAE part is a
Pyro model/guide trained by ``Trace_ELBO``; the discriminator is a second objective
with its own optimiser (:meth:`VAEGAN.extra_steps`). See ``docs/vaegan.md`` for the
math beside the code and the measured table.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from .. import checks
from ..config import option
from ..likelihoods import LIKELIHOODS
from ..nets import NETS
from ..steps import OptimizerStep
from .base import batch_size_of
from .vae import VAE, VAEConfig, _part


@dataclass
class VAEGANConfig(VAEConfig):
    """A run of the VAE-GAN: the VAE's options, and the discriminator and its weights."""

    model: str = option("vaegan", "model name, or package.module:Class to import one")
    net: str = option("conv", "encoder and decoder: mlp or conv", choices=lambda: NETS)
    hidden: Tuple[int, ...] = option((256,), "hidden widths, e.g. 256 or 200,200")
    z_dim: int = option(32, "latent dimension", minimum=1)
    batch_size: int = option(16, "examples per SVI step and per discriminator step "
                             "(small batches: more adversarial steps per epoch)",
                             "optimisation", minimum=1)
    feature_weight: float = option(1.0, "weight of the Dis_l feature log-likelihood in "
                                   "log p(x|z)", positive=True)
    feature_scale: float = option(1.0, "sigma of the Gaussian on the discriminator's "
                                  "features", positive=True)
    pixel_weight: float = option(1.0, "weight of the pixel log-likelihood (--likelihood) in "
                                 "log p(x|z); 0: features only")
    gan_weight: float = option(3.0, "weight of the decoder's adversarial factor (1/gamma "
                               "of the paper: its gamma weighs reconstruction against GAN)",
                               positive=True)
    disc_channels: Tuple[int, ...] = option((32, 64, 128), "discriminator convolution "
                                            "widths, e.g. 32,64,128")
    disc_lr_scale: float = option(0.5, "discriminator learning rate as a multiple of --lr",
                                  positive=True)
    real_label: float = option(0.9, "target of real images in the discriminator's loss "
                               "(one-sided label smoothing; 1: none)", positive=True)
    disc_floor: float = option(0.0, "skip the discriminator's update while its loss "
                               "(mean BCE per verdict) is below this; 0: never skip")
    disc_norm: str = option("none", "normalisation of the discriminator's layers: none or "
                            "spectral (each weight divided by its largest singular value)",
                            choices=lambda: DISC_NORMS)
    disc_penalty: float = option(0.0, "gamma of the R1 penalty gamma/2 E||grad_x D(x)||^2 "
                                 "on real images in the discriminator's loss; 0: none")


# name -> what it does to one of the discriminator's layers
DISC_NORMS = {"none": lambda layer: layer,
              "spectral": torch.nn.utils.parametrizations.spectral_norm}


class Discriminator(nn.Module):
    """Strided convolutions to the features ``Dis_l``, then a linear verdict.

    ``x: [..., C, H, W]`` -> ``(features [..., F], logit [...])``::

        h_1 = lrelu(conv_1(x)), ..., h_L = lrelu(conv_L(h_{L-1}))   # 3x3, stride 2
        Dis_l(x) = flatten(h_L)        logit = linear(Dis_l(x))

    With ``norm="spectral"`` every convolution and the linear layer are divided by
    their largest singular value (Miyato et al. 2018), which bounds the
    discriminator's Lipschitz constant.

    :param x_shape: image shape ``(C, H, W)``.
    :param channels: output channels of each convolution, input side first.
    :param norm: ``"none"`` or ``"spectral"``.
    """

    def __init__(self, x_shape: Sequence[int], channels: Sequence[int] = (32, 64, 128),
                 norm: str = "none"):
        super().__init__()
        if len(channels) == 0 or any(int(c) != c or c < 1 for c in channels):
            raise ValueError(f"disc_channels: expected positive widths, got {tuple(channels)}")
        checks.one_of("disc_norm", norm, DISC_NORMS)
        normed = DISC_NORMS[norm]
        self.x_shape = tuple(int(s) for s in x_shape)
        layers, width = [], self.x_shape[0]
        for c in channels:
            layers += [normed(nn.Conv2d(width, int(c), 3, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
            width = int(c)
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            self.num_features = self.conv(torch.zeros(1, *self.x_shape)).numel()
        self.head = normed(nn.Linear(self.num_features, 1))

    def forward(self, x: torch.Tensor):
        batch = x.shape[:-3]
        f = self.conv(x.reshape((-1,) + self.x_shape)).flatten(1)
        return f.reshape(batch + f.shape[-1:]), self.head(f).reshape(batch)


class FeatureMatched(dist.TorchDistribution):
    r"""The weighted log-likelihood of an image under a decoder output, in ``Dis_l``'s
    features and (optionally) in pixels; event shape ``(C, H, W)``::

        log p(x | z) = a * sum_f log N(Dis_l(x)_f; Dis_l(x~)_f, sigma^2)
                     + b * log p_pixel(x | params),          x~ = mean image of params

    (Larsen et al. 2016, their ``L_llike^{Dis_l}`` for the first term). ``sample`` returns ``x~``: the
    density lives on features, which no image is drawn from.
    """

    arg_constraints: Dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, params, pixel, features, scale, feature_weight, pixel_weight,
                 validate_args=None):
        self.params, self.pixel, self.features = params, pixel, features
        self.scale, self.a, self.b = scale, feature_weight, pixel_weight
        self.image = pixel.mean(params)  # [..., C, H, W]
        batch = self.image.shape[:-3]
        super().__init__(batch, self.image.shape[-3:], validate_args=validate_args)

    def feature_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``sum_f log N(Dis_l(value)_f; Dis_l(x~)_f, sigma^2)``: ``[...]``."""
        loc, real = self.features(self.image), self.features(value)
        return dist.Normal(loc, self.scale).log_prob(real).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        out = self.a * self.feature_log_prob(value)
        if self.b:
            out = out + self.b * self.pixel(self.params).log_prob(value)
        return out

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.image.detach().expand(self._extended_shape(sample_shape))

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        params = self.params.expand(batch_shape + self.params.shape[len(self.batch_shape):])
        return FeatureMatched(params, self.pixel, self.features, self.scale, self.a, self.b)


class FeatureLikelihood(nn.Module):
    """p(x | z) on a discriminator's features, mixed with a pixel likelihood
    (:class:`FeatureMatched`). ``features(x: [..., C, H, W]) -> [..., F]`` is a plain
    callable (the discriminator is trained elsewhere, never by this likelihood).

    :param features: ``Dis_l``.
    :param pixel: the pixel likelihood object; it reads the decoder's output.
    :param scale: sigma of the feature Gaussian.
    :param feature_weight: ``a``.
    :param pixel_weight: ``b`` (0: features only).
    """

    def __init__(self, features: Callable, pixel: nn.Module, scale: float = 1.0,
                 feature_weight: float = 1.0, pixel_weight: float = 1.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"feature_scale: expected a positive number, got {scale!r}")
        if not pixel_weight >= 0:
            raise ValueError(f"pixel_weight: expected a number >= 0, got {pixel_weight!r}")
        self.features, self.pixel = features, pixel
        self.scale, self.feature_weight = float(scale), float(feature_weight)
        self.pixel_weight = float(pixel_weight)
        self.params_per_pixel = pixel.params_per_pixel

    def forward(self, params: torch.Tensor) -> FeatureMatched:
        return FeatureMatched(params, self.pixel, self.features, self.scale,
                              self.feature_weight, self.pixel_weight)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.pixel.mean(params)

    def check(self, x: torch.Tensor, name: str = "data") -> None:
        self.pixel.check(x, name)


class DiscriminatorStep(OptimizerStep):
    """:class:`~pyro_vae.steps.OptimizerStep` that skips the update while the
    discriminator wins too clearly (its loss below ``floor``); the loss is still returned."""

    def __init__(self, params, loss_fn, optimizer, floor: float):
        super().__init__(params, loss_fn, optimizer)
        self.floor = float(floor)

    def __call__(self, *batch) -> float:
        if self.floor > 0:
            with torch.no_grad():
                value = float(self.loss_fn(*batch))
            if value < self.floor:
                return value
        return super().__call__(*batch)


class VAEGAN(VAE):
    r"""VAE-GAN: a VAE whose likelihood is a Gaussian on a discriminator's features.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        z_n ~ N(0, I)                                         site "z"
        x_n ~ FeatureMatched(decoder(z_n))                    site "x" (see FeatureLikelihood)
        factor lambda [log D(Dec(z_n)) + log D(Dec(z'_n))]    site "gan", z'_n ~ N(0, I)

    Guide: ``z_n ~ N(mu(x_n), diag sigma(x_n)^2)`` (site ``"z"``), the VAE's.

    ``Trace_ELBO`` on model and guide trains encoder and decoder on
    ``L_prior + L_llike^{Dis_l}`` (the paper's Algorithm 1) and the decoder also on the
    non-saturating GAN term ``"gan"`` (weight ``lambda = gan_weight``; ``z`` enters it
    detached, so the encoder is not updated by it, as in the paper's Algorithm 1). The
    discriminator's parameters are read detached inside the model, so SVI never moves
    them; its own step (:meth:`extra_steps`) minimises the binary cross-entropy of real
    images (target ``real_label``) against reconstructions and prior samples::

        L_D = BCE(D(x), r) + BCE(D(x~_rec), 0) + BCE(D(x~_prior), 0),   averaged by 3

    The ``"gan"`` factor is only added in a training step (module in training mode and
    autograd on), so ``elbo_terms`` and the importance-weighted NLL report the
    feature-likelihood VAE alone.

    :param disc_channels: discriminator convolution widths.
    :param feature_weight: ``a`` of :class:`FeatureMatched`.
    :param pixel_weight: ``b`` of :class:`FeatureMatched` (0: features only).
    :param feature_scale: ``sigma`` of :class:`FeatureMatched`.
    :param gan_weight: ``lambda``, the decoder's adversarial weight.
    :param disc_lr_scale: the discriminator's learning rate over the SVI one.
    :param real_label: the target of real images (one-sided label smoothing).
    :param disc_floor: the discriminator skips its update while its loss is below this.
    :param disc_norm: ``"none"`` or ``"spectral"`` normalisation of the discriminator.
    :param disc_penalty: ``gamma`` of the R1 penalty on real images (0: none).
    :param options: :class:`~pyro_vae.models.VAE`'s other arguments; ``likelihood`` is
        the pixel part.
    """

    config_class = VAEGANConfig
    capturable = False  # the discriminator's weights change outside the SVI step

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), z_dim: int = 32,
                 likelihood: Union[str, nn.Module] = "bernoulli", net: str = "conv",
                 hidden: Sequence[int] = (256,), disc_channels: Sequence[int] = (32, 64, 128),
                 feature_weight: float = 1.0, feature_scale: float = 1.0,
                 pixel_weight: float = 1.0, gan_weight: float = 3.0,
                 disc_lr_scale: float = 0.5, real_label: float = 0.9,
                 disc_floor: float = 0.0, disc_norm: str = "none",
                 disc_penalty: float = 0.0, **options):
        if not 0 < real_label <= 1:
            raise ValueError(f"real_label: expected a target in (0, 1], got {real_label!r}")
        if not disc_penalty >= 0:
            raise ValueError(f"disc_penalty: expected a number >= 0, got {disc_penalty!r}")
        for flag, value in (("gan_weight", gan_weight), ("disc_lr_scale", disc_lr_scale),
                            ("feature_weight", feature_weight)):
            if not value > 0:
                raise ValueError(f"{flag}: expected a positive number, got {value!r}")
        pixel = _part("likelihood", LIKELIHOODS, likelihood,
                      scale=options.get("normal_scale", 0.1),
                      num_components=options.get("likelihood_components", 5))
        # ``self.features`` is a method: the likelihood holds no discriminator parameters.
        feature = FeatureLikelihood(self.features, pixel, feature_scale, feature_weight,
                                    pixel_weight)
        super().__init__(x_shape, z_dim, hidden=hidden, likelihood=feature, net=net, **options)
        self.discriminator = Discriminator(self.x_shape, disc_channels, disc_norm)
        self.disc_penalty = float(disc_penalty)
        self.gan_weight, self.disc_lr_scale = float(gan_weight), float(disc_lr_scale)
        self.real_label, self.disc_floor = float(real_label), float(disc_floor)

    # ------------------------------------------------------- discriminator
    def judge(self, x: torch.Tensor):
        """``(Dis_l(x) [..., F], logit [...])`` with the discriminator's parameters detached:
        gradients reach ``x`` (hence the decoder), never the discriminator."""
        params = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (x,))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``Dis_l(x)``: ``[..., C, H, W]`` -> ``[..., F]``."""
        return self.judge(x)[0]

    def svi_parameters(self):
        """Encoder, decoder and guide parameters; the discriminator's are its own step's."""
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("discriminator."))

    @property
    def adversarial(self) -> bool:
        """Whether this trace is a training step, where the ``"gan"`` factor is added."""
        return self.training and torch.is_grad_enabled()

    # ----------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y=None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z) with the feature likelihood, and in training the ``"gan"`` factor.
        ``x: [B, C, H, W]`` observed, or ``None`` to draw ``num`` images. Returns ``x``."""
        self.register("decoder", "prior", "likelihood")
        with pyro.plate("data", batch_size_of(x, y, num)):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", self.prior())
            x = pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)
            if self.adversarial and x is not None:
                pyro.factor("gan", self.gan_weight * self.decoder_gan_term(z))
        return x

    def decoder_gan_term(self, z: torch.Tensor) -> torch.Tensor:
        """``log D(Dec(z)) + log D(Dec(z'))``, ``z' ~ N(0, I)``: ``[B]`` (non-saturating;
        ``z`` detached, so only the decoder is moved)."""
        codes = torch.cat([z.detach(), torch.randn_like(z)])
        _, logit = self.judge(self.likelihood.mean(self.decoder(codes)))
        return F.logsigmoid(logit).reshape(2, -1).sum(0)

    def discriminator_loss(self, x: torch.Tensor, *rest) -> torch.Tensor:
        """``L_D`` of ``x: [B, C, H, W]`` against its reconstructions (a posterior draw)
        and prior samples, averaged over the three verdicts, plus the R1 penalty
        ``gamma/2 mean_b ||grad_x logit(x_b)||^2`` when ``disc_penalty = gamma > 0``
        (Mescheder et al. 2018; left out where autograd is off): a scalar."""
        with torch.no_grad():
            z = self.posterior(self.encoder(x)).sample()
            fakes = self.likelihood.mean(self.decoder(torch.cat([z, torch.randn_like(z)])))
        penalised = self.disc_penalty > 0 and torch.is_grad_enabled()
        real = x.detach().requires_grad_(penalised)
        _, logits = self.discriminator(torch.cat([real, fakes]))
        targets = torch.cat([torch.full((len(x),), self.real_label),
                             torch.zeros(len(fakes))]).to(logits)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        if penalised:
            grad, = torch.autograd.grad(logits[:len(x)].sum(), real, create_graph=True)
            loss = loss + self.disc_penalty / 2 * grad.pow(2).flatten(1).sum(-1).mean()
        return loss

    def extra_steps(self, optimizer: Callable) -> Dict[str, DiscriminatorStep]:
        """``{"discriminator": step}``: minimises :meth:`discriminator_loss` with
        ``optimizer`` at ``disc_lr_scale`` times its learning rate."""
        step = DiscriminatorStep(self.discriminator.parameters(), self.discriminator_loss,
                                 optimizer, self.disc_floor)
        step.set_lr(step.lr * self.disc_lr_scale)
        return {"discriminator": step}

