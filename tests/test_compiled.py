"""The compiled step: the same loss and training as the fused step, captured once per shape."""

import pytest
import torch

import pyro
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import M2, VAE, fit
from pyro_vae.compiled import CapturedLoss, trace_loss
from pyro_vae.infer import make_elbo

X_SHAPE = (1, 6, 5)
X = torch.rand((40,) + X_SHAPE, generator=torch.Generator().manual_seed(0)).bernoulli()


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
@pytest.mark.parametrize("prior, guide", [("normal", "diagonal"), ("mog", "lowrank"),
                                          ("vamp", "full"), ("flow", "iaf")])
def test_trace_loss_is_pyros_differentiable_loss(elbo, prior, guide):
    vae = VAE(X_SHAPE, z_dim=3, hidden=(8,), prior=prior, guide=guide, beta=2.0,
              pseudo_inputs=4)
    pyro.set_rng_seed(1)
    expected = elbo().differentiable_loss(vae.model, vae.guide, X)
    pyro.set_rng_seed(1)
    got = trace_loss(vae.model, vae.guide, elbo is TraceMeanField_ELBO, X)
    torch.testing.assert_close(got, expected)


def _train(step, epochs=2, **kw):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(X_SHAPE, z_dim=3, hidden=(8,), **kw)
    history = fit(vae.model, vae.guide, X, epochs=epochs, batch_size=16, step=step,
                  elbo="TraceMeanField_ELBO", lr=0.01)
    return vae, history


def test_compiled_trains_as_fused_does():
    fused, fused_history = _train("fused")
    compiled, compiled_history = _train("compiled")
    for row_a, row_b in zip(fused_history, compiled_history):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-6)
    for (name, a), b in zip(fused.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_one_graph_per_batch_shape_and_beta():
    vae = VAE(X_SHAPE, z_dim=3, hidden=(8,))
    loss = CapturedLoss(vae, make_elbo("TraceMeanField_ELBO"))
    for batch in [X[:16], X[:16], X[16:32], X[32:], X[:16]]:  # shapes 16 and 8
        loss(batch).backward()
    assert loss.captures == 2 and loss.reason is None
    vae.beta = 0.5  # a warm-up changes beta: a new graph, with the new scale
    pyro.set_rng_seed(3)
    captured = loss(X[:16])
    pyro.set_rng_seed(3)
    expected = make_elbo("TraceMeanField_ELBO").differentiable_loss(vae.model, vae.guide, X[:16])
    assert loss.captures == 3
    torch.testing.assert_close(captured, expected)


def test_too_many_shapes_fall_back_to_pyros_loss():
    vae = VAE(X_SHAPE, z_dim=3, hidden=(8,))
    loss = CapturedLoss(vae, make_elbo("Trace_ELBO"))
    loss.max_graphs = 2
    for n in (4, 4, 5, 6, 7):
        loss(X[:n])
    assert loss.captures == 2 and "capturing no more" in loss.reason


@pytest.mark.parametrize("make, reason", [
    (lambda: (M2(X_SHAPE, num_classes=2, z_dim=2, hidden=(8,)), "TraceEnum_ELBO"),
     "declares capturable = False"),
    (lambda: (VAE(X_SHAPE, z_dim=2, hidden=(8,)), "IWAE"), "RenyiELBO is not"),
])
def test_what_cannot_be_captured_runs_pyros_loss(make, reason):
    model, elbo = make()
    loss = CapturedLoss(model, make_elbo(elbo, num_particles=2 if elbo == "IWAE" else 1))
    assert reason in loss.reason


def test_compiled_needs_a_models_methods():
    def model(x):
        pass

    with pytest.raises(ValueError, match="^step: 'compiled' needs the model and guide"):
        fit(model, model, X, step="compiled", epochs=1)


def test_compiled_resumes_exactly(tmp_path):
    def run(folder, epochs, resume=False):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(X_SHAPE, z_dim=3, hidden=(8,))
        fit(vae.model, vae.guide, X, epochs=epochs, batch_size=16, step="compiled",
            run_dir=folder, resume=resume)
        return vae

    whole = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 3, resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
