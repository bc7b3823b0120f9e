"""Model/guide pairs, one file each; :data:`MODELS` finds one by name."""

from .cvae import CVAE
from .m2 import M2
from .vae import VAE

MODELS = {
    "vae": VAE,
    "cvae": CVAE,
    "m2": M2,
}

__all__ = ["CVAE", "M2", "MODELS", "VAE"]
