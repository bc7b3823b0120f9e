"""Exact resume: a run stopped anywhere and continued ends bit-identical to a run
that never stopped."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import pyro
import torch

from pyro_vae import VAE, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.data import binarize
from pyro_vae.infer import PROGRESS_FIELDS

TIMINGS = ("epoch_s", "images_per_s")


def assert_same_run(a, b):
    """Two run folders (or checkpoints) hold the same training state, bit for bit."""
    a, b = (load_checkpoint(p / CHECKPOINT) if not isinstance(p, dict) else p for p in (a, b))
    for key in (*PROGRESS_FIELDS, "rng", "params", "optim"):
        assert _same(a[key], b[key]), key
    strip = [[{k: v for k, v in row.items() if k not in TIMINGS} for row in s["history"]]
             for s in (a, b)]
    assert strip[0] == strip[1]


def _same(x, y):
    if torch.is_tensor(x):
        return torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
    return x == y


# ------------------------------------------------------------------ in one process
class Crash(Exception):
    pass


DATA = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _train(run_dir, resume=False, crash_at=None, crash_in_evaluate=None, **kw):
    """A fresh model (as a new process would build it) trained on DATA; stops with
    Crash just before step ``crash_at`` of this call (counting from 1), or in the
    ``crash_in_evaluate``-th end-of-epoch evaluation."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(16,))
    steps, evaluations = itertools.count(1), itertools.count(1)

    def transform(x, generator):
        if next(steps) == crash_at:
            raise Crash
        return binarize(x, generator)

    def evaluate():
        if next(evaluations) == crash_in_evaluate:
            raise Crash
        return {}

    options = dict(test_data=DATA[:16], epochs=3, batch_size=10, transform=transform,
                   evaluate=evaluate, checkpoint_steps=4, keep_checkpoints=3)
    options.update(kw)
    try:
        return fit(vae.model, vae.guide, DATA, run_dir=run_dir, resume=resume, **options)
    except Crash:
        return None


def test_resume_mid_epoch_and_at_epoch_end_is_exact(tmp_path):
    reference = _train(tmp_path / "ref")
    run = tmp_path / "run"
    assert _train(run, crash_at=7) is None  # 7 steps per epoch; checkpoint after step 4
    assert load_checkpoint(run / CHECKPOINT)["step"] == 4
    assert _train(run, resume=True, crash_at=5) is None  # stops at epoch 2, step 1
    state = load_checkpoint(run / CHECKPOINT)
    assert (state["epoch"], state["step"]) == (1, 1)  # the step-8 checkpoint
    history = _train(run, resume=True)
    assert_same_run(tmp_path / "ref", run)
    assert [row["train_loss"] for row in history] == [row["train_loss"] for row in reference]
    assert sum(1 for _ in run.glob("checkpoint-*.pt")) == 2


def test_resume_saving_before_its_first_step_keeps_the_optimiser_state(tmp_path):
    """Stopped between the last step of an epoch and its evaluation, a resumed run
    writes the end-of-epoch checkpoint before taking any step of its own."""
    _train(tmp_path / "ref", checkpoint_steps=7)
    run = tmp_path / "run"
    _train(run, checkpoint_steps=7, crash_in_evaluate=1)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 7  # steps done, not evaluated
    _train(run, resume=True, checkpoint_steps=7, crash_at=1)
    state = load_checkpoint(run / CHECKPOINT)
    assert (state["epoch"], state["step"]) == (1, 0)
    # the restored state, passed on
    assert state["optim"]["names"] == sorted(k for k in state["params"] if k != "prior.loc"
                                             and k != "prior.scale")
    _train(run, resume=True, checkpoint_steps=7)
    assert_same_run(tmp_path / "ref", run)


def test_without_resume_old_checkpoints_go(tmp_path):
    _train(tmp_path, epochs=1)
    assert (tmp_path / CHECKPOINT).is_file()
    with pytest.raises(ValueError, match="already holds a run; pass resume=True to continue it "
                                         "or overwrite=True to replace it"):
        _train(tmp_path, crash_at=1)  # a finished run is never replaced by accident
    _train(tmp_path, crash_at=1, overwrite=True)
    assert not list(tmp_path.glob("checkpoint*.pt"))


