"""The fused and compiled steps make the same update as Pyro's SVI.step, with less overhead."""

import copy
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import CVAE, M2, VAE
from pyro_vae import steps as steps_module
from pyro_vae.infer import make_elbo
from pyro_vae.steps import FusedStep, NonFiniteStep, SVIStep, compiled_step

X = torch.rand(16, 1, 6, 5)


def run(make_step, num_steps, seed=0):
    """Losses and final parameters of ``num_steps`` steps from a seeded start."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = VAE(x_shape=(1, 6, 5), z_dim=3, hidden=(8,))
    step = make_step(vae)
    losses = [float(step(X)) for _ in range(num_steps)]
    return losses, {k: v.detach().clone() for k, v in vae.state_dict().items()}, step


@pytest.mark.parametrize("elbo", [pyro.infer.Trace_ELBO, pyro.infer.TraceMeanField_ELBO])
def test_same_loss_and_gradients_as_svi(elbo):
    # SGD makes the parameters after each step a linear function of the gradient,
    # so equal parameters after three steps mean equal gradients at every step.
    svi_losses, svi_params, _ = run(
        lambda v: SVIStep(v.model, v.guide, elbo(), pyro.optim.SGD({"lr": 0.01})), 3)
    fused_losses, fused_params, _ = run(
        lambda v: FusedStep(v.model, v.guide, elbo(),
                            optimizer=lambda p: torch.optim.SGD(p, lr=0.01)), 3)
    assert svi_losses == pytest.approx(fused_losses, rel=1e-6)
    for name in svi_params:
        torch.testing.assert_close(fused_params[name], svi_params[name], rtol=1e-6, atol=1e-7)


def test_fused_adam_matches_pyro_adam():
    svi_losses, svi_params, _ = run(
        lambda v: SVIStep(v.model, v.guide, pyro.infer.Trace_ELBO(), pyro.optim.Adam({"lr": 0.01})), 5)
    fused_losses, fused_params, _ = run(
        lambda v: FusedStep(v.model, v.guide, pyro.infer.Trace_ELBO(), lr=0.01), 5)
    assert svi_losses == pytest.approx(fused_losses, rel=1e-5)
    for name in svi_params:
        torch.testing.assert_close(fused_params[name], svi_params[name], rtol=1e-4, atol=1e-6)


def test_state_dict_round_trip_continues_identically():
    make = lambda v: FusedStep(v.model, v.guide, pyro.infer.Trace_ELBO(), lr=0.01)  # noqa: E731
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(x_shape=(1, 6, 5), z_dim=3, hidden=(8,))
    step = make(vae)
    for _ in range(3):
        step(X)
    saved_params, saved_state = copy.deepcopy(vae.state_dict()), copy.deepcopy(step.state_dict())
    rng = torch.get_rng_state()
    expected = [float(step(X)) for _ in range(2)]

    pyro.clear_param_store()
    vae.load_state_dict(saved_params)
    resumed = make(vae)
    resumed.load_state_dict(saved_state)
    torch.set_rng_state(rng)
    assert [float(resumed(X)) for _ in range(2)] == expected


def test_parameters_created_after_the_first_step_are_trained():
    calls = []

    def model():
        calls.append(1)
        a = pyro.param("a", torch.tensor(0.0))
        b = pyro.param("b", torch.tensor(0.0)) if len(calls) > 1 else 0.0
        pyro.sample("obs", dist.Normal(a + b, 1.0), obs=torch.tensor(3.0))

    step = FusedStep(model, lambda: None, pyro.infer.Trace_ELBO(),
                     optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    for _ in range(3):
        step()
    assert pyro.param("b").item() > 0 and step.names == ["a", "b"]


def test_validation_runs_on_the_first_step_only():
    seen = []

    def model():
        seen.append(pyro.infer.util.is_validation_enabled())
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("obs", dist.Normal(loc, 1.0), obs=torch.tensor(1.0))

    step = FusedStep(model, lambda: None, pyro.infer.Trace_ELBO())
    for _ in range(3):
        step()
    assert seen == [True, False, False] and pyro.infer.util.is_validation_enabled()


# The models of the compiled step's contract: the VAE with each guide and prior, the CVAE
# (MLP and convolutional networks), and M2 on an unlabelled batch, whose enumerated
# label cannot be captured.
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
MODELS = {
    "vae-normal-diagonal": lambda: (VAE((1, 6, 5), z_dim=3, hidden=(8,)), (X,)),
    "vae-mog-lowrank": lambda: (VAE((1, 6, 5), z_dim=3, hidden=(8,), prior="mog",
                                    guide="lowrank", beta=2.0), (X,)),
    "vae-vamp-full": lambda: (VAE((1, 6, 5), z_dim=3, hidden=(8,), prior="vamp",
                                  guide="full", pseudo_inputs=4), (X,)),
    "vae-flow-iaf": lambda: (VAE((1, 6, 5), z_dim=3, hidden=(8,), prior="flow",
                                 guide="iaf"), (X,)),
    "cvae-mlp": lambda: (CVAE((1, 6, 5), num_classes=3, z_dim=2, hidden=(8,), net="mlp"),
                         (X, LABELS)),
    "cvae-conv": lambda: (CVAE((1, 6, 6), num_classes=3, z_dim=2, hidden=(8,)),
                          (torch.rand(16, 1, 6, 6), LABELS)),
    "m2": lambda: (M2((1, 6, 5), num_classes=3, z_dim=2, hidden=(8,)), (X,)),  # unlabelled
}


def run_model(make_model, make_step, elbo_name, num_steps=4):
    """Losses and final parameters of ``num_steps`` SGD steps from a seeded start."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, batch = make_model()
    step = make_step(model, make_elbo(elbo_name))
    losses = [float(step(*batch)) for _ in range(num_steps)]
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}, step


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("elbo_name", ["Trace_ELBO", "TraceMeanField_ELBO"])
def test_compiled_gives_svis_losses_and_gradients(name, elbo_name):
    if name == "m2":
        elbo_name = "TraceEnum_ELBO"
    sgd = lambda p: torch.optim.SGD(p, lr=0.01)  # noqa: E731
    svi_losses, svi_params, _ = run_model(MODELS[name], lambda m, e: SVIStep(
        m.model, m.guide, e, pyro.optim.SGD({"lr": 0.01})), elbo_name)
    # capture_after=0: the first step validates through Pyro's loss, the rest replay
    losses, params, step = run_model(MODELS[name], lambda m, e: compiled_step(
        m.model, m.guide, e, capture_after=0, optimizer=sgd), elbo_name)
    if name == "m2":  # falls back to Pyro's loss, and says why
        assert step.loss.captures == 0 and "capturable = False" in step.loss.reason
    else:
        assert step.loss.captures == 1 and step.loss.reason is None
    assert losses == pytest.approx(svi_losses, rel=1e-6)
    for key in svi_params:
        torch.testing.assert_close(params[key], svi_params[key], rtol=1e-6, atol=1e-7)


