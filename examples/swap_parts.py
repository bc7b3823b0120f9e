"""Swap the prior, the guide and the likelihood of a VAE, and compare log-likelihoods.

The same model and guide functions serve every combination: each part is one
argument of :class:`pyro_vae.VAE`, given by name or as an object you configure (or
write) yourself. Each variant is trained with Pyro's SVI on dynamically binarised
MNIST digits and scored by the importance-weighted estimate of log p(x)
(Burda et al. 2015) on held-out digits.

    python examples/swap_parts.py                    # about 2 minutes on one CPU core
    python examples/swap_parts.py --epochs 1 --num-train 200 --num-test 20 --iw-samples 10
"""

import argparse

import torch

import pyro

from pyro_vae import VAE, fit, load_dataset
from pyro_vae.data import binarize
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood
from pyro_vae.priors import MixtureOfGaussians


def variants(z_dim: int, hidden):
    """Name -> VAE. Parts by registry name, or as objects with their own options."""
    return {
        "standard VAE": VAE(z_dim=z_dim, hidden=hidden),
        "mixture prior, low-rank guide": VAE(
            z_dim=z_dim, hidden=hidden,
            prior=MixtureOfGaussians(z_dim, num_components=20), guide="lowrank",
        ),
        "VampPrior, IAF guide": VAE(
            z_dim=z_dim, hidden=hidden, prior="vamp", guide="iaf", pseudo_inputs=100,
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=8000, help="training digits")
    parser.add_argument("--num-test", type=int, default=200, help="held-out digits scored")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the estimate")
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = load_dataset("mnist-10k")
    x_train = data.x_train[: args.num_train]
    # The literature's protocol: a fresh binarisation per epoch, a fixed binarised test set.
    x_test = binarize(data.x_test[: args.num_test], torch.Generator().manual_seed(0))

    print(f"{'variant':<32} {'test ELBO':>10} {'log p(x)':>10}   (nats per digit)")
    for name, vae in variants(args.z_dim, (args.hidden,)).items():
        pyro.clear_param_store()  # each variant is an unrelated model
        pyro.set_rng_seed(args.seed)
        vae.check_data(x_train)  # data outside the likelihood's support fail here
        fit(vae.model, vae.guide, x_train, epochs=args.epochs, batch_size=100,
            transform=binarize, seed=args.seed)
        elbo = -elbo_terms(vae.model, vae.guide, x_test)["test_loss"]
        log_px = iw_log_likelihood(vae.model, vae.guide, x_test, num_samples=args.iw_samples)
        print(f"{name:<32} {elbo:>10.2f} {log_px.mean().item():>10.2f}")


if __name__ == "__main__":
    main()
