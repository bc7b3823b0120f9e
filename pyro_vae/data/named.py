"""The registered data sets :data:`DATASETS`: ``mnist-10k``, shipped with the package,
sets made on the fly from another (:data:`DERIVED`: ``coloured-mnist-10k``), and
torchvision's MNIST-like sets, read from IDX files in ``data_dir``, the cache folder or
known system folders, else downloaded by torchvision into the cache folder."""

import os
from importlib import resources
from pathlib import Path
from typing import List, Optional

from .coloured import coloured
from .dataset import ImageData
from .idx import IDX_FILES, _find, load_idx_folder

# name -> (torchvision class name, folders searched when no data_dir is given)
TORCHVISION_SETS = {
    "mnist": ("MNIST", []),
    "fashion-mnist": ("FashionMNIST", ["/usr/share/datasets/fashion-mnist"]),
    "kmnist": ("KMNIST", []),
}
# name -> (the registered set it is made from, (data, name, max_memory) -> the made set)
DERIVED = {"coloured-mnist-10k": ("mnist-10k", coloured)}
DATASETS = ["mnist-10k", *DERIVED, *TORCHVISION_SETS]
CACHE_DIR = Path(os.environ.get("PYRO_VAE_DATA", Path.home() / ".cache" / "pyro_vae"))


def embedded_folder() -> Path:
    """Folder of the 10,000 MNIST digits shipped with the package (see its README)."""
    return Path(str(resources.files("pyro_vae") / "resources" / "mnist-10k"))


def _search_dirs(name: str, data_dir: Optional[str]) -> List[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    return [CACHE_DIR / name, *map(Path, TORCHVISION_SETS[name][1])]


def _load_named(name: str, data_dir, download: bool, size, limit) -> ImageData:
    if name in DERIVED:
        base, make = DERIVED[name]
        return make(_load_named(base, data_dir, download, size, limit), name, limit)
    if name == "mnist-10k":
        return load_idx_folder(Path(data_dir) if data_dir else embedded_folder(), name,
                               image_size=size, max_memory=limit)
    class_name = TORCHVISION_SETS[name][0]
    folders = _search_dirs(name, data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data_dir: {data_dir} is not a folder")
    for folder in folders:
        if _find(folder, IDX_FILES["x_train"], class_name):
            return load_idx_folder(folder, name, class_name, image_size=size, max_memory=limit)
    reason = "download=False"
    if download:
        try:
            _download(class_name, folders[0])
        except Exception as err:  # no network, a mirror down, a partial file
            reason = f"torchvision's download failed: {err}"
        else:
            return load_idx_folder(folders[0], name, class_name, image_size=size,
                                   max_memory=limit)
    wanted = ", ".join(s + ".gz" for s in IDX_FILES.values())
    raise FileNotFoundError(
        f"dataset {name!r}: no IDX files found in {', '.join(map(str, folders))} "
        f"({reason}). Put {wanted} in a folder and pass it as data_dir (--data-dir)."
    )


def _download(class_name: str, root: Path) -> None:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    cls(root=str(root), train=True, download=True)
    cls(root=str(root), train=False, download=True)
