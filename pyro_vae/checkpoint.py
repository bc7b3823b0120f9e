"""Atomic files and safe checkpoints: nothing in a run folder is ever half-written.

Every write goes to a temporary file in the destination folder, is flushed and
fsync'ed, then renamed over the destination with ``os.replace`` (atomic on POSIX),
so a crash leaves either the old file or the new one, never a mix.
Checkpoints load with ``torch.load(weights_only=True)``: they hold tensors, numbers,
strings and containers of those, and loading one can never run code.

A run folder keeps its newest checkpoint as ``checkpoint.pt`` and up to ``keep - 1``
older ones as ``checkpoint-e<epochs done>-s<steps into the next epoch>.pt``
(see :class:`Checkpoints`). Every name written into a run folder goes through
:func:`run_path`, which refuses names that would land outside it.
"""

import io
import json
import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

import torch

PathLike = Union[str, Path]
CHECKPOINT = "checkpoint.pt"
_KEPT = re.compile(r"^checkpoint-e(\d+)-s(\d+)\.pt$")
# Test hook: with PYRO_VAE_TEST_KILL_IN_CHECKPOINT=N a process sends itself SIGKILL
# half-way through writing its N-th checkpoint (temporary file half full, not yet
# renamed), the worst moment for a crash. Tests use it to show the previous
# checkpoint survives; nothing else sets it.
_KILL_ENV = "PYRO_VAE_TEST_KILL_IN_CHECKPOINT"
_checkpoints_written = 0
# mkstemp creates files readable by their owner only; give finished files the
# permissions any other new file would get. (Read once: os.umask can only be read
# by setting it.)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def run_path(run_dir: PathLike, name: PathLike) -> Path:
    """``run_dir / name``, refusing a ``name`` that resolves outside ``run_dir``.

    Catches absolute names, ``..`` and symbolic links that point elsewhere, so a
    name from a config file or a flag can never make a write escape the run folder.
    """
    root = Path(run_dir).resolve()
    path = (root / name).resolve()
    if path == root or root not in path.parents:
        raise ValueError(f"{name}: expected a file name inside the run folder {run_dir}, "
                         f"got a path that resolves to {path}")
    return path


def check_writable(folder: PathLike, name: str = "run_dir") -> None:
    """Create ``folder`` if needed and prove a file can be written there."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name}: expected a folder, got the file {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{name}: cannot write to {folder} ({err.strerror})") from None


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call ``write(f)`` on a temporary file, fsync it, then move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # fsync the folder so a rename or a new link itself survives a power cut.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(folder: PathLike) -> List[Path]:
    """Delete temporary files that a killed :func:`atomic_write` left in ``folder``."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink()
    return stale


def write_json(path: PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: PathLike, name: str = "config") -> Any:
    """The JSON in ``path``; ``FileNotFoundError`` or ``ValueError`` naming ``name``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{name}: {path} is not valid JSON ({err})") from None


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, containers) atomically to ``path``."""
    global _checkpoints_written
    _checkpoints_written += 1
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()

    def write(f):
        if os.environ.get(_KILL_ENV) == str(_checkpoints_written):
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)

    atomic_write(path, write)


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing pickled code.

    Raises ``ValueError`` naming the file when it is truncated, corrupt, or carries
    anything but plain data (the unpickler refuses every class and function that is
    not a tensor or a plain container before calling it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint: {path} is corrupt, truncated or unsafe; refusing to load it "
            f"({_why_not_loaded(err)})"
        ) from None
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"checkpoint: {path} is not a pyro_vae checkpoint")
    return state


def _why_not_loaded(err: Exception) -> str:
    """The gist of ``torch.load``'s error, in a few words (its own runs to a page)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # no terminal colour codes
    culprit = re.search(r"GLOBAL ([\w.]+)", text)
    if culprit:
        return (f"it refers to the Python object {culprit[1]}; a checkpoint holds only "
                "tensors and plain data")
    if text.startswith("Weights only load failed"):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"not a checkpoint: {lines[-2] if len(lines) > 2 else lines[-1]}"
    if isinstance(err, EOFError) or not text:
        return "the file ends early"
    return text.split(". ")[0]


class Checkpoints:
    """The checkpoints of one run folder: the newest as ``checkpoint.pt``, ``keep`` in all.

    Saving a new checkpoint first gives the current ``checkpoint.pt`` a second name
    (a hard link, else a copy) that records its position, then replaces
    ``checkpoint.pt`` atomically, then deletes all but the newest ``keep - 1`` older
    ones. A crash at any point leaves ``checkpoint.pt`` complete.
    """

    def __init__(self, run_dir: PathLike, keep: int = 2):
        self.run_dir = Path(run_dir)
        self.keep = keep
        self.latest = run_path(self.run_dir, CHECKPOINT)
        self._latest_tag: Union[Tuple[int, int], None] = None

    def kept(self) -> List[Path]:
        """The older checkpoints, oldest first."""
        found = []
        for path in self.run_dir.glob("checkpoint-e*-s*.pt"):
            match = _KEPT.match(path.name)
            if match:
                found.append(((int(match[1]), int(match[2])), path))
        return [path for _, path in sorted(found)]

    def load(self) -> Dict[str, Any]:
        state = load_checkpoint(self.latest)
        self._latest_tag = (int(state.get("epoch", 0)), int(state.get("step", 0)))
        return state

    def save(self, state: Dict[str, Any]) -> None:
        """Write ``state`` (holding ``"epoch"`` and ``"step"``) as the newest checkpoint."""
        if self.keep > 1 and self._latest_tag is not None and self.latest.is_file():
            epoch, step = self._latest_tag
            _link_or_copy(self.latest, run_path(self.run_dir, f"checkpoint-e{epoch}-s{step}.pt"))
        save_checkpoint(self.latest, state)
        self._latest_tag = (int(state["epoch"]), int(state["step"]))
        older = self.kept()
        for path in older[: max(len(older) - (self.keep - 1), 0)]:
            path.unlink()

    def clear(self) -> None:
        """Delete every checkpoint of the folder (a fresh run starts)."""
        for path in [self.latest, *self.kept()]:
            if path.is_file():
                path.unlink()
        self._latest_tag = None


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
        _fsync_folder(dst.parent)
    except OSError:  # a file system without hard links
        data = src.read_bytes()
        atomic_write(dst, lambda f: f.write(data))
