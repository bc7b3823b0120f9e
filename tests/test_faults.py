"""Numerical faults and signals: a bad step never reaches the parameters or the last
checkpoint; SIGINT/SIGTERM stop at a step boundary with a checkpoint."""

import importlib
import itertools
import logging
import re
import signal
import time

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_vae import VAE, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.infer import NonFiniteStep, SafeSVI, make_optim
from pyro_vae.interrupt import Interrupted

X = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
NAN = float("nan")


def _vae():
    return VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,))


def _poison(*calls):
    """A ``transform`` that turns the batch of the given calls (from 1) into NaN."""
    counter = itertools.count(1)
    return lambda x, generator: x * NAN if next(counter) in calls else x


def _store():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}


def _params(vae):
    """What a checkpoint holds of ``vae``: its state_dict."""
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


# ------------------------------------------------------------------ non-finite loss
@pytest.mark.parametrize("validation", [True, False])
def test_safe_svi_skips_a_nan_step(validation):
    """Under validation NaN reaches a distribution's arguments first; without, the loss."""
    pyro.enable_validation(validation)
    vae = _vae()
    svi = SafeSVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    svi.step(X)
    before = _store()
    with pytest.raises(NonFiniteStep) as info:
        svi.step(X * NAN)
    expected = (r"^NaN or inf in a distribution's arguments \(Expected parameter loc \(Tensor of "
                r"shape \(64, 2\)\) of distribution Normal\(.*\) to satisfy the constraint "
                r"Real\(\)\)$") if validation else "^loss is nan$"
    assert re.match(expected, str(info.value))
    assert all(torch.equal(before[k], v) for k, v in _store().items())
    assert all(p.grad is None or not p.grad.any() for p in vae.parameters())


