"""Folders of image files, read with PIL: class folders (sorted names are the labels), a
flat folder (unlabelled), or ``train/`` and ``test/`` folders of either kind."""

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .dataset import _Loaded
from .memory import _check_memory

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


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
    colour, first = False, None
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
