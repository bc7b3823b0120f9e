"""The fused step makes the same update as Pyro's SVI.step, with less overhead."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import VAE
from pyro_vae.steps import FusedStep, SVIStep

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