def test_calling_fused_adams_kernel_is_optimizer_step_bit_for_bit(monkeypatch):
    def train(direct):
        if not direct:
            monkeypatch.setattr(steps_module.FusedAdamKernel, "of", lambda optimizer: None)
        losses, params, step = run(lambda v: FusedStep(v.model, v.guide, pyro.infer.Trace_ELBO(),
                                                       lr=0.01), 5)
        monkeypatch.undo()
        return losses, params, step

    losses, params, step = train(direct=True)
    assert step._kernel is not None
    losses_ref, params_ref, step_ref = train(direct=False)
    assert losses == losses_ref
    assert all(torch.equal(params[k], params_ref[k]) for k in params)
    state, state_ref = step.state_dict()["optim"]["state"], step_ref.state_dict()["optim"]["state"]
    assert all(torch.equal(state[i][k], state_ref[i][k]) for i in state for k in state[i])


@pytest.mark.parametrize("make_step", [
    lambda v: FusedStep(v.model, v.guide, pyro.infer.Trace_ELBO(), lr=0.01),
    lambda v: compiled_step(v.model, v.guide, pyro.infer.Trace_ELBO(), lr=0.01,
                            capture_after=0),
], ids=["fused", "compiled"])
def test_a_non_finite_step_leaves_parameters_and_optimiser_as_they_were(make_step):
    _, _, step = run(make_step, 3)
    before = copy.deepcopy((step.module.state_dict(), step.state_dict()))
    bad = X.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(NonFiniteStep, match="not finite|loss is nan"):
        step(bad)
    after = (step.module.state_dict(), step.state_dict())
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    saved, now = before[1]["optim"]["state"], after[1]["optim"]["state"]
    assert all(torch.equal(saved[i][k], now[i][k]) for i in saved for k in saved[i])
    assert all(p.grad is None for p in step.params)
    step(X)  # and training goes on
