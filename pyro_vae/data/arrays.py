"""NumPy sources: a ``.npy`` array of images (unlabelled), or a ``.npz`` archive of
``x_train, x_test`` (+ ``y_train, y_test``), ``x`` (+ ``y``) or one array, with optional
``class_names``; sizes are read from the headers before any pixel is."""

import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from .dataset import _Loaded
from .memory import _check_memory
from .pixels import _check_dtype, _chw, _to_images

ARRAY_SUFFIXES = (".npy", ".npz")


def _labels(array: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Stored labels as int64 ``[n]`` of non-negative integers."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected integer labels, got dtype {array.dtype} "
                         f"(cast them with .astype(int))")
    if array.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels [N], one per image, "
                         f"got shape {list(array.shape)}")
    if n and array.min() < 0:
        raise ValueError(f"{where}: expected labels >= 0, got {int(array.min())}")
    return torch.from_numpy(array.astype(np.int64))


def _npy_header(f) -> Tuple[Tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(f)
    return shape, dtype


def _read_npy(path: Path, size, limit) -> _Loaded:
    where = f"data: {path}"
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{where}: cannot be read as a NumPy .npy file ({err})") from None
    _check_dtype(dtype, where)
    chw, _ = _chw(shape, where)
    _check_memory(shape[0], (chw[0], *(size or chw[1:])), limit, str(path))
    array = np.load(path, mmap_mode="r", allow_pickle=False)  # read chunk by chunk
    return _Loaded(_to_images(array, where, size), None, None, None)


def _read_npz(path: Path, size, limit) -> _Loaded:
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for member in archive.namelist():
                with archive.open(member) as f:
                    headers[member[:-4] if member.endswith(".npy") else member] = _npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"data: {path}: cannot be read as a NumPy .npz file ({err})") from None
    keys = set(headers) - {"class_names"}
    layouts = [("x_train", "y_train", "x_test", "y_test"), ("x", "y")]
    wanted = next((layout for layout in layouts if layout[0] in keys), None)
    if wanted is None and len(keys) == 1:
        wanted = (next(iter(keys)),)
    if wanted is None or not keys <= set(wanted) or (len(wanted) == 4 and "x_test" not in keys):
        raise ValueError(
            f"data: {path} holds keys {sorted(headers)}; expected x_train, x_test "
            f"(+ y_train, y_test), or x (+ y), or a single array (+ class_names optional)"
        )
    xs = [k for k in wanted[::2] if k in keys]  # (x_train, x_test), (x,) or (the array,)
    ys = [k for k in wanted[1::2] if k in keys]
    if ys and len(ys) != len(xs):
        raise ValueError(f"data: {path} has labels {ys} for images {xs}; give labels for "
                         f"every image array or for none")
    count, shapes = 0, {}
    for key in xs:
        shape, dtype = headers[key]
        _check_dtype(dtype, f"data: {path}[{key}]")
        shapes[key], _ = _chw(shape, f"data: {path}[{key}]")
        count += shape[0]
    chw = shapes[xs[0]]
    _check_memory(count, (chw[0], *(size or chw[1:])), limit, str(path))
    with np.load(path, allow_pickle=False) as stored:
        x = [_to_images(stored[k], f"data: {path}[{k}]", size) for k in xs]
        y = [_labels(stored[k], len(xi), f"data: {path}[{k}]") for k, xi in zip(ys, x)]
        names = None
        if "class_names" in headers:
            names = [str(name) for name in np.asarray(stored["class_names"]).reshape(-1)]
    y = y or [None] * len(x)
    if len(x) == 1:
        return _Loaded(x[0], y[0], None, None, names)
    return _Loaded(x[0], y[0], x[1], y[1], names)
