"""Atomic files: checkpoints, configs and figures are never left half-written.

Every write goes to a temporary file in the destination folder, is flushed and
fsync'ed, then renamed over the destination with ``os.replace`` (atomic on POSIX),
so a crash leaves either the old file or the new one, never a mix.
Checkpoints load with ``torch.load(weights_only=True)``: they hold tensors, numbers,
strings and containers of those, and loading one can never run code.
"""

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Union

import torch

PathLike = Union[str, Path]
CHECKPOINT = "checkpoint.pt"


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call ``write(f)`` on a temporary file, fsync it, then move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # fsync the folder so the rename itself survives a power cut.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, containers) atomically to ``path``."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing pickled code.

    Raises ``ValueError`` naming the file when it is truncated, corrupt, or carries
    anything but plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint: {path} is corrupt, truncated or unsafe ({err})") from None
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"checkpoint: {path} is not a pyro_vae checkpoint")
    return state
