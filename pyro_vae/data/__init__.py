"""Image data sets, by name or from a path, held as whole tensors.

Every data set lives in memory (and on the GPU) as one tensor, so training batches
by index instead of through a per-item ``DataLoader``. ``load_dataset(source)``
takes a registered name or a path:

==========================  ===============================================================
``mnist-10k``               10,000 real MNIST digits shipped with the package (8k/2k)
``coloured-mnist-10k``      the same digits ``[3, 28, 28]``, each in its own random
                            foreground and background colours (seeded, made on load)
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

Sentences (``ptb``, ``toy``, a text file) are read by :func:`load_text` into a
:class:`TextData`, from :mod:`pyro_vae.text`, for models with ``data_kind = "text"``.
"""

from .arrays import ARRAY_SUFFIXES
from .batches import BINARIZE, batch_indices, binarize, perturb
from .coloured import colourise
from .dataset import ImageData
from .folders import IMAGE_EXTENSIONS
from .idx import IDX_DTYPES, IDX_FILES, idx_shape, load_idx_folder, read_idx, write_idx
from .labels import check_labels, select_labels
from .load import load_dataset, load_items
from .memory import FALLBACK_MAX_MEMORY, GiB, default_max_memory
from .named import CACHE_DIR, DATASETS, DERIVED, TORCHVISION_SETS, embedded_folder
from .splits import split_validation
from ..text.corpus import TEXT_DATASETS, TextData, load_text

__all__ = [
    "ARRAY_SUFFIXES", "BINARIZE", "CACHE_DIR", "DATASETS", "DERIVED", "FALLBACK_MAX_MEMORY",
    "GiB", "IDX_DTYPES", "IDX_FILES", "IMAGE_EXTENSIONS", "ImageData", "TORCHVISION_SETS",
    "batch_indices", "binarize", "check_labels", "colourise", "perturb", "default_max_memory",
    "embedded_folder",
    "idx_shape", "load_dataset", "load_idx_folder", "load_items", "read_idx", "select_labels",
    "split_validation", "write_idx", "TEXT_DATASETS", "TextData", "load_text",
]
