"""pyro_vae: variational autoencoders written the Pyro way.

Every model is a Pyro ``model`` function and a ``guide`` function; priors, guides and
likelihoods are objects passed by one argument; :func:`fit` trains any pair with SVI.
"""

from .config import TrainConfig
from .data import ImageData, load_dataset
from .evaluate import accuracy, elbo_terms, evaluation_report, iw_log_likelihood, latent_statistics
from .guides import GUIDES, DiagonalNormal, FullNormal, IAFNormal, LowRankNormal
from .infer import ELBOS, fit
from .likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    ContinuousBernoulli,
    FixedScaleNormal,
    LearnedScaleNormal,
)
from .models import CVAE, M2, MODELS, VAE, Model, register_model
from .models.cvae import CVAEConfig
from .models.m2 import M2Config
from .models.vae import VAEConfig
from .priors import PRIORS, FlowPrior, LearnedNormal, MixtureOfGaussians, StandardNormal, VampPrior
from .schedules import SCHEDULES, KLWarmup
from .semisupervised import InterleavedBatches, keep_labels
from .stacking import encode_data
from .train import load_run, train
from .training import Trainer

__version__ = "0.1.0"

__all__ = [
    "ELBOS",
    "GUIDES",
    "LIKELIHOODS",
    "MODELS",
    "PRIORS",
    "SCHEDULES",
    "Bernoulli",
    "CVAE",
    "ContinuousBernoulli",
    "DiagonalNormal",
    "FixedScaleNormal",
    "FlowPrior",
    "FullNormal",
    "IAFNormal",
    "ImageData",
    "InterleavedBatches",
    "KLWarmup",
    "LearnedNormal",
    "LearnedScaleNormal",
    "LowRankNormal",
    "M2",
    "MixtureOfGaussians",
    "StandardNormal",
    "TrainConfig",
    "VAEConfig",
    "CVAEConfig",
    "M2Config",
    "Model",
    "register_model",
    "Trainer",
    "VAE",
    "VampPrior",
    "accuracy",
    "elbo_terms",
    "encode_data",
    "evaluation_report",
    "fit",
    "iw_log_likelihood",
    "keep_labels",
    "latent_statistics",
    "load_dataset",
    "load_run",
    "train",
]
