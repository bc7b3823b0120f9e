"""Image data sets, by name or from a path, held as whole tensors.

Every data set lives in memory (and on the GPU) as one tensor, so training batches
by index instead of through a per-item ``DataLoader``. ``load_dataset(source)``
takes a registered name or a path:

==========================  ===============================================================
``mnist-10k``               10,000 real MNIST digits shipped with the package (8k/2k)
``mnist``                   MNIST (60k/10k), from IDX files or torchvision's download
``fashion-mnist``           Fashion-MNIST (60k/10k); also found where Debian's package
                            ``dataset-fashion-mnist`` installs it
``kmnist``                  Kuzushiji-MNIST (60k/10k)
folder of IDX files         the MNIST layout (:data:`IDX_FILES`, ``.gz`` or not), any
                            image size; labels ``0..max``
folder of class folders     ``cat/*.png``, ``dog/*.jpg``: sorted folder names are the
                            labels ``0..K-1`` (as torchvision's ``ImageFolder``), kept in
                            ``class_names``; images are found at any depth below them
flat folder of images       unlabelled
``train/`` and ``test/``    a folder holding both: either kind of image folder in each;
                            they give the split, labels from the union of their classes
``file.npy``                an array of images, unlabelled
``file.npz``                keys ``x_train, x_test`` (+ ``y_train, y_test``), or ``x``
                            (+ ``y``), or one array of any name; ``class_names`` optional
==========================  ===============================================================

A registered name wins over a folder of the same name (write ``./mnist`` for the
folder). Image files are ``.png .jpg .jpeg .bmp .gif .ppm .pgm .tif .tiff .webp``;
other files and hidden ones are skipped.

Rules every source follows:

* **Pixels** are float32 ``[N, C, H, W]``. ``uint8`` is divided by 255, other integers
  must lie in 0..255 and are divided by 255 too, ``bool`` gives 0/1, floats are taken as
  they are (and must be finite); anything else is refused.
* **Array layout**: ``[N, H, W]`` is greyscale (C = 1); a 4-d array is channels-first
  ``[N, C, H, W]`` when dim 1 is 1..4, else channels-last ``[N, H, W, C]`` when the last
  dim is 1, 3 or 4, else refused. (So images at most 4 pixels high are read
  channels-first, torch's convention: store such arrays as ``[N, C, H, W]``.)
* **Image files**: greyscale images (also palettes of greys) give C = 1; if any image is in
  colour, all give C = 3. Transparency is composited onto black (pixel x alpha: the
  transparent background becomes 0, MNIST's background). 16-bit greys are divided by
  65535. All images must share one size unless ``image_size`` is given.
* ``image_size`` (``s`` or ``(H, W)``) resizes every image, bilinear with antialiasing.
* **Labels** are int64 ``[N]``. **Unlabelled** data has every label ``-1`` and
  ``num_classes = 0``; models that need labels refuse it with their own check.
* **Split**: when the source holds no test set, a seeded split holds out
  ``test_fraction`` of the images, stratified by class (``ImageData.test_fraction`` says
  so; it is ``None`` when the source gave the test set).
* **Class filters** (``classes``, ``exclude_classes``) apply to the *training* split only
  and keep the original label values and ``num_classes``: a run that excludes class 7
  trains on the others, is tested on all, and stays comparable with a run that excludes
  nothing (the anomaly-detection set-up).
* **Memory**: the float32 bytes (``N * C * H * W * 4``) are estimated from file headers
  before anything is decoded, and refused above ``max_memory`` (default: half the
  available RAM, see :func:`default_max_memory`).

Every bad input raises ``ValueError`` (``FileNotFoundError`` for what is missing) with
one line naming the argument (``data: ...`` for what is in the files).
"""

import difflib
import gzip
import logging
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .checks import integer, positive_number

logger = logging.getLogger(__name__)

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
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")
ARRAY_SUFFIXES = (".npy", ".npz")
# When the available RAM cannot be read, the default memory limit.
FALLBACK_MAX_MEMORY = 8 * 2 ** 30
GiB = 2 ** 30
_CHUNK = 1024  # images converted (and resized) at a time, so no float64/raw copy is whole


@dataclass
class ImageData:
    """A train/test split of images.

    ``x_*: [N, C, H, W]`` float32 (in [0, 1] for bytes and images; floats as stored);
    ``y_*: [N]`` int64 in ``[0, num_classes)``, or all ``-1`` with ``num_classes = 0``
    for unlabelled data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10
    class_names: Optional[List[str]] = None  # label k is class_names[k]; None: no names
    source: Optional[str] = None  # the name or path it was loaded from
    test_fraction: Optional[float] = None  # held out by a seeded split; None: source's own

    @property
    def x_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0


class _Loaded(NamedTuple):
    """What a reader returns: a test set and labels only where the source has them."""

    x_train: torch.Tensor
    y_train: Optional[torch.Tensor]
    x_test: Optional[torch.Tensor]
    y_test: Optional[torch.Tensor]
    class_names: Optional[List[str]] = None


# ---------------------------------------------------------------- IDX files

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


# ---------------------------------------------------------------- labels

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


# ---------------------------------------------------------------- memory

def default_max_memory() -> int:
    """Half the RAM available now (``MemAvailable`` in /proc/meminfo, else
    ``os.sysconf``), or :data:`FALLBACK_MAX_MEMORY` when neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MAX_MEMORY


