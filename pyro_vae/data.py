"""Image data sets by name, held as whole tensors.

Every data set is small enough to live in memory (and on the GPU) as one tensor,
so training batches by index instead of through a per-item ``DataLoader``.

=================  ==========================================================
``mnist-10k``      10,000 real MNIST digits shipped with the package (8k/2k)
``mnist``          MNIST (60k/10k), from IDX files or torchvision's download
``fashion-mnist``  Fashion-MNIST (60k/10k); also found where Debian's package
                   ``dataset-fashion-mnist`` installs it
``kmnist``         Kuzushiji-MNIST (60k/10k)
=================  ==========================================================

Pixels are float32 intensities in [0, 1], shaped ``[N, 1, 28, 28]``. Any folder of
IDX files in the MNIST layout is read with ``--data-dir``: images of unsigned bytes
are divided by 255, float32 images are taken as they are.
"""

import gzip
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, List, Optional, Union

import numpy as np
import torch

from .checks import integer, one_of

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# name -> (torchvision class name, folders searched when no data_dir is given)
TORCHVISION_SETS = {
    "mnist": ("MNIST", []),
    "fashion-mnist": ("FashionMNIST", ["/usr/share/datasets/fashion-mnist"]),
    "kmnist": ("KMNIST", []),
}
DATASETS = ["mnist-10k", *TORCHVISION_SETS]
BINARIZE = ("none", "dynamic")
# IDX type codes this module reads and writes: 0x08 unsigned bytes, 0x0D float32.
IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x0D: np.dtype(">f4")}
CACHE_DIR = Path(os.environ.get("PYRO_VAE_DATA", Path.home() / ".cache" / "pyro_vae"))


