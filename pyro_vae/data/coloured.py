"""Coloured digits: greyscale images painted with a random foreground and background
colour per image, made on the fly (``coloured-mnist-10k`` from ``mnist-10k``).

Each pixel's intensity ``x`` in [0, 1] mixes the image's two colours,

    x_rgb = (1 - x) * background + x * foreground,

so a digit keeps its strokes and anti-aliasing and gains colour. The colours are drawn
from a generator seeded with ``seed`` (the same images on every call): the background
uniform in [0, 1]^3, the foreground ``(background + 0.25 + 0.5 u) mod 1`` with ``u``
uniform, so every channel of the two colours differs by at least 0.25 and digit and
background never blend.
"""

from dataclasses import replace
from typing import Optional, Tuple

import torch

from .dataset import ImageData
from .memory import _check_memory

COLOUR_SEED = 0


def colours(n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(foreground, background)``: ``[n, 3]`` each, in [0, 1], channel by channel at
    least 0.25 apart (module docstring)."""
    background = torch.rand(n, 3, generator=generator)
    foreground = (background + 0.25 + 0.5 * torch.rand(n, 3, generator=generator)) % 1.0
    return foreground, background


def colourise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x: [N, 1, H, W]`` in [0, 1] -> ``[N, 3, H, W]``: each image in its own colours."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x: expected greyscale images [N, 1, H, W], got {list(x.shape)}")
    foreground, background = colours(len(x), generator)
    fg, bg = foreground[:, :, None, None], background[:, :, None, None]  # [N, 3, 1, 1]
    return (1 - x) * bg + x * fg


def coloured(data: ImageData, name: str, max_memory: Optional[int] = None,
             seed: int = COLOUR_SEED) -> ImageData:
    """``data`` (greyscale) with every image coloured: training images first, then test
    images, from one generator seeded with ``seed``; labels and classes unchanged."""
    if max_memory is not None:
        count = len(data.x_train) + len(data.x_test)
        _check_memory(count, (3, *data.x_shape[1:]), max_memory, name)
    generator = torch.Generator().manual_seed(seed)
    x_train = colourise(data.x_train, generator)
    x_test = colourise(data.x_test, generator)
    return replace(data, name=name, x_train=x_train, x_test=x_test)
