"""A VQ-VAE on mnist-10k: reconstructions, codebook use, and samples from two priors.

Trains :class:`~pyro_vae.models.VQVAE` with ``fit`` (its learnt prior over code grids is
fitted alongside, as the model's extra step), prints the test reconstruction MSE, the
share of codes in use and their perplexity, fits the prior alone on the fixed training
codes for ``--prior-epochs`` more (the second phase), and writes samples from the learnt
prior and from a uniform prior over codes to ``--out``.

    python examples/vqvae.py --epochs 10 --out runs/vqvae-example
    python examples/vqvae.py --epochs 1 --num-train 256 --num-codes 16 --prior-epochs 1
"""

import argparse
from pathlib import Path

import pyro

from pyro_vae import fit, load_dataset, plots
from pyro_vae.models import VQVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None, help="use only the first N images")
    parser.add_argument("--num-codes", type=int, default=128)
    parser.add_argument("--prior-epochs", type=int, default=10,
                        help="epochs of the prior alone on the fixed codes, after training")
    parser.add_argument("--out", default="runs/vqvae-example")
    args = parser.parse_args(argv)

    pyro.set_rng_seed(0)
    data = load_dataset("mnist-10k")
    model = VQVAE(data.x_shape, num_codes=args.num_codes)
    fit(model.model, model.guide, data.x_train[: args.num_train], epochs=args.epochs,
        batch_size=128)
    model.eval()
    stats = model.code_statistics(data.x_test)
    print(f"test reconstruction MSE {stats['mse']:.4f}, codes in use {stats['usage']:.0%} "
          f"of {args.num_codes}, perplexity {stats['perplexity']:.1f}")
    nll = model.fit_prior(data.x_train[: args.num_train], args.prior_epochs)
    if nll:
        print(f"prior alone, {args.prior_epochs} epochs: -log p(k) {nll[-1]:.1f} nats/image")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for prior in ("transformer", "uniform"):
        plots.save(plots.image_grid(model.generate(64, prior=prior), 8),
                   out / f"samples-{prior}.png")
    return stats


if __name__ == "__main__":
    main()
