"""Atomic writes, safe loading, checkpoint rotation and run-folder paths."""

import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from pyro_vae.checkpoint import (
    CHECKPOINT,
    Checkpoints,
    atomic_write,
    check_writable,
    load_checkpoint,
    remove_stale_temps,
    run_path,
    save_checkpoint,
)


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _state(epoch, step=0):
    return {"params": {"w": torch.full((3,), float(epoch))}, "epoch": epoch, "step": step}


# ------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"new but incomp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_written_files_follow_the_umask(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"x"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    """SIGKILL half-way through the second write: the first checkpoint survives."""
    script = textwrap.dedent(f"""
        import torch
        from pyro_vae.checkpoint import save_checkpoint
        for epoch in (1, 2):
            save_checkpoint({str(tmp_path / CHECKPOINT)!r},
                            {{"params": {{"w": torch.full((1000,), float(epoch))}}}})
    """)
    env = {**os.environ, "PYRO_VAE_TEST_KILL_IN_CHECKPOINT": "2", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == -9
    assert load_checkpoint(tmp_path / CHECKPOINT)["params"]["w"][0] == 1.0
    stale = remove_stale_temps(tmp_path)
    assert len(stale) == 1 and stale[0].name.startswith(".checkpoint.pt.")
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]


# -------------------------------------------------------------------- safe loading
def test_round_trip(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _state(3))
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["epoch"] == 3 and torch.equal(state["params"]["w"], torch.full((3,), 3.0))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "code-ran"
    state = {"params": {"w": torch.zeros(2)}, "extra": Payload(marker)}
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil.pt is corrupt, truncated or unsafe; refusing to "
                                         r"load it \(it refers to the Python object posix.mkdir;"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # The payload is real: an unrestricted unpickler runs it.
    with open(tmp_path / "evil.pt", "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.is_dir()


def test_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"params": Payload(marker)}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load it"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "PytorchStreamReader failed reading zip archive"),
    ("garbage", "not a checkpoint: "),
    ("empty", "the file ends early"),
])
def test_damaged_checkpoint_is_refused(tmp_path, damage, reason):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, _state(1))
    data = path.read_bytes()
    garbage = bytes(range(128, 256)) * 4  # no valid pickle opcode: 0x80 wants a protocol
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x80\x02\xdf" + garbage,
                      "empty": b""}[damage])
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"checkpoint: {path} is corrupt, truncated or unsafe; "
                                      f"refusing to load it ({reason}")
    assert "\n" not in str(info.value)


def test_other_content_is_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(ValueError, match="is not a pyro_vae checkpoint"):
        load_checkpoint(tmp_path / "t.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


# ------------------------------------------------------------------------ rotation
def test_keeps_the_newest_n(tmp_path):
    store = Checkpoints(tmp_path, keep=3)
    for epoch, step in [(0, 5), (0, 10), (1, 0), (1, 5), (2, 0)]:
        store.save(_state(epoch, step))
    assert load_checkpoint(store.latest)["epoch"] == 2
    assert [p.name for p in store.kept()] == ["checkpoint-e1-s0.pt", "checkpoint-e1-s5.pt"]
    assert load_checkpoint(tmp_path / "checkpoint-e1-s5.pt")["step"] == 5
    # Resuming picks up the numbering where it was.
    again = Checkpoints(tmp_path, keep=3)
    again.load()
    again.save(_state(2, 5))
    assert [p.name for p in again.kept()] == ["checkpoint-e1-s5.pt", "checkpoint-e2-s0.pt"]
    again.clear()
    assert list(tmp_path.iterdir()) == []


def test_keep_one_writes_a_single_file(tmp_path):
    store = Checkpoints(tmp_path, keep=1)
    for epoch in range(3):
        store.save(_state(epoch))
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


# ----------------------------------------------------------------- run-folder paths
@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a/../../b.pt", ".", ""])
def test_run_path_refuses_names_outside(tmp_path, name):
    with pytest.raises(ValueError, match="expected a file name inside the run folder"):
        run_path(tmp_path / "run", name)


def test_run_path_refuses_symlink_out(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ValueError, match="resolves to"):
        run_path(tmp_path / "run", "link.png")
    assert run_path(tmp_path / "run", "sub/../ok.png") == (tmp_path / "run" / "ok.png").resolve()


def test_unwritable_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"run_dir: cannot write to .*file/run \(Not a direc"):
        check_writable(tmp_path / "file" / "run")
    with pytest.raises(ValueError, match="run_dir: expected a folder, got the file"):
        check_writable(tmp_path / "file")
