"""Model/guide pairs, one file each; :data:`MODELS` finds one by name."""

from .vae import VAE

MODELS = {
    "vae": VAE,
}

__all__ = ["MODELS", "VAE"]
