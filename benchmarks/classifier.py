"""Train (once) or load the independent classifier of a data set and print its accuracy.

The classifier lives in the package (:mod:`pyro_vae.quality.classifier`): a small CNN
trained on real images only, seeded and on one thread, cached in
``~/.cache/pyro_vae/classifiers``. ``benchmarks/cvae.py`` labels generated digits with
it; ``pyro-vae evaluate RUN --sample-quality`` measures FID and precision/recall in its
features.

    OMP_NUM_THREADS=1 python benchmarks/classifier.py     # trains or loads, prints accuracy
    OMP_NUM_THREADS=1 python benchmarks/classifier.py --dataset coloured-mnist-10k
"""

import argparse
from pathlib import Path

import torch

from pyro_vae import load_dataset
from pyro_vae.quality import CACHE, EPOCHS, load_or_train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=str(CACHE), help="folder of the cached weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    judge = load_or_train(load_dataset(args.dataset), args.epochs, args.seed, Path(args.cache))
    print(f"# {judge.summary}", flush=True)
    return judge


if __name__ == "__main__":
    main()
