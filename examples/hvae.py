"""A two-level VAE on MNIST: train it, then read what each level carries.

Trains :class:`pyro_vae.models.HVAE` (z2 -> z1 -> x, the ladder guide) with a KL warm-up
on binarised digits, then prints the test ELBO, the KL and active units of each level
(``model.metrics``) and the importance-weighted estimate of -log p(x); writes
``samples.png`` (ancestral samples) and ``reconstructions.png`` to ``--out``.

Usage::

    python examples/hvae.py --out runs/hvae-example           # about 2 min on one core
    python examples/hvae.py --epochs 1 --num-train 200 --num-test 20 --iw-samples 5  # smoke
"""

import argparse
from pathlib import Path

import torch

from pyro_vae import fit, load_dataset, plots
from pyro_vae.data import binarize
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood
from pyro_vae.models import HVAE
from pyro_vae.schedules import Linear
from pyro_vae.training.callbacks import KLWarmup


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-train", type=int, default=8000)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--z-dim", type=int, default=20, help="the top level's dimension")
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--out", default="runs/hvae-example")
    args = parser.parse_args(argv)

    data = load_dataset("mnist-10k")
    x_train = data.x_train[: args.num_train]
    x_test = binarize(data.x_test[: args.num_test], torch.Generator().manual_seed(0))
    hvae = HVAE(levels=args.levels, z_dim=args.z_dim, hidden=(args.hidden,))
    fit(hvae.model, hvae.guide, x_train, epochs=args.epochs, batch_size=100,
        transform=lambda x, g: binarize(x, g),  # a fresh binarisation every epoch
        callbacks=[KLWarmup(hvae, Linear(max(args.epochs / 4, 1)))])

    hvae.eval()
    print(f"test ELBO {-elbo_terms(hvae.model, hvae.guide, x_test)['test_loss']:.2f} nats")
    for key, value in hvae.metrics(x_test).items():  # kl_z, kl_z1, active_units_z, ...
        print(f"{key:>16}  {value:.2f}" if isinstance(value, float) else f"{key:>16}  {value}")
    nll = -iw_log_likelihood(hvae.model, hvae.guide, x_test, num_samples=args.iw_samples)
    print(f"test NLL (K={args.iw_samples}) {nll.mean():.2f} nats")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.save(plots.image_grid(hvae.generate(64), 8, title="ancestral samples"),
               out / "samples.png")
    plots.save(plots.reconstructions(x_test[:16], hvae.reconstruct(x_test[:16])),
               out / "reconstructions.png")


if __name__ == "__main__":
    main()
