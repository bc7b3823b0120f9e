"""A VAE with 30 categorical latents of 10 classes, trained with each gradient estimator.

The same model three times: the Gumbel-softmax relaxation, its straight-through
variant, and the score function with a learnt baseline (under ``TraceGraph_ELBO``,
the model's own ELBO for that estimator). The relaxed ones anneal the temperature
through the ``Temperature`` callback. Each is scored as the discrete model it
approximates (exact categorical KL), and the relaxed one's samples and a traversal
of one categorical are written to ``--out``.

    python examples/categorical_vae.py --epochs 20 --out runs/categorical-example
    python examples/categorical_vae.py --epochs 1 --num-train 256 --hidden 32   # smoke test
"""

import argparse
from pathlib import Path

import pyro
import torch

from pyro_vae import elbo_terms, fit, load_dataset, plots
from pyro_vae.data import binarize
from pyro_vae.models import CategoricalVAE
from pyro_vae.training.callbacks import Temperature

ESTIMATORS = ("relaxed", "straight-through", "score-function")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-train", type=int, default=None, help="use only the first N images")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--out", default="runs/categorical-example")
    args = parser.parse_args(argv)

    data = load_dataset("mnist-10k")
    x_train = data.x_train[: args.num_train]
    x_test = binarize(data.x_test, torch.Generator().manual_seed(0))
    results, models = {}, {}
    for estimator in ESTIMATORS:
        pyro.set_rng_seed(0)
        model = CategoricalVAE(data.x_shape, hidden=args.hidden, estimator=estimator)
        fit(model.model, model.guide, x_train, epochs=args.epochs, batch_size=100,
            transform=binarize, callbacks=[Temperature(model, model.temperature_at)])
        model.eval()  # the exact discrete model from here on
        results[estimator] = elbo_terms(model.model, model.guide, x_test)["test_loss"]
        models[estimator] = model
        print(f"{estimator:>16}  test -ELBO {results[estimator]:.2f} nats/image")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    relaxed = models["relaxed"]
    plots.save(plots.image_grid(relaxed.generate(64), 8), out / "samples.png")
    plots.save(plots.labelled_rows(relaxed.traverse_categorical(x_test[:4], 0),
                                   [f"image {i}" for i in range(4)]), out / "traversal.png")
    return results


if __name__ == "__main__":
    main()
