"""Image arrays to float32 ``[N, C, H, W]``: the layout, dtype and ``image_size`` rules
every source follows (see :mod:`pyro_vae.data`), converted and resized a chunk at a time."""

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import integer

_CHUNK = 1024  # images converted (and resized) at a time, so no float64/raw copy is whole


def _image_size(image_size) -> Optional[Tuple[int, int]]:
    if image_size is None:
        return None
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        return (integer("image_size", image_size[0]), integer("image_size", image_size[1]))
    if isinstance(image_size, (list, tuple)):
        raise ValueError(f"image_size: expected a size or a pair (H, W), got {image_size!r}")
    size = integer("image_size", image_size)
    return (size, size)


def _chw(shape: Sequence[int], where: str) -> Tuple[Tuple[int, int, int], str]:
    """``(C, H, W)`` and the layout (``nhw``, ``nchw`` or ``nhwc``) of an image array."""
    shape = tuple(shape)
    expected = ("images shaped [N, H, W], [N, C, H, W] with C in 1..4 or [N, H, W, C] "
                "with C in 1, 3, 4")
    if len(shape) == 3:
        chw, layout = (1, *shape[1:]), "nhw"
    elif len(shape) == 4 and 1 <= shape[1] <= 4:
        chw, layout = shape[1:], "nchw"
    elif len(shape) == 4 and shape[3] in (1, 3, 4):
        chw, layout = (shape[3], *shape[1:3]), "nhwc"
    else:
        raise ValueError(f"{where}: expected {expected}, got shape {list(shape)}")
    if shape[0] == 0 or 0 in chw:
        raise ValueError(f"{where}: expected at least one image, got shape {list(shape)}")
    return tuple(int(s) for s in chw), layout


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected images of uint8, bool, float or integers in "
                         f"0..255, got dtype {dtype}")


def _resize(x: torch.Tensor, size: Optional[Tuple[int, int]]) -> torch.Tensor:
    if size is None or tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _to_images(array: np.ndarray, where: str, size: Optional[Tuple[int, int]]) -> torch.Tensor:
    """An image array (any layout and dtype of :mod:`pyro_vae.data`'s rules) as float32
    ``[N, C, H, W]``, converted and resized a chunk at a time."""
    _check_dtype(array.dtype, where)
    (c, h, w), layout = _chw(array.shape, where)
    if layout == "nhw":
        array = array[:, None]
    elif layout == "nhwc":
        array = array.transpose(0, 3, 1, 2)
    kind = array.dtype.kind
    if kind in "iu" and array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"{where}: expected integer pixels in 0..255, got values in "
                             f"[{low}, {high}] (scale them to floats in [0, 1])")
    out = torch.empty((len(array), c, *(size or (h, w))), dtype=torch.float32)
    for start in range(0, len(array), _CHUNK):
        chunk = np.array(array[start: start + _CHUNK], dtype=np.float32)  # a writable copy
        if kind == "f" and not np.isfinite(chunk).all():
            bad = start + int(np.nonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0][0])
            raise ValueError(f"{where}: expected finite values, got NaN or inf in image {bad}")
        if kind in "iu":
            chunk /= 255
        out[start: start + len(chunk)] = _resize(torch.from_numpy(chunk), size)
    return out
