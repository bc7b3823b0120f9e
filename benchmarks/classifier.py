"""An independent judge of generated digits: a small CNN trained on real images only.

The benchmarks that ask "is this sample of the class asked for?" (``benchmarks/cvae.py``)
score samples with this classifier. It never sees a generated image: it is fitted by
cross-entropy to the real training images of a data set, each shifted by up to
``max_shift`` pixels at random (samples need not be centred like the training digits),
and its test accuracy on the real test images is printed beside every score.

Training is seeded and runs on one thread, so it is deterministic; the weights are
cached in ``<cache>/<data set>-seed<seed>-e<epochs>-v<VERSION>.pt`` and trained once.

    OMP_NUM_THREADS=1 python benchmarks/classifier.py     # trains or loads, prints accuracy
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae import accuracy, load_dataset

# Bump when the network or its training changes, so stale caches are not reused.
VERSION = 1
CACHE = Path("~/.cache/pyro_vae/classifiers").expanduser()


def cnn(num_classes: int = 10, channels: int = 1) -> nn.Module:
    """Two 3x3 conv-pool blocks, a dense layer: ``[B, C, 28, 28] -> [B, K]`` logits."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset in ``[-max_shift, max_shift]`` pixels
    along each axis, the uncovered border filled with 0 (background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [n, h, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [n, 1, w]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int = 15,
          seed: int = 0, max_shift: int = 2, batch_size: int = 64) -> nn.Module:
    """A :func:`cnn` fitted to ``x: [N, C, 28, 28]``, ``y: [N]`` by Adam (1e-3), in eval mode."""
    torch.manual_seed(seed)
    net = cnn(num_classes, x.shape[1])
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            optim.zero_grad()
            F.cross_entropy(net(shift(x[idx], max_shift, generator)), y[idx]).backward()
            optim.step()
    return net.eval()


def load_or_train(data, epochs: int = 15, seed: int = 0, cache: Path = CACHE,
                  verbose: bool = True) -> nn.Module:
    """The classifier of ``data`` (an :class:`~pyro_vae.data.ImageData`), from the cache
    when there, else trained and cached; prints its test accuracy when ``verbose``."""
    path = Path(cache) / f"{data.name}-seed{seed}-e{epochs}-v{VERSION}.pt"
    t0 = time.perf_counter()
    if path.is_file():
        net = cnn(data.num_classes, data.x_shape[0])
        net.load_state_dict(torch.load(path, weights_only=True))
        net.eval()
        how = f"loaded from {path}"
    else:
        net = train(data.x_train, data.y_train, data.num_classes, epochs, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
        how = f"trained in {(time.perf_counter() - t0) / 60:.1f} min, saved to {path}"
    if verbose:
        print(f"# classifier: CNN, {epochs} epochs on the {len(data.x_train)} real training "
              f"images of {data.name} (shifts <= 2 px, seed {seed}), test accuracy "
              f"{100 * test_accuracy(net, data):.2f}% ({how})", flush=True)
    return net


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The most probable class of each image of ``x``: ``[N]``."""
    return torch.cat([net(xb).argmax(-1) for xb in x.split(batch_size)])


@torch.no_grad()
def test_accuracy(net: nn.Module, data) -> float:
    """Fraction of the real test images classified correctly."""
    return accuracy(net, data.x_test, data.y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=str(CACHE), help="folder of the cached weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_or_train(load_dataset(args.dataset), args.epochs, args.seed, Path(args.cache))


if __name__ == "__main__":
    main()