def test_safe_svi_skips_a_step_with_a_nan_gradient():
    def model():
        w = pyro.param("w", torch.zeros(()))
        pyro.factor("f", w.abs().sqrt())  # finite at 0, gradient 0 * inf = NaN

    svi = SafeSVI(model, lambda: None, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    with pytest.raises(NonFiniteStep, match=r"^gradient of w is not finite \(loss -?0\)$"):
        svi.step()
    assert pyro.param("w").item() == 0.0


def test_safe_svi_is_pyros_step_when_all_is_finite():
    results = []
    for cls in (SVI, SafeSVI):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        vae = _vae()
        svi = cls(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        losses = [svi.step(X) for _ in range(3)]
        results.append((losses, _params(vae)))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_checkpoint(tmp_path):
    pyro.enable_validation(False)  # let the NaN reach the loss
    vae = _vae()
    with pytest.raises(FloatingPointError) as info:
        # 4 steps per epoch: call 10 is epoch 3, step 2; checkpoints every 3 steps.
        fit(vae.model, vae.guide, X, epochs=3, batch_size=16, transform=_poison(10),
            run_dir=tmp_path, checkpoint_steps=3)
    assert str(info.value) == (
        f"loss is nan at epoch 3, step 2 of 4, the parameters were left as they were; the "
        f"last checkpoint, {tmp_path / CHECKPOINT}, is intact (try a smaller lr, clip_norm, "
        "or max_bad_steps to skip such steps)")
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 1, 9)
    current = _params(vae)
    assert all(torch.equal(state["params"][k], current[k]) for k in current)
    assert all(torch.isfinite(v).all() for v in current.values())


def test_bad_steps_are_skipped_up_to_the_bound(tmp_path, caplog):
    # Pyro's SVI step validates every step, so the message names the distribution.
    vae = _vae()
    with caplog.at_level(logging.WARNING, logger="pyro_vae.infer"):
        history = fit(vae.model, vae.guide, X, epochs=2, batch_size=16, max_bad_steps=2,
                      transform=_poison(2, 7), run_dir=tmp_path, step="svi")
    assert [row["bad_steps"] for row in history] == [1, 2]
    assert ("NaN or inf in a distribution's arguments (Expected parameter loc (Tensor of shape "
            "(16, 2)) of distribution Normal") in caplog.text
    assert ("to satisfy the constraint Real()) at epoch 2, step 3 of 4: step skipped "
            "(2 of at most 2)") in caplog.text
    assert all(torch.isfinite(v).all() for v in _store().values())
    pyro.clear_param_store()
    vae = _vae()
    with pytest.raises(FloatingPointError, match=r"Real\(\)\) at epoch 2, step 4 of 4, the param"):
        fit(vae.model, vae.guide, X, epochs=2, batch_size=16, max_bad_steps=2,
            transform=_poison(2, 7, 8), step="svi")


def test_fused_step_skips_bad_steps_too(caplog):
    # The fused step validates the first step only; later NaNs surface in the loss.
    vae = _vae()
    with caplog.at_level(logging.WARNING, logger="pyro_vae.infer"):
        history = fit(vae.model, vae.guide, X, epochs=2, batch_size=16, max_bad_steps=2,
                      transform=_poison(2, 7))
    assert [row["bad_steps"] for row in history] == [1, 2]
    assert "loss is nan at epoch 2, step 3 of 4: step skipped (2 of at most 2)" in caplog.text
    assert all(torch.isfinite(v).all() for v in _store().values())


def test_cli_reports_a_nan_loss_in_one_line(tmp_path, idx_folder, monkeypatch, capsys):
    train_module = importlib.import_module("pyro_vae.train")  # pyro_vae.train is the function
    calls = itertools.count(1)  # call 1 binarises the test set: leave it alone
    monkeypatch.setattr(train_module, "binarize",
                        lambda x, g=None: x if next(calls) == 1 else x * NAN)
    code = main(["train", "--dataset", "mnist-10k", "--data-dir", str(idx_folder()),
                 "--binarize", "dynamic", "--hidden", "8", "--z-dim", "2", "--quiet",
                 "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("pyro-vae: error: NaN or inf in a distribution's arguments (Expected "
                          "parameter loc (Tensor of shape (16, 2)) of distribution Normal")
    assert ("Real()) at epoch 1, step 1 of 4, the parameters were left as they were; no "
            "checkpoint was written (try a smaller lr") in err
    assert err.count("\n") == 1


# ------------------------------------------------------------------------ clipping
def test_clip_norm_rescales_each_gradient():
    w = torch.nn.Parameter(torch.zeros(4))
    pyro.get_param_store()["w"] = w
    for clip, norm in ((1.0, 1.0), (None, 100.0)):
        w.grad = torch.full((4,), 50.0)  # norm 100
        make_optim(0.1, clip)([w])
        assert torch.linalg.vector_norm(w.grad).item() == pytest.approx(norm)


def test_fit_with_clip_norm_trains():
    vae = _vae()
    history = fit(vae.model, vae.guide, X, epochs=2, batch_size=16, clip_norm=0.5)
    assert history[1]["train_loss"] < history[0]["train_loss"]


# ------------------------------------------------------------------------ signals
def _signal_at(call, *signums):
    """A ``transform`` that sends this process ``signums`` before step ``call``."""
    counter = itertools.count(1)

    def transform(x, generator):
        if next(counter) == call:
            for signum in signums:
                signal.raise_signal(signum)
                # Let the handler run before the next signal, so two are never merged:
                # Python runs handlers at its next check between bytecodes, which a loop
                # of short sleeps reaches (one long C-level sleep may not).
                for _ in range(50):
                    time.sleep(0.001)
        return x

    return transform


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_writes_a_checkpoint_and_stops(tmp_path, signum):
    previous = signal.getsignal(signum)
    vae = _vae()
    with pytest.raises(Interrupted) as info:
        fit(vae.model, vae.guide, X, epochs=2, batch_size=16, transform=_signal_at(3, signum),
            run_dir=tmp_path)
    name = signal.Signals(signum).name
    assert str(info.value) == (f"stopped by {name} at epoch 1, step 3 (step 3 in all); "
                               f"checkpoint written to {tmp_path / CHECKPOINT}")
    assert info.value.signum == signum
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert (state["epoch"], state["step"]) == (0, 3)  # the step that was running finished
    current = _params(vae)
    assert all(torch.equal(state["params"][k], current[k]) for k in current)
    assert signal.getsignal(signum) is previous


def test_second_sigint_stops_at_once(tmp_path):
    # The second signal calls the handler that was current when training began: make it
    # Python's own, whatever an earlier test or library left installed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    vae = _vae()
    with pytest.raises(KeyboardInterrupt) as info:
        fit(vae.model, vae.guide, X, epochs=2, batch_size=16, run_dir=tmp_path,
            transform=_signal_at(3, signal.SIGINT, signal.SIGINT))
    assert not isinstance(info.value, Interrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
