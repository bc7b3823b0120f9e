"""``load_dataset``: a registered name or a path (IDX folder, image folder, ``.npy``,
``.npz``) dispatched to its reader, then assembled into an :class:`ImageData`: labels
checked, a seeded test split where the source has none, class filters applied."""

import difflib
import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch

from ..checks import integer, positive_number
from .arrays import ARRAY_SUFFIXES, _read_npy, _read_npz
from .dataset import ImageData, _Loaded
from .folders import _read_image_folders
from .idx import IDX_FILES, _find, _read_idx_folder
from .memory import default_max_memory
from .named import DATASETS, _load_named
from .pixels import _image_size
from .splits import _filter_training, _fraction, _split_indices

logger = logging.getLogger(__name__)


def _load_path(path: Path, size, limit) -> _Loaded:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return _read_npy(path, size, limit)
        if suffix == ".npz":
            return _read_npz(path, size, limit)
        raise ValueError(f"data: expected a folder, a .npy or a .npz file, got {path}")
    if _find(path, IDX_FILES["x_train"]):
        return _read_idx_folder(path, f"data: {path}", size=size, limit=limit)
    if (path / "train").is_dir() and (path / "test").is_dir():
        return _read_image_folders([path / "train", path / "test"], size, limit)
    return _read_image_folders([path], size, limit)


def _unknown(source: str, is_path: bool) -> Exception:
    looks_like_path = is_path or (os.sep in source or "/" in source or source.startswith(("~", "."))
                       or Path(source).suffix.lower() in ARRAY_SUFFIXES)
    if looks_like_path:
        return FileNotFoundError(f"data: {source} is no file or folder")
    close = difflib.get_close_matches(source, DATASETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"dataset: expected one of {DATASETS} or a path to a folder, .npy or "
                      f".npz file, got {source!r}{hint}")


def load_dataset(
    source: Union[str, Path],
    data_dir: Optional[str] = None,
    download: bool = True,
    *,
    image_size: Union[None, int, Tuple[int, int]] = None,
    classes: Optional[Sequence[Union[int, str]]] = None,
    exclude_classes: Optional[Sequence[Union[int, str]]] = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_memory: Optional[int] = None,
) -> ImageData:
    """The data set ``source``: a name of :data:`DATASETS` or a path (see :mod:`pyro_vae.data`).

    A named set other than ``mnist-10k`` (read from the package) is read from the IDX
    files in ``data_dir`` (``.gz`` or not; directly, in ``raw/``, or in torchvision's
    ``<Class>/raw/`` layout); with no ``data_dir`` from the cache folder
    (``$PYRO_VAE_DATA``, default ``~/.cache/pyro_vae/<name>``) and known system
    folders, else (``download``) through torchvision's download into the cache folder.
    ``data_dir`` is for names only.

    :param image_size: resize every image to ``s x s`` or ``(H, W)``; ``None`` keeps
        the stored size (which all images must then share).
    :param classes: labels (or class names) whose training images are kept.
    :param exclude_classes: labels (or class names) whose training images are dropped.
        Both filter the training split only; the test set, the label values and
        ``num_classes`` stay whole.
    :param test_fraction: share held out as the test set, by a seeded split stratified
        by class, when the source has no test set of its own.
    :param seed: seed of that split.
    :param max_memory: bytes the float32 images may take; default
        :func:`default_max_memory`.
    """
    size = _image_size(image_size)
    test_fraction = _fraction("test_fraction", test_fraction)
    seed = integer("seed", seed, minimum=0)
    limit = (default_max_memory() if max_memory is None
             else int(positive_number("max_memory", max_memory)))
    if not isinstance(source, (str, Path)):
        raise TypeError(f"dataset: expected a name or a path, got {source!r} "
                        f"({type(source).__name__})")
    if not isinstance(source, Path) and source in DATASETS:
        data = _load_named(source, data_dir, download, size, limit)
        data.source = source
        return _filter_training(data, classes, exclude_classes)
    path = Path(source).expanduser()
    if not path.exists():
        raise _unknown(str(source), isinstance(source, Path))
    if data_dir is not None:
        raise ValueError(f"data_dir: only used with a dataset name ({', '.join(DATASETS)}), "
                         f"got data_dir={data_dir!r} with the path {source}")
    loaded = _load_path(path, size, limit)
    return _filter_training(_assemble(loaded, path, test_fraction, seed), classes,
                            exclude_classes)


def _assemble(loaded: _Loaded, path: Path, test_fraction: float, seed: int) -> ImageData:
    """An :class:`ImageData` of what a reader found: labels checked (or ``-1``), and a
    seeded split where the source had no test set."""
    x_train, y_train, x_test, y_test, names = loaded
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"data: {path}: training images are {list(x_train.shape[1:])} but "
                         f"test images are {list(x_test.shape[1:])}; they must match")
    labelled = y_train is not None
    for x, y, split in ((x_train, y_train, "training"), (x_test, y_test, "test")):
        if y is not None and len(y) != len(x):
            raise ValueError(f"data: {path}: {len(x)} {split} images but {len(y)} labels; "
                             f"expected one label per image")
    if labelled:
        top = max(int(y.max()) for y in (y_train, y_test) if y is not None and len(y))
        num_classes = len(names) if names else top + 1
        if top >= num_classes:
            raise ValueError(f"data: {path}: labels reach {top} but class_names has "
                             f"{num_classes} names")
    else:
        num_classes, names = 0, None
        y_train = torch.full((len(x_train),), -1, dtype=torch.int64)
        if x_test is not None:
            y_test = torch.full((len(x_test),), -1, dtype=torch.int64)
    fraction = None
    if x_test is None:
        keep, held = _split_indices(y_train, test_fraction, seed, "test_fraction", "test")
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        fraction = test_fraction
        logger.info("data: %s has no test set; held out %d of %d images as one "
                    "(test_fraction=%g, seed=%d%s)", path, len(held), len(keep) + len(held),
                    test_fraction, seed, ", stratified by class" if labelled else "")
    return ImageData(path.name or str(path), x_train, y_train, x_test, y_test, num_classes,
                     names, str(path), fraction)


def load_items(path: Union[str, Path], image_size=None,
               max_memory: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every item of the data at ``path`` in its stored order, no split: ``(x, y)`` with
    ``x: [N, C, H, W]`` in [0, 1] and ``y: [N]`` (``-1`` where unlabelled). A source with
    a test set of its own gives its training items first."""
    path = Path(path).expanduser()
    if not path.exists():
        raise _unknown(str(path), True)
    limit = default_max_memory() if max_memory is None else int(max_memory)
    x, y, x_test, y_test, _ = _load_path(path, _image_size(image_size), limit)
    y = _or_unlabelled(y, len(x))
    if x_test is not None:
        x, y = torch.cat([x, x_test]), torch.cat([y, _or_unlabelled(y_test, len(x_test))])
    return x, y


def _or_unlabelled(y: Optional[torch.Tensor], n: int) -> torch.Tensor:
    return torch.full((n,), -1, dtype=torch.int64) if y is None else y
