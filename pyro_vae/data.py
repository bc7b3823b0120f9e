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

Pixels are float32 intensities in [0, 1], shaped ``[N, 1, 28, 28]``.
"""

import gzip
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np
import torch

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
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad header)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header promises shape {shape} but the file holds "
            f"{len(raw) - header} bytes of data (truncated?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


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
    paths = {key: _find(Path(folder), stem, class_name) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: missing {', '.join(missing)} in {folder}"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise ValueError(f"dataset {name!r}: {nx} {split} images but {ny} labels")
    x = {k: torch.from_numpy(a.copy()).float().div_(255).unsqueeze(1)
         for k, a in arrays.items() if k.startswith("x")}
    y = {k: torch.from_numpy(a.astype(np.int64)) for k, a in arrays.items() if k.startswith("y")}
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
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {name!r}")
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
    """A Bernoulli sample of each pixel: ``x_bin ~ Bernoulli(x)``, same shape and dtype."""
    if x.device.type != "cpu" and generator is not None and generator.device != x.device:
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)
    return torch.bernoulli(x, generator=generator)


def batch_indices(
    n: int, batch_size: int, generator: Optional[torch.Generator] = None, shuffle: bool = True
) -> Iterable[torch.Tensor]:
    """Index tensors of consecutive batches over a (shuffled) order of ``range(n)``.

    The last batch is smaller when ``batch_size`` does not divide ``n``.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)