def _check_memory(count: int, shape: Sequence[int], limit: int, what: str) -> None:
    """Refuse ``count`` float32 images of ``shape`` when they would pass ``limit`` bytes."""
    size = count * int(np.prod(shape)) * 4
    if size > limit:
        raise ValueError(
            f"data: {what} holds {count} images of {list(shape)}, {size / GiB:.3g} GiB as "
            f"float32, above max_memory {limit / GiB:.3g} GiB (pass max_memory to raise it, "
            f"or image_size to shrink the images)"
        )


# ---------------------------------------------------------------- arrays

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
    """An image array (any layout and dtype of the module's rules) as float32
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


# ---------------------------------------------------------------- IDX folders

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


def embedded_folder() -> Path:
    """Folder of the 10,000 MNIST digits shipped with the package (see its README)."""
    return Path(str(resources.files("pyro_vae") / "resources" / "mnist-10k"))


# ---------------------------------------------------------------- image folders

def _is_image(path: Path) -> bool:
    return (path.is_file() and not path.name.startswith(".")
            and path.suffix.lower() in IMAGE_EXTENSIONS)


def _images_below(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _scan_image_folder(folder: Path) -> Tuple[List[Path], Optional[List[str]], List[int]]:
    """Image files, class names (``None``: a flat folder) and each file's class index."""
    here = sorted(p for p in folder.iterdir() if _is_image(p))
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = {sub.name: _images_below(sub) for sub in subfolders}
    empty = [name for name, files in classes.items() if not files]
    classes = {name: files for name, files in classes.items() if files}
    if here and classes:
        raise ValueError(f"data: {folder} mixes images ({here[0].name}) and class folders "
                         f"({next(iter(classes))}/); put every image in a class folder, or none")
    if not here and not classes:
        raise ValueError(f"data: {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}), "
                         f"class folders of images, IDX files, or train/ and test/ folders")
    if empty:
        logger.warning("data: %s: skipping folders without images: %s", folder, ", ".join(empty))
    if here:
        return here, None, [-1] * len(here)
    files, labels = [], []
    for k, names in enumerate(classes.values()):
        files += names
        labels += [k] * len(names)
    return files, list(classes), labels


def _grey(img) -> bool:
    if img.mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [0, 0, 0]).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return img.mode in ("1", "L", "LA", "La", "F") or img.mode.startswith("I")


def _has_alpha(img) -> bool:
    return img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        img.mode == "P" and "transparency" in img.info)


def _decode(path: Path, channels: int, size: Tuple[int, int]) -> np.ndarray:
    """One image file as float32 ``[channels, H, W]`` of the given ``size = (H, W)``."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as img:
        img.load()
        if img.mode == "F" or img.mode.startswith("I"):
            scale = 1.0 if img.mode == "F" else 65535.0  # 16-bit greys
            img = img.convert("F")
        elif _has_alpha(img):
            rgba = img.convert("RGBA")
            img = Image.new(mode, rgba.size, 0)  # onto black: pixel x alpha
            img.paste(rgba.convert(mode), mask=rgba.getchannel("A"))
            scale = 255.0
        else:
            img, scale = img.convert(mode), 255.0
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)  # antialiased when shrinking
        pixels = np.asarray(img, dtype=np.float32) / scale
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[None], channels, axis=0)
    else:
        pixels = pixels.transpose(2, 0, 1)
    return pixels


def _read_image_folders(folders: Sequence[Path], size, limit) -> _Loaded:
    """One or two (train, test) image folders; labels from the sorted union of classes."""
    from PIL import Image, UnidentifiedImageError

    scans = [_scan_image_folder(folder) for folder in folders]
    if len({names is None for _, names, _ in scans}) > 1:
        raise ValueError(f"data: {folders[0]} and {folders[1]} must both hold class folders, "
                         f"or both hold images directly")
    class_names = None
    if scans[0][1] is not None:
        class_names = sorted(set().union(*(names for _, names, _ in scans)))
        scans = [(files, names, [class_names.index(names[k]) for k in labels])
                 for files, names, labels in scans]
    files = [f for scan in scans for f in scan[0]]
    sizes, colour, first = {}, False, None
    for path in files:  # headers only: sizes and modes, nothing decoded yet
        try:
            with Image.open(path) as img:
                hw = (img.height, img.width)
                colour = colour or not _grey(img)
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"data: cannot read image {path} ({err})") from None
        first = first or (path, hw)
        if size is None and hw != first[1]:
            raise ValueError(
                f"data: images differ in size: {first[0]} is {first[1]} but {path} is {hw} "
                f"(H, W); pass image_size (--image-size) to resize them all"
            )
    channels = 3 if colour else 1
    size = size or first[1]
    _check_memory(len(files), (channels, *size), limit, ", ".join(map(str, folders)))
    splits = []
    for scan in scans:
        x = torch.empty((len(scan[0]), channels, *size), dtype=torch.float32)
        for i, path in enumerate(scan[0]):
            try:
                x[i] = torch.from_numpy(_decode(path, channels, size))
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise ValueError(f"data: cannot read image {path} ({err})") from None
        y = torch.tensor(scan[2], dtype=torch.int64) if class_names else None
        splits += [x, y]
    if len(splits) == 2:
        splits += [None, None]
    return _Loaded(*splits, class_names)


# ---------------------------------------------------------------- splits and filters

def _split_indices(y: torch.Tensor, fraction: float, seed: int,
                   name: str, part: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sorted indices (kept, held out): a seeded draw of ``round(N * fraction)`` examples,
    spread over the classes of ``y`` in proportion (largest remainder)."""
    n = len(y)
    held = round(n * fraction)
    if held == 0 or held == n:
        raise ValueError(f"{name}: {fraction} of {n} examples leaves the "
                         f"{part if held == 0 else 'training'} set empty")
    classes, counts = torch.unique(y, return_counts=True)
    quota = counts.double() * fraction
    take = quota.floor().long()
    order = sorted(range(len(classes)), key=lambda k: (-(quota[k] - take[k]).item(), k))
    for k in order[: max(0, held - int(take.sum()))]:
        take[k] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c, k in zip(classes, take):
        members = (y == c).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.cat(chosen)] = True
    return (~mask).nonzero().squeeze(1), mask.nonzero().squeeze(1)


