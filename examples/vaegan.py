"""A VAE-GAN on mnist-10k: the VAE's model and guide under SVI, its discriminator beside.

``fit`` runs the model's own second step after each SVI step (the discriminator's,
from ``VAEGAN.extra_steps``) and logs its loss as ``discriminator_loss``. The test
-ELBO is the feature-likelihood VAE's (the adversarial factor is a training term
only); prior samples and reconstructions are written to ``--out``.

    python examples/vaegan.py --epochs 12 --out runs/vaegan-example
    python examples/vaegan.py --epochs 1 --num-train 256 --disc-channels 8 16   # smoke test
"""

import argparse
from pathlib import Path

import pyro

from pyro_vae import elbo_terms, fit, load_dataset, plots
from pyro_vae.models import VAEGAN
from pyro_vae.models.vaegan import VAEGANConfig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=None, help="use only the first N images")
    parser.add_argument("--disc-channels", type=int, nargs="+",
                        default=list(VAEGANConfig.disc_channels))
    parser.add_argument("--batch-size", type=int, default=VAEGANConfig.batch_size)
    parser.add_argument("--gan-weight", type=float, default=None,
                        help="the decoder's adversarial weight (default: the model's)")
    parser.add_argument("--out", default="runs/vaegan-example")
    args = parser.parse_args(argv)

    data = load_dataset("mnist-10k")
    options = {} if args.gan_weight is None else {"gan_weight": args.gan_weight}
    pyro.set_rng_seed(0)
    model = VAEGAN(data.x_shape, disc_channels=args.disc_channels, **options)
    history = fit(model.model, model.guide, data.x_train[: args.num_train], epochs=args.epochs,
                  batch_size=args.batch_size)
    model.eval()
    loss = elbo_terms(model.model, model.guide, data.x_test)["test_loss"]
    print(f"test -ELBO {loss:.1f} nats/image (feature likelihood); "
          f"discriminator loss {history[-1]['discriminator_loss']:.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.save(plots.image_grid(model.generate(64), 8, title="samples from the prior"),
               out / "samples.png")
    x = data.x_test[:8]
    plots.save(plots.reconstructions(x, model.reconstruct(x)), out / "reconstructions.png")
    return history


if __name__ == "__main__":
    main()
