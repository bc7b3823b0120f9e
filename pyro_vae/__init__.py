"""pyro_vae: variational autoencoders written the Pyro way.

Every model is a Pyro ``model`` function and a ``guide`` function; priors, guides and
likelihoods are objects passed by one argument; :func:`fit` trains any pair with SVI.
"""

from .config import TrainConfig
from .data import ImageData, load_dataset
from .evaluate import elbo_terms, evaluation_report, iw_log_likelihood, latent_statistics
from .guides import GUIDES, DiagonalNormal, FullNormal, IAFNormal, LowRankNormal
from .infer import ELBOS, fit
from .likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    ContinuousBernoulli,
    FixedScaleNormal,
    LearnedScaleNormal,
)
from .models import MODELS, VAE
from .priors import PRIORS, FlowPrior, LearnedNormal, MixtureOfGaussians, StandardNormal, VampPrior
from .train import load_run, train

__version__ = "0.1.0"

__all__ = [
    "ELBOS",
    "GUIDES",
    "LIKELIHOODS",
    "MODELS",
    "PRIORS",
    "Bernoulli",
    "ContinuousBernoulli",
    "DiagonalNormal",
    "FixedScaleNormal",
    "FlowPrior",
    "FullNormal",
    "IAFNormal",
    "ImageData",
    "LearnedNormal",
    "LearnedScaleNormal",
    "LowRankNormal",
    "MixtureOfGaussians",
    "StandardNormal",
    "TrainConfig",
    "VAE",
    "VampPrior",
    "elbo_terms",
    "evaluation_report",
    "fit",
    "iw_log_likelihood",
    "latent_statistics",
    "load_dataset",
    "load_run",
    "train",
]
