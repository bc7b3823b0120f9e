"""Free bits: the objective sum_g max(lambda, KL_g), its gradient, and every model's flag."""

import json

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

import pyro
import pyro.distributions as dist
from pyro.infer import RenyiELBO, TraceMeanField_ELBO

from pyro_vae.cli import main
from pyro_vae.free_bits import dimension_kl, latent_kl, shortfall
from pyro_vae.models import HVAE, M2, VAE

SMALL = dict(x_shape=(1, 4, 4), z_dim=3, hidden=(8,))


def _binary(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=g) > 0.5).double()


# ------------------------------------------------------------------ the objective
@pytest.mark.parametrize("shape", [(6,), (6, 4)])
def test_shortfall_turns_the_kl_into_max_lambda_kl(shape):
    kl = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2
    nats = 0.9
    groups = kl.reshape(6, -1)
    objective = -kl.sum() - shortfall(kl, nats).sum()
    want = -6 * torch.clamp(groups.mean(0), min=nats).sum()
    assert objective.item() == pytest.approx(want.item(), rel=1e-6)
    assert (groups.mean(0) < nats).any() or (groups.mean(0) > nats).any()


def test_the_kl_gradient_vanishes_below_lambda_per_dimension():
    loc = torch.tensor([[0.1, 3.0]], requires_grad=True)
    q = dist.Normal(loc, torch.ones(1, 2)).to_event(1)
    p = dist.Normal(torch.zeros(1, 2), torch.ones(1, 2)).to_event(1)
    kl = 0.5 * (loc ** 2).sum()  # closed form against N(0, I) at unit scale
    (-kl - shortfall(dimension_kl(q, p), 1.0).sum()).backward()
    assert loc.grad[0, 0] == 0  # KL_0 = 0.005 < 1: free
    assert loc.grad[0, 1] == pytest.approx(-3.0)  # KL_1 = 4.5 > 1: the usual gradient


def test_per_dimension_needs_factorised_distributions():
    q = dist.MultivariateNormal(torch.zeros(2, 3), torch.eye(3))
    p = dist.Normal(torch.zeros(2, 3), 1.0).to_event(1)
    with pytest.raises(ValueError, match="'dimension' needs a guide that factorises"):
        dimension_kl(q, p)
    assert latent_kl(q, p, q.sample(), "level").shape == (2,)  # per level: any pair


# ------------------------------------------------------------------ the VAE
def _vae_loss(vae, x, seed=3):
    pyro.set_rng_seed(seed)
    return TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)


@pytest.mark.parametrize("per", ["level", "dimension"])
def test_vae_loss_holds_max_lambda_kl_in_training_only(per):
    vae = VAE(**SMALL).double()
    x = _binary()
    with torch.no_grad():
        kl = kl_divergence(vae.posterior(vae.encoder(x)), vae.latent_prior(None))
    plain = _vae_loss(vae, x)
    nats = kl.mean().item() + 1.0 if per == "level" else 10.0  # above every group's mean
    vae.free_bits, vae.free_bits_per = nats, per
    groups = 1 if per == "level" else vae.z_dim
    want = plain - kl.sum() + len(x) * nats * groups
    assert _vae_loss(vae, x).item() == pytest.approx(want.item(), rel=1e-9)
    loss = _vae_loss(vae, x)
    encoder = [p for p in vae.encoder.parameters()]
    # the encoder still learns through the reconstruction; the KL's pull is gone
    vae.free_bits = 0.0
    recon_only = _vae_loss(vae, x) - kl_divergence(
        vae.posterior(vae.encoder(x)), vae.latent_prior(None)).sum()
    for got, wanted in zip(torch.autograd.grad(loss, encoder),
                           torch.autograd.grad(recon_only, encoder)):
        torch.testing.assert_close(got, wanted)
    vae.free_bits = nats
    vae.eval()  # evaluation: the ELBO itself
    assert _vae_loss(vae, x).item() == pytest.approx(plain.item(), rel=1e-9)


def test_vae_free_bits_with_an_iaf_guide_and_vampprior_train():
    vae = VAE(**SMALL, guide="iaf", prior="vamp", pseudo_inputs=4, free_bits=5.0)
    loss = _vae_loss(vae, _binary().float())
    assert torch.isfinite(loss)


@pytest.mark.parametrize("model, parts, culprit", [
    (VAE, dict(guide="iaf"), "guide"), (VAE, dict(prior="vamp", pseudo_inputs=4), "prior"),
    (HVAE, dict(guide="lowrank"), "guide"), (HVAE, dict(prior="mog"), "prior")])
def test_per_dimension_with_parts_that_do_not_factorise_is_refused_at_once(model, parts,
                                                                           culprit):
    with pytest.raises(ValueError, match=f"'dimension' needs a {culprit} that factorises"):
        model(**SMALL, **parts, free_bits=1.0, free_bits_per="dimension")


@pytest.mark.parametrize("build, match", [
    (lambda: VAE(**SMALL, free_bits=-1.0), "free_bits: expected a non-negative number"),
    (lambda: VAE(**SMALL, free_bits=1.0, free_bits_per="item"), "free_bits_per: expected one"),
    (lambda: M2(x_shape=(1, 4, 4), z_dim=2, hidden=(8,), free_bits=1.0), "free_bits: M2's KL"),
    (lambda: HVAE(x_shape=(1, 4, 4), z_dim=2, hidden=(8,), free_bits_per="x"),
     "free_bits_per: expected one"),
])
def test_bad_free_bits_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_the_importance_weighted_bound_is_refused():
    with pytest.raises(ValueError, match="free_bits: needs TraceMeanField_ELBO"):
        VAE(**SMALL, free_bits=1.0).check_elbo(RenyiELBO(alpha=0, num_particles=2))
    VAE(**SMALL).check_elbo(RenyiELBO(alpha=0, num_particles=2))


def test_hvae_per_dimension_counts_each_dimension_of_each_level():
    hvae = HVAE(x_shape=(1, 4, 4), z_dims=(3, 2), hidden=(8,), level_hidden=(6,),
                free_bits=0.0).double()
    x = _binary()
    plain = _vae_loss(hvae, x)
    hvae.free_bits, hvae.free_bits_per = 50.0, "dimension"  # far above every dimension
    pyro.set_rng_seed(3)
    trace = pyro.poutine.trace(hvae.guide).get_trace(x)
    kl = sum(kl_divergence(trace.nodes[s]["fn"], _prior_at(hvae, trace, s, x)).sum()
             for s in hvae.sites)
    want = plain - kl + len(x) * 50.0 * 5  # 2 + 3 dimensions
    assert _vae_loss(hvae, x).item() == pytest.approx(want.item(), rel=1e-9)


def _prior_at(hvae, trace, site, x):
    """The model's p(z_site | level above) at the guide's draws."""
    replayed = pyro.poutine.trace(pyro.poutine.replay(hvae.model, trace)).get_trace(x)
    return replayed.nodes[site]["fn"]


# ------------------------------------------------------------------ the shell
def test_cli_free_bits_reach_the_vae(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((24, 1, 4, 4), np.float32))
    run = tmp_path / "run"
    assert main(["train", "--model", "vae", "--data", str(data), "--epochs", "1", "--z-dim",
                 "2", "--hidden", "8", "--free-bits", "0.5", "--free-bits-per", "dimension",
                 "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["free_bits"] == 0.5 and config["free_bits_per"] == "dimension"