def _fraction(name: str, value) -> float:
    value = positive_number(name, value)
    if value >= 1:
        raise ValueError(f"{name}: expected a fraction in (0, 1), got {value!r}")
    return value


def split_validation(x: torch.Tensor, y: Optional[torch.Tensor], fraction: float,
                     seed: int = 0, name: str = "fraction"):
    """Hold out ``round(N * fraction)`` examples of ``x: [N, ...]`` (and ``y: [N]``).

    Returns ``(x_train, y_train, x_val, y_val)`` (``y_*`` ``None`` when ``y`` is). The
    draw is seeded and stratified by ``y`` (unlabelled ``-1`` is one group); both parts
    keep their original order. ``name`` is the argument named in errors (a trainer
    passes ``"val_fraction"``). Raises ``ValueError`` for a fraction outside (0, 1) or
    one that leaves either side empty.
    """
    fraction = _fraction(name, fraction)
    if y is not None and len(y) != len(x):
        raise ValueError(f"y: expected {len(x)} labels, one per example, got {len(y)}")
    groups = y if y is not None else torch.zeros(len(x), dtype=torch.int64)
    keep, held = _split_indices(groups, fraction, seed, name, "validation")
    if y is None:
        return x[keep], None, x[held], None
    return x[keep], y[keep], x[held], y[held]


def _class_ids(name: str, values, num_classes: int, class_names) -> List[int]:
    if num_classes == 0:
        raise ValueError(f"{name}: the data is unlabelled (num_classes 0), so it has no classes")
    ids = []
    for value in values:
        if isinstance(value, str) and class_names and value in class_names:
            ids.append(class_names.index(value))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
                and 0 <= value < num_classes:
            ids.append(int(value))
        else:
            known = f"0..{num_classes - 1}" + (f" or one of {class_names}" if class_names else "")
            raise ValueError(f"{name}: expected labels in {known}, got {value!r}")
    return ids


def _filter_training(data: ImageData, classes, exclude_classes) -> ImageData:
    """Keep the training images of ``classes`` and not of ``exclude_classes``."""
    if classes is None and exclude_classes is None:
        return data
    keep = torch.ones(len(data.y_train), dtype=torch.bool)
    if classes is not None:
        ids = _class_ids("classes", classes, data.num_classes, data.class_names)
        keep &= torch.isin(data.y_train, torch.tensor(ids, dtype=torch.int64))
    if exclude_classes is not None:
        ids = _class_ids("exclude_classes", exclude_classes, data.num_classes, data.class_names)
        keep &= ~torch.isin(data.y_train, torch.tensor(ids, dtype=torch.int64))
    if not keep.any():
        name = "classes" if classes is not None else "exclude_classes"
        raise ValueError(f"{name}: no training images left after keeping {classes} and "
                         f"excluding {exclude_classes}")
    data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    return data


# ---------------------------------------------------------------- load_dataset

def _search_dirs(name: str, data_dir: Optional[str]) -> List[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    return [CACHE_DIR / name, *map(Path, TORCHVISION_SETS[name][1])]


def _load_named(name: str, data_dir, download: bool, size, limit) -> ImageData:
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
    """The data set ``source``: a name of :data:`DATASETS` or a path (see the module's table).

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
