"""pyro_vae: variational autoencoders written the Pyro way.

Every model is a Pyro ``model`` function and a ``guide`` function; priors, guides and
likelihoods are objects passed by one argument; :func:`fit` trains any pair with SVI.
"""

from .config import TrainConfig
from .data import ImageData, load_dataset
from .evaluate import accuracy, elbo_terms
from .guides import GUIDES, DiagonalNormal
from .infer import ELBOS, fit
from .likelihoods import LIKELIHOODS, Bernoulli
from .models import CVAE, M2, MODELS, VAE
from .priors import PRIORS, StandardNormal
from .schedules import SCHEDULES, KLWarmup
from .semisupervised import InterleavedBatches, keep_labels
from .stacking import encode_data
from .train import load_run, train

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
    "DiagonalNormal",
    "ImageData",
    "InterleavedBatches",
    "KLWarmup",
    "M2",
    "StandardNormal",
    "TrainConfig",
    "VAE",
    "accuracy",
    "elbo_terms",
    "encode_data",
    "fit",
    "keep_labels",
    "load_dataset",
    "load_run",
    "train",
]
