"""pyro_vae: variational autoencoders written the Pyro way.

Every model is a Pyro ``model`` function and a ``guide`` function; priors, guides and
likelihoods are objects passed by one argument; :func:`fit` trains any pair with SVI.
"""

from .config import TrainConfig
from .data import ImageData, load_dataset
from .evaluate import elbo_terms
from .guides import GUIDES, DiagonalNormal
from .infer import ELBOS, fit
from .likelihoods import LIKELIHOODS, Bernoulli
from .models import MODELS, VAE
from .priors import PRIORS, StandardNormal
from .train import load_run, train

__version__ = "0.1.0"

__all__ = [
    "ELBOS",
    "GUIDES",
    "LIKELIHOODS",
    "MODELS",
    "PRIORS",
    "Bernoulli",
    "DiagonalNormal",
    "ImageData",
    "StandardNormal",
    "TrainConfig",
    "VAE",
    "elbo_terms",
    "fit",
    "load_dataset",
    "load_run",
    "train",
]
