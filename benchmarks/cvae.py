"""Does the class-conditional VAE draw the class it is asked for?

Trains a CVAE on mnist-10k, draws ``--per-class`` images of every class (the mean
image of p(x | z, y) at z ~ N(0, I), as ``pyro-vae sample --label`` writes them) and
lets an independent classifier label them. The classifier, a small CNN, is trained
here on the real training images only; its own test accuracy is printed beside the
score, which is the fraction of samples it recognises as the class asked for.

    python benchmarks/cvae.py            # the table of docs/variants.md (about 20 min)
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import pyro

from pyro_vae import CVAE, accuracy, fit, load_dataset


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def train_classifier(x, y, epochs: int, seed: int) -> nn.Module:
    """A CNN fitted to the real training images by cross-entropy."""
    torch.manual_seed(seed)
    net = cnn()
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(64):
            # Small random shifts: the samples need not be centred like the training digits.
            dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
            xb = torch.roll(x[idx], shifts=(dx, dy), dims=(2, 3))
            optim.zero_grad()
            F.cross_entropy(net(xb), y[idx]).backward()
            optim.step()
    return net.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="CVAE epochs")
    parser.add_argument("--z-dims", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--classifier-epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist-10k")

    t0 = time.perf_counter()
    classifier = train_classifier(data.x_train, data.y_train, args.classifier_epochs, args.seed)
    classify = lambda x: F.softmax(classifier(x), -1)  # noqa: E731
    print(f"# classifier: CNN trained on the {len(data.x_train)} real training images, "
          f"test accuracy {100 * accuracy(classify, data.x_test, data.y_test):.1f}% "
          f"({(time.perf_counter() - t0) / 60:.1f} min)")
    print(f"# CVAE: one hidden layer of 400, {args.epochs} epochs, Adam 1e-3; "
          f"{args.per_class} samples per class")
    print("| z_dim | test -ELBO(x, y) nats | recognised as the class asked for % "
          "| worst class % | minutes |")
    print("| --- | --- | --- | --- | --- |")
    for z_dim in args.z_dims:
        t0 = time.perf_counter()
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        cvae = CVAE(data.x_shape, num_classes=10, z_dim=z_dim)
        history = fit(cvae.model, cvae.guide, (data.x_train, data.y_train),
                      test_data=(data.x_test, data.y_test), epochs=args.epochs, seed=args.seed)
        cvae.eval()
        torch.manual_seed(args.seed)
        hits = []
        for k in range(10):
            with torch.no_grad():
                predicted = classifier(cvae.generate(args.per_class, y=k)).argmax(-1)
            hits.append(100 * (predicted == k).float().mean().item())
        worst = min(range(10), key=lambda k: hits[k])
        print(f"| {z_dim} | {history[-1]['test_loss']:.1f} | {sum(hits) / 10:.1f} | "
              f"{hits[worst]:.1f} (class {worst}) | {(time.perf_counter() - t0) / 60:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
