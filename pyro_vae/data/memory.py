"""The memory check: float32 images are refused, before anything is decoded, when they
would take more than ``max_memory`` bytes (default: half the available RAM)."""

import os
from typing import Sequence

import numpy as np

# When the available RAM cannot be read, the default memory limit.
FALLBACK_MAX_MEMORY = 8 * 2 ** 30
GiB = 2 ** 30


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
