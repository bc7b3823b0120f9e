"""Does the class-conditional VAE draw the class it is asked for?

Trains one CVAE on mnist-10k as ``pyro-vae train --model cvae`` does by default (10
epochs, batches of 128, Adam 1e-3, Trace_ELBO, seed 0, z_dim 50, one hidden layer of
400, the label-dependent prior p(z | y)), draws ``--per-class`` images of every class
as ``pyro-vae sample --label k`` does (z ~ p(z | y = k), the mean image of
p(x | z, y = k)) and lets an independent classifier (``benchmarks/classifier.py``,
trained on real images only) label them. Prints, per class, the share recognised as
the class asked for, then the overall share, the worst class, the classifier's own
test accuracy and the CVAE's test -ELBO(x, y).

    OMP_NUM_THREADS=1 python benchmarks/cvae.py                          # the defaults (~2 min)
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --prior normal           # the old N(0, I) prior
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --prior normal --z-dim 4
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --net conv

Each command is one variant; the tables of docs/variants.md come from these. The
classifier is trained once (about 1 min) and cached (see ``--cache``).
"""

import argparse
import time
from pathlib import Path

import torch

import pyro

from pyro_vae import CVAE, fit, load_dataset

import classifier as judge  # benchmarks/classifier.py, beside this file


def recognised(cvae: CVAE, net, num_classes: int, per_class: int, seed: int) -> list:
    """Per class ``k``, the share of ``cvae.generate(per_class, y=k)`` that ``net`` labels ``k``."""
    torch.manual_seed(seed)  # as `pyro-vae sample --seed` does before drawing
    return [(judge.predict(net, cvae.generate(per_class, y=k)) == k).float().mean().item()
            for k in range(num_classes)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="CVAE epochs (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the CVAE and its samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--prior", default="class", help="CVAE prior (default: class)")
    parser.add_argument("--z-dim", type=int, default=50, help="latent dimension (default 50)")
    parser.add_argument("--net", default="mlp", choices=["mlp", "conv"], help="networks")
    parser.add_argument("--per-class", type=int, default=1000, help="samples per class")
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--classifier-epochs", type=int, default=15)
    parser.add_argument("--classifier-seed", type=int, default=0)
    parser.add_argument("--cache", default=str(judge.CACHE), help="folder of the classifier")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    net = judge.load_or_train(data, args.classifier_epochs, args.classifier_seed, Path(args.cache))

    t0 = time.perf_counter()
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)  # as `pyro-vae train` does before building the model
    cvae = CVAE(data.x_shape, num_classes=data.num_classes, prior=args.prior,
                z_dim=args.z_dim, net=args.net)
    history = fit(cvae.model, cvae.guide, (data.x_train, data.y_train),
                  test_data=(data.x_test, data.y_test), epochs=args.epochs, batch_size=128,
                  lr=1e-3, elbo="Trace_ELBO", seed=args.seed)
    cvae.eval()
    hits = recognised(cvae, net, data.num_classes, args.per_class, args.seed)
    worst = min(range(len(hits)), key=hits.__getitem__)

    print(f"# CVAE: prior {args.prior}, z_dim {args.z_dim}, net {args.net}, {args.epochs} "
          f"epochs, batch 128, Adam 1e-3, Trace_ELBO, seed {args.seed} "
          f"({(time.perf_counter() - t0) / 60:.1f} min); {args.per_class} samples per class")
    print("| class | recognised as the class asked for % |")
    print("| --- | --- |")
    for k, hit in enumerate(hits):
        print(f"| {k} | {100 * hit:.1f} |")
    print(f"overall {100 * sum(hits) / len(hits):.2f}%, worst {100 * hits[worst]:.1f}% "
          f"(class {worst}), test -ELBO(x, y) {history[-1]['test_loss']:.2f} nats", flush=True)


if __name__ == "__main__":
    main()