def test_resume_refuses_other_batching_mid_epoch(tmp_path):
    _train(tmp_path, crash_at=6)
    with pytest.raises(ValueError, match=r"stopped mid-epoch over 64 examples in batches of 10; "
                                         r"got 64 examples in batches of 8"):
        _train(tmp_path, resume=True, batch_size=8)


def test_resume_refuses_another_model(tmp_path):
    _train(tmp_path, epochs=1)
    pyro.clear_param_store()
    other = VAE(x_shape=(1, 8, 8), z_dim=3, hidden=(16,))
    with pytest.raises(ValueError, match="was written by another model configuration"):
        fit(other.model, other.guide, DATA, run_dir=tmp_path, resume=True, epochs=2)


def test_resume_refuses_a_damaged_checkpoint(tmp_path):
    _train(tmp_path, epochs=1)
    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[:1000])
    with pytest.raises(ValueError, match="is corrupt, truncated or unsafe"):
        _train(tmp_path, resume=True)
    assert not list(pyro.get_param_store().keys())  # refused before any step


# ----------------------------------------------------- killed processes, the real thing
def _wait_for_new_checkpoint(path, before, proc, timeout=60.0):
    """Return once ``path`` differs from ``before`` (a new checkpoint) or ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _identity(path) not in (None, before):
            return
        time.sleep(0.002)


def _identity(path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


@pytest.mark.slow  # five processes; test_faults.py and test_checkpoint.py keep the fast paths
def test_sigkill_and_sigterm_at_random_moments_then_resume_is_bit_identical(
        tmp_path, idx_folder, capsys):
    """Five processes: killed by SIGKILL half-way through a checkpoint write (a test
    hook), by SIGKILL, SIGTERM, SIGKILL at random moments, each resumed with
    ``--resume``; the last finishes. Its final state equals an uninterrupted run's.
    (SIGINT takes the same path as SIGTERM; test_faults.py sends both in-process.)"""
    flags = ["--dataset", "mnist-10k", "--data-dir", str(idx_folder()), "--z-dim", "2",
             "--hidden", "16", "--epochs", "20", "--batch-size", "8", "--binarize", "dynamic",
             "--checkpoint-steps", "3", "--keep-checkpoints", "3", "--device", "cpu", "--quiet"]
    assert main(["train", *flags, "--out", str(tmp_path / "ref")]) == 0

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    chooser = random.Random(5)
    plan = ["kill-in-write", "SIGKILL", "SIGTERM", "SIGKILL", "finish"]
    outcomes = []
    for i, action in enumerate(plan):
        argv = ["train", "--resume", str(run)] if i else ["train", *flags, "--out", str(run)]
        proc_env = dict(env)
        if action == "kill-in-write":
            proc_env["PYRO_VAE_TEST_KILL_IN_CHECKPOINT"] = str(chooser.randint(2, 5))
        before = _identity(run / CHECKPOINT)
        proc = subprocess.Popen([sys.executable, "-m", "pyro_vae", *argv], env=proc_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if action.startswith("SIG"):
            _wait_for_new_checkpoint(run / CHECKPOINT, before, proc)
            time.sleep(chooser.uniform(0, 0.02))
            if proc.poll() is None:
                proc.send_signal(getattr(signal, action))
        out, err = proc.communicate(timeout=120)
        outcomes.append((action, proc.returncode))
        if action == "SIGTERM" and proc.returncode > 0:
            assert proc.returncode == 128 + getattr(signal, action), err
            last = err.strip().splitlines()[-1]
            assert last.startswith(f"pyro-vae: stopped by {action} at ")
            assert last.endswith(f"checkpoint written to {run / CHECKPOINT}; "
                                 f"continue with: pyro-vae train --resume {run}")
        if action == "finish":
            assert proc.returncode == 0, err
    killed = [a for a, rc in outcomes if rc == -signal.SIGKILL]
    assert outcomes[0] == ("kill-in-write", -signal.SIGKILL)
    assert len(killed) >= 3, outcomes
    assert dict(outcomes).get("SIGTERM") in (128 + signal.SIGTERM, 0), outcomes

    assert_same_run(tmp_path / "ref", run)
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (tmp_path / "ref", run)]
    assert [r["test_loss"] for r in rows[0]] == [r["test_loss"] for r in rows[1]]
    assert len(rows[1]) == 20
    assert not list(run.glob(".*.tmp"))
    assert len(list(run.glob("checkpoint-*.pt"))) == 2
