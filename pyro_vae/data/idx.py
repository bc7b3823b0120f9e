"""IDX files (MNIST's format: unsigned bytes or float32, gzipped or not), read and written,
and folders holding the four MNIST-layout files :data:`IDX_FILES`."""

import gzip
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .dataset import ImageData, _Loaded
from .labels import check_labels
from .memory import _check_memory
from .pixels import _chw, _image_size, _to_images

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type codes this module reads and writes: 0x08 unsigned bytes, 0x0D float32.
IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x0D: np.dtype(">f4")}


def _idx_header(raw: bytes, path) -> Tuple[np.dtype, Tuple[int, ...], int]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes or float32 (bad header)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: not an IDX file (header cut short)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return IDX_DTYPES[raw[2]], shape, 4 + 4 * ndim


def _read_bytes(path, size: int = -1) -> bytes:
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read(size)
    except (OSError, EOFError) as err:  # a damaged gzip stream, an unreadable file
        raise ValueError(f"{path}: cannot be read ({err})") from None


def idx_shape(path: Path) -> Tuple[np.dtype, Tuple[int, ...]]:
    """The dtype and shape an IDX file's header promises, read without its data."""
    dtype, shape, _ = _idx_header(_read_bytes(path, 4 + 4 * 255), path)
    return dtype, shape


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array of its stored shape, any size."""
    raw = _read_bytes(path)
    dtype, shape, header = _idx_header(raw, path)
    if len(raw) - header != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(
            f"{path}: header promises shape {shape} but the file holds "
            f"{len(raw) - header} bytes of data (truncated?)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: Union[str, Path], array: np.ndarray) -> None:
    """Write ``array`` (uint8 or float32) as an IDX file, gzipped when ``path`` ends in .gz."""
    codes = {dtype.kind + str(dtype.itemsize): code for code, dtype in IDX_DTYPES.items()}
    array = np.asarray(array)
    code = codes.get(array.dtype.kind + str(array.dtype.itemsize))
    if code is None:
        raise TypeError(f"array: expected uint8 or float32 values, got {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    body = array.astype(IDX_DTYPES[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)


def _find(folder: Path, stem: str, class_name: str = "") -> Optional[Path]:
    """``stem`` or ``stem.gz`` in ``folder``, ``folder/raw`` or ``folder/<class>/raw``."""
    for sub in ("", "raw", f"{class_name}/raw" if class_name else None):
        if sub is None:
            continue
        for name in (stem, stem + ".gz"):
            path = folder / sub / name
            if path.is_file():
                return path
    return None


def _read_idx_folder(folder: Path, who: str, class_name: str = "", size=None,
                     limit: Optional[int] = None) -> _Loaded:
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"data_dir: {folder} is not a folder")
    paths = {key: _find(Path(folder), stem, class_name) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{who}: missing {', '.join(missing)} in {folder}")
    if limit is not None:
        headers = {k: idx_shape(paths[k])[1] for k in ("x_train", "x_test")}
        chw = {k: _chw(shape, str(paths[k]))[0] for k, shape in headers.items()}
        count = sum(shape[0] for shape in headers.values())
        _check_memory(count, (chw["x_train"][0], *(size or chw["x_train"][1:])), limit,
                      str(folder))
    x = {k: _to_images(read_idx(paths[k]), str(paths[k]), size) for k in ("x_train", "x_test")}
    y = {k: torch.from_numpy(read_idx(paths[k]).astype(np.int64)) for k in ("y_train", "y_test")}
    return _Loaded(x["x_train"], y["y_train"], x["x_test"], y["y_test"])


def load_idx_folder(folder: Path, name: str, class_name: str = "", *,
                    num_classes: Optional[int] = 10, image_size=None,
                    max_memory: Optional[int] = None) -> ImageData:
    """The four MNIST-layout IDX files found in ``folder`` as an :class:`ImageData`.

    Images of any size ``[N, H, W]`` (or ``[N, C, H, W]``, ``[N, H, W, C]``). Labels must
    lie in ``[0, num_classes)``; ``num_classes=None`` takes ``max label + 1``.
    """
    loaded = _read_idx_folder(Path(folder), f"dataset {name!r}", class_name,
                              _image_size(image_size), max_memory)
    if num_classes is None:
        num_classes = max([int(y.max()) for y in (loaded.y_train, loaded.y_test) if len(y)],
                          default=-1) + 1
    for split in ("train", "test"):
        check_labels(getattr(loaded, f"y_{split}"), num_classes,
                     len(getattr(loaded, f"x_{split}")), f"dataset {name!r}: {split} labels")
    return ImageData(name, loaded.x_train, loaded.y_train, loaded.x_test, loaded.y_test,
                     num_classes, source=str(folder))
