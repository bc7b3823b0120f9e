"""Train the plain VAE from Python: the model and guide are Pyro functions, `fit` runs SVI.

    python examples/train_vae.py --epochs 10 --out runs/example

Swap a part with one argument, e.g. ``VAE(..., prior=MyPrior(z_dim))``.
"""

import argparse
import logging

import pyro
import torch

from pyro_vae import VAE, elbo_terms, fit, load_dataset
from pyro_vae import plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None, help="use only the first N images")
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--out", default="runs/example")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data = load_dataset("mnist-10k")
    x_train = data.x_train[: args.num_train]

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x_shape=data.x_shape, z_dim=args.z_dim, hidden=(args.hidden,))
    history = fit(vae.model, vae.guide, x_train, test_data=data.x_test,
                  epochs=args.epochs, elbo="TraceMeanField_ELBO", run_dir=args.out)

    print(f"test -ELBO: {elbo_terms(vae.model, vae.guide, data.x_test)['test_loss']:.2f} nats/image")
    plots.save(plots.training_curves(history), f"{args.out}/curves.png")
    with torch.no_grad():
        plots.save(plots.image_grid(vae.generate(64), 8), f"{args.out}/samples.png")
    return history


if __name__ == "__main__":
    main()
