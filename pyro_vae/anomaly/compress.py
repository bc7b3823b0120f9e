"""Bits a lossless compressor needs for an image: the complexity term of Serra et al. (2020).

``L(x) = 8 * len(compress(x))``, with ``x`` quantised to 8 bits per value (a binary image as
levels 0 and 255, which PNG's filters compress better than one bit per pixel). PNG goes
through Pillow for 1 or 3 channels; any other channel count, and ``"zlib"``, compress the
raw bytes with zlib at level 9.
"""

import io
import zlib
from typing import Callable, Dict

import numpy as np
import torch
from PIL import Image


def _as_bytes(image: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``uint8`` with values 0..255."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def png_bits(image: np.ndarray) -> int:
    """Bits of the PNG file of one image ``[C, H, W]`` in [0, 1] (zlib for C not 1 or 3)."""
    channels = image.shape[0]
    if channels not in (1, 3):
        return zlib_bits(image)
    buffer = io.BytesIO()
    if channels == 1:
        picture = Image.fromarray(_as_bytes(image)[0], mode="L")
    else:
        picture = Image.fromarray(_as_bytes(image).transpose(1, 2, 0), mode="RGB")
    picture.save(buffer, format="PNG", optimize=True)
    return 8 * len(buffer.getvalue())


def zlib_bits(image: np.ndarray) -> int:
    """Bits of the zlib stream (level 9) of one image's bytes."""
    return 8 * len(zlib.compress(_as_bytes(image).tobytes(), 9))


COMPRESSORS: Dict[str, Callable[[np.ndarray], int]] = {"png": png_bits, "zlib": zlib_bits}


def compressed_bits(x: torch.Tensor, compressor: str = "png") -> torch.Tensor:
    """Bits per image of ``x: [N, C, H, W]`` in [0, 1] under ``compressor``: ``[N]``."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor: expected one of {sorted(COMPRESSORS)}, got {compressor!r}")
    images = x.detach().cpu().double().numpy()
    return torch.tensor([COMPRESSORS[compressor](image) for image in images], dtype=torch.float64)
