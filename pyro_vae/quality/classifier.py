"""An independent judge of images: a small CNN trained on real images only.

It labels generated images ("is this sample of the class asked for?",
``benchmarks/cvae.py``) and its penultimate layer is the feature space of the
sample-quality metrics (:mod:`pyro_vae.quality.metrics`). It never sees a generated
image: it is fitted by cross-entropy to the real training images of a data set, each
shifted by up to ``max_shift`` pixels at random (samples need not be centred like the
training digits), and its test accuracy on the real test images goes with every score.

Training is seeded and runs on one thread, so it is deterministic; the weights are
cached in ``<cache>/<data set>-<digest>-seed<seed>-e<epochs>-v<VERSION>.pt`` (the digest
is of the training images and labels) and trained once.
"""

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate import accuracy

logger = logging.getLogger(__name__)

# Bump when the network or its training changes, so stale caches are not reused.
VERSION = 2
CACHE = Path("~/.cache/pyro_vae/classifiers").expanduser()
EPOCHS = 15  # training epochs of the classifier behind every reported score


class Classifier(nn.Module):
    """Two 3x3 conv-pool blocks, average pooling to 7 x 7, a dense layer of 128 units:
    ``[B, C, H, W] -> [B, K]`` logits, for any ``C``, ``H``, ``W``.

    :meth:`features` is the dense layer's output ``[B, 128]``, the feature space of the
    Frechet distance and precision/recall. The adaptive pooling is the identity on
    28 x 28 images (two halvings give 7 x 7), where the network is the classic
    MNIST CNN; 32 x 32 and other sizes are pooled to the same 7 x 7 grid.
    """

    num_features = 128

    def __init__(self, num_classes: int = 10, channels: int = 1):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes: a classifier needs at least 2, got {num_classes}")
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, self.num_features), nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, 128]``: the activations the head classifies."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset in ``[-max_shift, max_shift]`` pixels
    along each axis, the uncovered border filled with 0 (background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [n, h, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [n, 1, w]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int = EPOCHS,
                     seed: int = 0, max_shift: int = 2, batch_size: int = 64) -> Classifier:
    """A :class:`Classifier` fitted to ``x: [N, C, H, W]``, ``y: [N]`` by Adam (1e-3) on
    one CPU thread, in eval mode. The caller's random state and thread count are kept."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Classifier(num_classes, x.shape[1])
            optim = torch.optim.Adam(net.parameters(), lr=1e-3)
            generator = torch.Generator().manual_seed(seed)
            x, y = x.cpu(), y.cpu()
            for _ in range(epochs):
                for idx in torch.randperm(len(x), generator=generator).split(batch_size):
                    optim.zero_grad()
                    logits = net(shift(x[idx], max_shift, generator))
                    F.cross_entropy(logits, y[idx]).backward()
                    optim.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@dataclass
class Judge:
    """A classifier and what it is: its test accuracy and the file holding its weights."""

    net: Classifier
    test_accuracy: float  # on the real test images, in [0, 1]
    path: Path
    summary: str  # one line: the network, its training, accuracy and where it came from


def cache_path(data, epochs: int, seed: int, cache: Optional[Path] = None) -> Path:
    """Where the classifier of ``data`` (an :class:`~pyro_vae.data.ImageData`) is cached."""
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    name = re.sub(r"[^\w.-]", "_", data.name)
    folder = Path(CACHE if cache is None else cache)
    return folder / f"{name}-{digest.hexdigest()[:12]}-seed{seed}-e{epochs}-v{VERSION}.pt"


def load_or_train(data, epochs: Optional[int] = None, seed: int = 0,
                  cache: Optional[Path] = None) -> Judge:
    """The classifier of ``data`` (an :class:`~pyro_vae.data.ImageData` with labels),
    from the cache when there, else trained (``epochs``, default :data:`EPOCHS`) and
    cached; its summary, with the test accuracy, is logged."""
    if not data.labelled:
        raise ValueError(f"data: {data.name} is unlabelled; the quality classifier needs labels")
    epochs = EPOCHS if epochs is None else epochs
    path = cache_path(data, epochs, seed, cache)
    t0 = time.perf_counter()
    if path.is_file():
        net = Classifier(data.num_classes, data.x_shape[0])
        net.load_state_dict(torch.load(path, weights_only=True))
        net.eval()
        how = f"loaded from {path}"
    else:
        net = train_classifier(data.x_train, data.y_train, data.num_classes, epochs, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{time.time_ns()}.tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
        how = f"trained in {(time.perf_counter() - t0) / 60:.1f} min, saved to {path}"
    acc = test_accuracy(net, data)
    summary = (f"classifier: CNN, {epochs} epochs on the {len(data.x_train)} real training "
               f"images of {data.name} (shifts <= 2 px, seed {seed}), test accuracy "
               f"{100 * acc:.2f}% ({how})")
    logger.info(summary)
    return Judge(net, acc, path, summary)


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The most probable class of each image of ``x``: ``[N]``."""
    return torch.cat([net(xb).argmax(-1) for xb in x.split(batch_size)])


@torch.no_grad()
def test_accuracy(net: nn.Module, data) -> float:
    """Fraction of the real test images classified correctly."""
    return accuracy(net, data.x_test, data.y_test)