@dataclass
class ImageData:
    """A train/test split of labelled images.

    ``x_*: [N, C, H, W]`` float32 in [0, 1]; ``y_*: [N]`` int64 in ``[0, num_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def x_shape(self):
        return tuple(self.x_train.shape[1:])


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array of its stored shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a damaged gzip stream, an unreadable file
        raise ValueError(f"{path}: cannot be read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes or float32 (bad header)")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
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


def check_labels(y: torch.Tensor, num_classes: int, n: Optional[int] = None,
                 name: str = "labels") -> None:
    """Raise unless ``y`` is ``[n]`` integers in ``[0, num_classes)``."""
    if not torch.is_tensor(y) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor, got "
                        f"{y.dtype if torch.is_tensor(y) else type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name}: expected one dimension [N], got shape {list(y.shape)}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name}: expected {n} labels, one per example, got {len(y)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: expected classes in [0, {num_classes - 1}], got values in "
                         f"[{int(y.min())}, {int(y.max())}]")


def select_labels(y: torch.Tensor, num_labels: int, seed: int = 0,
                  num_classes: int = 10) -> torch.Tensor:
    """Indices of ``num_labels`` examples whose labels a semi-supervised run keeps.

    Balanced as in Kingma et al. (2014): ``num_labels // K`` examples of each of the
    ``K`` classes, and one more of each of ``num_labels % K`` classes drawn at
    random; within a class the examples are drawn at random. The same ``seed``
    gives the same indices. Returns sorted ``int64`` indices into ``y``.

    Raises ``ValueError`` when more labels are asked for than exist, overall or in
    one class.
    """
    num_classes = integer("num_classes", num_classes)
    check_labels(y, num_classes, name="y")
    num_labels = integer("num_labels", num_labels, minimum=0)
    if num_labels > len(y):
        raise ValueError(f"num_labels: expected at most the {len(y)} examples there are, "
                         f"got {num_labels}")
    generator = torch.Generator().manual_seed(seed)
    wanted = torch.full((num_classes,), num_labels // num_classes)
    wanted[torch.randperm(num_classes, generator=generator)[: num_labels % num_classes]] += 1
    chosen = []
    for c in range(num_classes):
        members = (y == c).nonzero().squeeze(1)
        if wanted[c] > len(members):
            raise ValueError(
                f"num_labels: {num_labels} labels spread over {num_classes} classes need "
                f"{int(wanted[c])} examples of class {c}, but there are {len(members)}"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[: wanted[c]]])
    return torch.cat(chosen).sort().values


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


def load_idx_folder(folder: Path, name: str, class_name: str = "") -> ImageData:
    """The four MNIST-layout IDX files found in ``folder`` as an :class:`ImageData`."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"data_dir: {folder} is not a folder")
    paths = {key: _find(Path(folder), stem, class_name) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: missing {', '.join(missing)} in {folder}"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, path in paths.items():
        if key.startswith("x") and arrays[key].ndim != 3:
            raise ValueError(f"{path}: expected images of shape [N, H, W], "
                             f"got {list(arrays[key].shape)}")
    x = {k: torch.from_numpy(a.astype(np.float32)).unsqueeze(1) for k, a in arrays.items()
         if k.startswith("x")}
    for key, images in x.items():
        if arrays[key].dtype == np.uint8:
            images.div_(255)
    y = {k: torch.from_numpy(a.astype(np.int64)) for k, a in arrays.items() if k.startswith("y")}
    for split in ("train", "test"):
        # Every data set of this layout has the ten classes of ImageData.num_classes.
        check_labels(y[f"y_{split}"], 10, len(x[f"x_{split}"]), f"dataset {name!r}: {split} labels")
    return ImageData(name, x["x_train"], y["y_train"], x["x_test"], y["y_test"])


def embedded_folder() -> Path:
    """Folder of the 10,000 MNIST digits shipped with the package (see its README)."""
    return Path(str(resources.files("pyro_vae") / "resources" / "mnist-10k"))


def _search_dirs(name: str, data_dir: Optional[str]) -> List[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    return [CACHE_DIR / name, *map(Path, TORCHVISION_SETS[name][1])]


def load_dataset(name: str, data_dir: Optional[str] = None, download: bool = True) -> ImageData:
    """The data set called ``name`` (one of :data:`DATASETS`).

    ``mnist-10k`` is read from the package. The others are read from the IDX files in
    ``data_dir`` (``.gz`` or not; directly, in ``raw/``, or in torchvision's
    ``<Class>/raw/`` layout); with no ``data_dir`` from the cache folder
    (``$PYRO_VAE_DATA``, default ``~/.cache/pyro_vae/<name>``) and known system
    folders, else through torchvision's download into the cache folder.
    """
    one_of("dataset", name, DATASETS)
    if name == "mnist-10k":
        return load_idx_folder(Path(data_dir) if data_dir else embedded_folder(), name)
    class_name = TORCHVISION_SETS[name][0]
    folders = _search_dirs(name, data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data_dir: {data_dir} is not a folder")
    for folder in folders:
        if _find(folder, IDX_FILES["x_train"], class_name):
            return load_idx_folder(folder, name, class_name)
    reason = "download=False"
    if download:
        try:
            return _download(name, class_name, folders[0])
        except Exception as err:  # no network, a mirror down, a partial file
            reason = f"torchvision's download failed: {err}"
    wanted = ", ".join(s + ".gz" for s in IDX_FILES.values())
    raise FileNotFoundError(
        f"dataset {name!r}: no IDX files found in {', '.join(map(str, folders))} "
        f"({reason}). Put {wanted} in a folder and pass it as data_dir (--data-dir)."
    )


def _download(name: str, class_name: str, root: Path) -> ImageData:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    cls(root=str(root), train=True, download=True)
    cls(root=str(root), train=False, download=True)
    return load_idx_folder(root, name, class_name)


def binarize(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A Bernoulli sample of each pixel: ``x_bin ~ Bernoulli(x)``, same shape and dtype.

    ``generator`` is used when it lives on ``x``'s device; for data on a GPU and a CPU
    generator the GPU's own random stream is used instead, so no batch leaves the GPU.
    """
    if generator is not None and generator.device != x.device:
        return torch.bernoulli(x)
    return torch.bernoulli(x, generator=generator)


def batch_indices(
    n: int, batch_size: int, generator: Optional[torch.Generator] = None, shuffle: bool = True
) -> Iterable[torch.Tensor]:
    """Index tensors of consecutive batches over a (shuffled) order of ``range(n)``.

    The last batch is smaller when ``batch_size`` does not divide ``n``.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)
