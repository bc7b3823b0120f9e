"""A new model in one file: a VAE whose pixels follow a Student-t, trained three ways.

Generative story, for each image ``n`` in the plate ``"data"``::

    z_n ~ N(0, I)                                   site "z"
    x_n ~ StudentT(df, loc(z_n), scale(z_n))        site "x"   (heavy-tailed pixels)

Guide::

    z_n ~ N(mu(x_n), diag sigma(x_n)^2)             site "z"

The class follows :class:`pyro_vae.models.Model` (``model``, ``guide``, ``encode``,
``decode``, ``reconstruct``, ``generate``), declares its config (the shared
:class:`pyro_vae.TrainConfig` plus ``z_dim``, ``hidden`` and ``df``) and is registered
with one call. Then it trains through ``fit``, through ``train()``, and from the shell::

    python examples/custom_model.py --epochs 2
    PYTHONPATH=examples pyro-vae train --model custom_model:StudentTVAE --epochs 2 --out runs/t
"""

import argparse
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

import pyro
import pyro.distributions as dist

from pyro_vae import TrainConfig, fit, load_dataset, register_model, train
from pyro_vae.config import option
from pyro_vae.models import Model
from pyro_vae.models.base import batch_size_of
from pyro_vae.nets import Decoder, Encoder


@dataclass
class StudentTConfig(TrainConfig):
    """The shared settings, and this model's own."""

    model: str = option("student-t", "model name")
    z_dim: int = option(16, "latent dimension", minimum=1)
    hidden: Tuple[int, ...] = option((256,), "hidden widths of both networks")
    df: float = option(3.0, "degrees of freedom of the pixels' Student-t", positive=True)


class StudentTVAE(Model):
    """See the module docstring. ``x: [B, C, H, W]`` real-valued; ``z: [B, z_dim]``."""

    config_class = StudentTConfig

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), z_dim: int = 16,
                 hidden: Sequence[int] = (256,), df: float = 3.0, name: Optional[str] = None):
        super().__init__(name)
        self.x_shape, self.z_dim, self.df = tuple(x_shape), z_dim, float(df)
        self.encoder = Encoder(self.x_shape, 2 * z_dim, hidden)   # -> loc, log scale of q
        self.decoder = Decoder(z_dim, self.x_shape, 2, hidden)    # -> loc, log scale of p

    def pixels(self, z: torch.Tensor) -> dist.Distribution:
        loc, log_scale = self.decoder(z).unbind(-4)
        return dist.StudentT(self.df, loc, log_scale.exp() + 1e-3).to_event(3)

    def model(self, x=None, y=None, num=None):
        self.register("decoder")
        with pyro.plate("data", batch_size_of(x, None, num)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([self.z_dim]).to_event(1))
            return pyro.sample("x", self.pixels(z), obs=x)

    def guide(self, x, y=None, num=None):
        self.register("encoder")
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x).chunk(2, -1)
            return pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    @torch.no_grad()
    def encode(self, x, y=None):
        return self.encoder(x).chunk(2, -1)[0]

    @torch.no_grad()
    def decode(self, z, y=None):
        return self.decoder(z)[..., 0, :, :, :]

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def generate(self, num, y=None):
        return self.decode(torch.randn(num, self.z_dim))


register_model("student-t", StudentTVAE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--out", default="runs/student-t")
    args = parser.parse_args(argv)
    data = load_dataset("mnist-10k")

    # 1. Through fit, as any Pyro model/guide pair.
    vae = StudentTVAE(data.x_shape)
    history = fit(vae.model, vae.guide, data.x_train[: args.train_size],
                  test_data=data.x_test, epochs=args.epochs)
    print(f"fit:   test -ELBO {history[-1]['test_loss']:.1f} nats after {args.epochs} epochs")

    # 2. Through train(): a run folder with config.json, checkpoints and figures.
    config = TrainConfig.for_model("student-t", epochs=args.epochs, out=args.out)
    _, history = train(config, overwrite=True)
    print(f"train: test -ELBO {history[-1]['test_loss']:.1f} nats; run folder {args.out}")
    return history


if __name__ == "__main__":
    main()
