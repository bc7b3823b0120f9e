"""The class-conditional VAE of Sohn et al. (2015): the VAE with an observed label site."""

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

import pyro
import pyro.distributions as dist


from ..config import option
from ..nets import NETS
from ..priors import PRIORS
from .vae import VAE, VAEConfig


@dataclass
class CVAEConfig(VAEConfig):
    """A run of the class-conditional VAE: the VAE's options, a prior p(z | y) by default."""

    model: str = option("cvae", "model name, or package.module:Class to import one")
    prior: str = option("class", "prior p(z) or p(z | y) (class: one Gaussian per class)",
                        choices=lambda: PRIORS)
    net: str = option("conv", "encoder and decoder: mlp or conv", choices=lambda: NETS)


class UniformLabels(nn.Module):
    """p(y) = Cat(1/K, ..., 1/K) over ``K`` classes; empty batch shape, as a prior."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("logits", torch.zeros(num_classes))

    def forward(self) -> dist.Distribution:
        return dist.Categorical(logits=self.logits)


class CVAE(VAE):
    r"""Class-conditional VAE: the :class:`VAE` with a label site ``"y"``.

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        y_n ~ Cat(1/K)                          site "y"  (observed)
        z_n ~ p(z | y_n)                        site "z"  (default N(mu_y, diag sigma_y^2))
        x_n ~ p(x | decoder(z_n, onehot(y_n)))   site "x"  (likelihood)

    Guide (``guide``)::

        z_n ~ q(z | encoder(x_n, onehot(y_n)))   site "z"

    The ELBO is ``E_q[log p(x | y, z)] + log p(y) - beta * KL(q(z | x, y) || p(z | y))``,
    a bound on ``log p(x, y)``; ``log p(y) = -log K`` is a constant. Both networks read
    the label as a one-hot vector appended to their input (Sohn et al. 2015, section 4).
    The default prior, one learnt Gaussian per class (``"class"``), makes the label
    reach the samples even where the decoder learns to read the class from ``z``
    rather than from ``y``, as an MLP decoder with a wide ``z`` does; with
    ``prior="normal"`` (Sohn et al.'s N(0, I)) samples follow the asked class only
    for small ``z_dim``. The default networks are convolutional. ``model(None, y)``
    draws images of the classes ``y``.

    :param num_classes: number of classes ``K``; labels are integers in ``[0, K)``.
    :param prior: as for :class:`VAE`, default ``"class"``.
    :param net: as for :class:`VAE`, default ``"conv"``: with the label-dependent prior it
        draws the asked class 99.8% of the time (``docs/variants.md``).

    Other parameters as for :class:`VAE`.
    """

    uses_labels = True
    config_class = CVAEConfig

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 prior: Union[str, nn.Module] = "class", net: str = "conv", **vae_options):
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        # Set before VAE.__init__, which builds both networks with a one-hot label input.
        self.num_classes = self.cond_dim = int(num_classes)
        super().__init__(x_shape, prior=prior, net=net, **vae_options)
        self.label_prior = UniformLabels(self.num_classes)

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """Integer labels ``[...]`` -> one-hot ``[..., K]`` (float)."""
        return F.one_hot(y, self.num_classes).float()

    # --------------------------------------------- Pyro hooks (bodies: VAE's)
    def label(self, y: Optional[torch.Tensor]) -> torch.Tensor:
        """``y ~ p(y)``, observed when given; drawn when ``None`` (generation, M2)."""
        return pyro.sample("y", self.label_prior(), obs=y)

    def guide_label(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """The label that q(z | x, y) conditions on: here the observed one."""
        if y is None:
            raise ValueError("y: the conditional VAE needs the labels, got None")
        return y

    def condition(self, label: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The networks read the label as a one-hot vector."""
        return None if label is None else self.one_hot(label)

    # ----------------------------------------------------------- utilities
    def _labels(self, y: Union[int, torch.Tensor], num: int) -> torch.Tensor:
        return as_labels(y, num, self.num_classes, self.label_prior.logits.device,
                         type(self).__name__)

    @torch.no_grad()
    def generate(self, num: int, y: Union[int, torch.Tensor, None] = None) -> torch.Tensor:
        """``num`` images of class ``y`` (an int, ``[num]`` labels, or ``None`` to draw
        the labels from p(y)), z from ``p(z | y)``: ``[num, C, H, W]`` in [0, 1]."""
        y = self.label_prior().sample((num,)) if y is None else self._labels(y, num)
        return self.decode(self.latent_draws(num, y), y)

    def check_labels(self, y: torch.Tensor, num: int, name: str = "labels",
                     allow_missing: bool = False) -> None:
        """Raise unless ``y`` holds ``num`` integer labels in ``[0, K)`` (``-1`` marks a
        missing label where ``allow_missing``)."""
        check_class_labels(y, num, self.num_classes, name, allow_missing)


def as_labels(y: Union[int, torch.Tensor, None], num: int, num_classes: int,
              device: torch.device, owner: str = "the model") -> torch.Tensor:
    """``y`` (one label for all, or ``[num]`` labels) as ``[num]`` int64 on ``device``,
    checked to lie in ``[0, num_classes)``."""
    if y is None:
        raise ValueError(f"y: {owner} needs the labels, got None")
    y = torch.as_tensor(y, device=device)
    if y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
        raise TypeError(f"y: expected integer labels, got dtype {y.dtype}")
    y = y.long().expand(num) if y.dim() == 0 else y.long()
    if y.shape != (num,):
        raise ValueError(f"y: expected one label or {num} labels, got shape {list(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"y: expected labels in [0, {num_classes}), "
            f"got values in [{y.min().item()}, {y.max().item()}]"
        )
    return y


def check_class_labels(y: torch.Tensor, num: int, num_classes: int, name: str = "labels",
                       allow_missing: bool = False) -> None:
    """Raise unless ``y`` holds ``num`` integer labels in ``[0, num_classes)`` (``-1``
    marks a missing label where ``allow_missing``)."""
    if not torch.is_tensor(y) or y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(
            f"{name}: expected an integer tensor, got "
            f"{y.dtype if torch.is_tensor(y) else type(y).__name__}"
        )
    if y.shape != (num,):
        raise ValueError(f"{name}: expected shape [{num}] (one per image), got {list(y.shape)}")
    low = -1 if allow_missing else 0
    if num and (y.min() < low or y.max() >= num_classes):
        raise ValueError(
            f"{name}: expected values in [{low}, {num_classes}), got values in "
            f"[{y.min().item()}, {y.max().item()}]"
        )
