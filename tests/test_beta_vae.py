"""beta-VAE: the loss is reconstruction + beta * KL, exactly; KL warm-up schedules."""

import math

import pytest
import torch
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import VAE, fit
from pyro_vae.schedules import SCHEDULES, Constant, Cyclical, KLWarmup, Linear


def small_vae(beta=1.0):
    return VAE((1, 6, 6), z_dim=3, hidden=(8,), beta=beta)


def traced_terms(vae, x, seed):
    """recon = -log p(x|z) and the single-sample KL, log q(z|x) - log p(z), at the z the
    guide draws under ``seed``; and the closed-form KL. Unscaled, from traced log-probs."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]
    recon = -model_trace.nodes["x"]["fn"].log_prob(x).sum()
    log_q = z["fn"].log_prob(z["value"]).sum()
    log_p = model_trace.nodes["z"]["fn"].log_prob(z["value"]).sum()
    closed = kl_divergence(z["fn"], model_trace.nodes["z"]["fn"]).sum()
    return recon, log_q - log_p, closed


@pytest.mark.parametrize("beta", [0.25, 1.0, 4.0])
def test_loss_is_recon_plus_beta_kl(beta):
    vae = small_vae(beta)
    x = torch.rand(5, 1, 6, 6)
    recon, kl_sample, kl_closed = traced_terms(vae, x, seed=1)
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert loss == pytest.approx((recon + beta * kl_sample).item(), rel=1e-5)
    # The mean-field ELBO uses the closed-form KL at the same z: recon + beta * KL exactly.
    pyro.set_rng_seed(1)
    loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    assert loss == pytest.approx((recon + beta * kl_closed).item(), rel=1e-5)


def test_doubling_beta_doubles_the_kl_part():
    x = torch.rand(5, 1, 6, 6)
    vae = small_vae(1.5)
    recon, _, kl = traced_terms(vae, x, seed=2)
    losses = {}
    for beta in (1.5, 3.0):
        vae.beta = beta
        pyro.set_rng_seed(2)
        losses[beta] = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    kl_part = {beta: loss - recon.item() for beta, loss in losses.items()}
    assert kl_part[3.0] == pytest.approx(2 * kl_part[1.5], rel=1e-5)
    assert kl_part[1.5] == pytest.approx(1.5 * kl.item(), rel=1e-5)


def test_beta_must_be_positive():
    with pytest.raises(ValueError, match="beta"):
        small_vae(0.0)


def test_schedules_values():
    linear = Linear(4)
    assert [linear(t) for t in (0.5, 2, 4, 9)] == [0.125, 0.5, 1.0, 1.0]
    cyclical = Cyclical(2)  # ramp over the first epoch of every two
    assert [cyclical(t) for t in (0.5, 1.0, 1.5, 2.0, 2.5, 4.0)] == [0.5, 1, 1, 1, 0.5, 1]
    assert Constant()(0.1) == 1.0
    assert set(SCHEDULES) == {"none", "linear", "cyclical"}
    # Weights stay positive: poutine.scale refuses 0.
    assert all(s(1e-9) > 0 for s in (linear, cyclical)) and cyclical(2 + 1e-9) > 0
    with pytest.raises(ValueError, match="warmup_epochs"):
        Linear(0)


def test_warmup_hook_sets_beta_each_step():
    vae = small_vae(2.0)
    seen = []
    warmup = KLWarmup(vae, Linear(2))
    fit(vae.model, vae.guide, torch.rand(12, 1, 6, 6), epochs=2, batch_size=4,
        step_hooks=[warmup, lambda t: seen.append((t, vae.beta))])
    progress = [t for t, _ in seen]
    assert progress == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert [b for _, b in seen] == pytest.approx([2 * t / 2 for t in progress])
    assert math.isclose(vae.beta, 2.0)
