"""The semi-supervised VAE M2 of Kingma, Rezende, Mohamed & Welling (2014)."""

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

import pyro
import pyro.distributions as dist

from ..nets import NETS, Encoder
from ..semisupervised import InterleavedBatches

from ..config import TrainConfig, option
from ..priors import PRIORS
from .cvae import CVAE, CVAEConfig

ENUM_DISCRETE = ("parallel", "sequential", "none")


@dataclass
class SemiSupervisedConfig(TrainConfig):
    """The options of every semi-supervised model (M2, the ADGM, the SDGM): labels kept,
    the classifier's weight, and how a missing label is inferred."""

    labels: int = option(None, "labels kept, balanced over classes and chosen by seed; the "
                         "rest of the training set is unlabelled; None keeps all", minimum=0)
    alpha: float = option(200.0, "weight of the classification term alpha log q(y | x) "
                          "(alpha log q(y | a, x) in the ADGM and SDGM)")
    enum_discrete: str = option("parallel", "label inference for unlabelled images: parallel "
                                "or sequential enumeration, or none (one sample)",
                                choices=lambda: ENUM_DISCRETE)


@dataclass
class M2Config(CVAEConfig, SemiSupervisedConfig):
    """A run of M2: the CVAE's options with N(0, I), plus labels kept and the classifier."""

    model: str = option("m2", "model name, or package.module:Class to import one")
    prior: str = option("normal", "prior p(z)", choices=lambda: PRIORS)
    net: str = option("mlp", "encoder and decoder: mlp or conv", choices=lambda: NETS)
    features: str = option(None, "run folder of a trained VAE; its posterior means of the "
                           "images become the data (M1+M2 stacking, use --likelihood normal)",
                           "data")


class M2(CVAE):
    r"""M2: the :class:`CVAE` whose label is latent when missing, plus a classifier q(y|x).

    Generative story (``model``), for each image ``n`` in the plate ``"data"``::

        y_n ~ Cat(1/K)                         site "y"  (observed when labelled)
        z_n ~ p(z)                             site "z"
        x_n ~ p(x | decoder(z_n, onehot(y_n)))  site "x"

    Guide (``guide``)::

        y_n ~ Cat(softmax(classifier(x_n)))     site "y"  (only when unlabelled)
        z_n ~ q(z | encoder(x_n, onehot(y_n)))  site "z"

    A labelled batch ``(x, y)`` observes ``"y"`` and adds the classification term of
    Kingma et al. (2014, eq. 9) as the factor ``"classification"``,
    ``alpha * log q(y_n | x_n)``. An unlabelled batch ``(x,)`` gets the bound
    ``E_q(y|x)[ELBO(x, y)] + H(q(y | x))`` (eq. 7), with ``"y"`` enumerated exactly
    over its ``K`` values (``enum_discrete="parallel"``, under ``TraceEnum_ELBO``) or
    drawn once (``"none"``: a score-function estimate, for comparison). One SVI on
    such batches maximises

        J_alpha = sum_labelled [ELBO(x, y) + alpha log q(y | x)] + sum_unlabelled ELBO(x).

    :param num_classes: number of classes ``K``.
    :param alpha: weight of the classification term (0 turns it off).
    :param classifier_hidden: hidden widths of the classifier; default ``hidden``.
    :param enum_discrete: ``"parallel"``, ``"sequential"`` or ``"none"`` (sample y).
    :param prior: as for :class:`VAE`, default N(0, I) as in the paper.
    :param net: as for :class:`VAE`, default ``"mlp"`` as in the paper.

    Other parameters as for :class:`VAE`.
    """

    semi_supervised = True
    config_class = M2Config
    elbo = "TraceEnum_ELBO"
    classifies = True
    capturable = False  # enumeration of the label runs through TraceEnum_ELBO

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        alpha: float = 200.0,
        classifier_hidden: Optional[Sequence[int]] = None,
        enum_discrete: str = "parallel",
        prior: Union[str, nn.Module] = "normal",
        net: str = "mlp",
        **vae_options,
    ):
        if not alpha >= 0:
            raise ValueError(f"alpha: expected a non-negative weight, got {alpha!r}")
        if enum_discrete not in ENUM_DISCRETE:
            raise ValueError(f"enum_discrete: expected one of {ENUM_DISCRETE}, got {enum_discrete!r}")
        if vae_options.get("free_bits"):
            raise ValueError("free_bits: M2's KL term is taken under each enumerated label; "
                             "free bits are not defined for it")
        super().__init__(x_shape, num_classes, prior=prior, net=net, **vae_options)
        self.alpha, self.enum_discrete = float(alpha), enum_discrete
        classifier_hidden = self.hidden if classifier_hidden is None else classifier_hidden
        self.classifier = Encoder(self.x_shape, self.num_classes, classifier_hidden,
                                  self.activation)

    def label_posterior(self, x: torch.Tensor) -> dist.Categorical:
        """q(y | x) = Cat(softmax(classifier(x))), batch shape ``[B]``."""
        return dist.Categorical(logits=self.classifier(x))

    # ------------------------------------------- Pyro (model and guide: CVAE's)
    def auxiliary(self, x: Optional[torch.Tensor], y: Optional[torch.Tensor]) -> None:
        """The classification factor ``alpha * log q(y | x)`` of a labelled batch."""
        if x is not None and y is not None and self.alpha > 0:
            self.register("classifier")
            pyro.factor("classification", self.alpha * self.label_posterior(x).log_prob(y))

    def guide_label(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """The observed label, else ``y ~ q(y | x)``: enumerated, or drawn once."""
        self.register("classifier")
        if y is not None:
            return y
        infer = {} if self.enum_discrete == "none" else {"enumerate": self.enum_discrete}
        return pyro.sample("y", self.label_posterior(x), infer=infer)

    # ----------------------------------------------------------- utilities
    def check_elbo(self, elbo) -> None:
        """Enumerating the label needs ``TraceEnum_ELBO``."""
        if self.enum_discrete != "none" and not isinstance(elbo, pyro.infer.TraceEnum_ELBO):
            raise ValueError(
                f"elbo: M2 enumerates its label and needs TraceEnum_ELBO (its default), got "
                f"{type(elbo).__name__}; or build it with enum_discrete='none' to sample the label"
            )

    def batching(self, batch_size: int) -> InterleavedBatches:
        """Unlabelled batches ``(x,)`` with a labelled ``(x, y)`` batch after each."""
        return InterleavedBatches(batch_size)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities q(y | x) for ``x: [B, C, H, W]`` -> ``[B, K]``."""
        return self.label_posterior(x).probs

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """As :meth:`CVAE.reconstruct`; without ``y``, the most probable label under q(y|x)."""
        return super().reconstruct(x, self.classify(x).argmax(-1) if y is None else y)
