"""The plain VAE: site names and shapes, the math of its parts, training, save/load."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

from pyro_vae import VAE, elbo_terms, fit
from pyro_vae.guides import DiagonalNormal
from pyro_vae.likelihoods import Bernoulli
from pyro_vae.priors import StandardNormal


def small_vae(**kw):
    return VAE(**{"x_shape": (1, 6, 5), "z_dim": 3, "hidden": (16,), **kw})


def test_sites_and_shapes():
    vae, x = small_vae(), torch.rand(7, 1, 6, 5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    guide_sites = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"]
    model_sites = [n for n, s in model_trace.nodes.items() if s["type"] == "sample"]
    assert guide_sites == ["data", "z"] and model_sites == ["data", "z", "x"]
    z, xs = model_trace.nodes["z"], model_trace.nodes["x"]
    assert z["value"].shape == (7, 3) and z["fn"].event_shape == (3,)
    assert xs["is_observed"] and xs["fn"].batch_shape == (7,) and xs["fn"].event_shape == (1, 6, 5)
    assert guide_trace.nodes["z"]["fn"].has_rsample
    assert model_trace.nodes["data"]["value"].shape == (7,)


def test_networks_are_registered_once_per_function():
    vae, x = small_vae(), torch.rand(2, 1, 6, 5)
    params = poutine.trace(vae.guide).get_trace(x).param_nodes
    assert params and all(name.startswith(f"{vae.name}.encoder$$$") for name in params)
    params = poutine.trace(vae.model).get_trace(x).param_nodes
    assert params and all(name.startswith((f"{vae.name}.decoder$$$", f"{vae.name}.prior$$$", f"{vae.name}.likelihood$$$")) for name in params)


def test_kl_matches_closed_form_gaussian_kl():
    vae, x = small_vae(), torch.rand(5, 1, 6, 5)
    loc, log_var = vae.encoder(x).detach().split(3, -1)
    # KL(N(mu, s^2) || N(0, 1)) = 1/2 sum(mu^2 + s^2 - 1 - log s^2)
    closed = 0.5 * (loc**2 + log_var.exp() - 1 - log_var).sum()
    assert math.isclose(elbo_terms(vae.model, vae.guide, x)["kl"] * 5, closed.item(), rel_tol=1e-5)
    # The Monte-Carlo estimate E_q[log q - log p] agrees within its standard error.
    q, p = vae.posterior(vae.encoder(x).detach()), vae.prior()
    z = q.sample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    assert abs(mc.mean() - closed) < 4 * mc.std() / math.sqrt(len(mc))


def test_bernoulli_log_likelihood_is_minus_bce():
    logits, x = torch.randn(4, 1, 1, 6, 5), torch.rand(4, 1, 6, 5)
    log_p = Bernoulli()(logits).log_prob(x)
    bce = F.binary_cross_entropy_with_logits(logits.squeeze(1), x, reduction="none").sum((1, 2, 3))
    p = torch.sigmoid(logits.squeeze(1))
    manual = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    assert log_p.shape == (4,)
    torch.testing.assert_close(log_p, -bce)
    torch.testing.assert_close(log_p, manual, rtol=1e-4, atol=1e-4)


def test_bernoulli_rejects_data_outside_unit_interval():
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\].*1\.5"):
        Bernoulli().check(torch.tensor([0.0, 1.5]), "x")


def test_parts_are_swapped_by_one_argument():
    class ShiftedPrior(StandardNormal):
        def forward(self):
            return super().forward().__class__(  # N(2, I)
                torch.distributions.Normal(self.loc + 2, self.scale), 1)

    vae = small_vae(prior=ShiftedPrior(3))
    trace = poutine.trace(vae.model).get_trace(torch.rand(4000, 1, 6, 5))
    assert abs(trace.nodes["z"]["value"].mean().item() - 2) < 0.05
    assert isinstance(small_vae(guide=DiagonalNormal(3)).posterior, DiagonalNormal)


@pytest.mark.parametrize("kw, match", [
    (dict(z_dim=0), "z_dim"), (dict(beta=0), "beta"), (dict(prior="nope"), r"prior.*normal"),
    (dict(likelihood="gauss"), r"likelihood.*bernoulli"), (dict(guide="x"), r"guide.*diagonal"),
    (dict(activation="sin"), r"activation.*relu"), (dict(hidden=(0,)), "hidden"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        small_vae(**kw)


@pytest.mark.parametrize("x, match", [
    (torch.rand(3, 1, 5, 5), r"shape \[N, 1, 6, 5\], got \[3, 1, 5, 5\]"),
    (torch.full((3, 1, 6, 5), float("nan")), "NaN"),
    (torch.rand(3, 1, 6, 5) * 2, r"\[0, 1\]"),
    (torch.rand(0, 1, 6, 5), "empty"),
])
def test_check_data_names_the_problem(x, match):
    with pytest.raises(ValueError, match=match):
        small_vae().check_data(x)
    with pytest.raises(TypeError, match="floating-point"):
        small_vae().check_data(torch.zeros(3, 1, 6, 5, dtype=torch.uint8))


def test_loss_falls_on_mnist10k(mnist10k):
    vae = VAE(x_shape=mnist10k.x_shape, z_dim=10, hidden=(128,))
    x = mnist10k.x_train[:2048]
    before = elbo_terms(vae.model, vae.guide, mnist10k.x_test[:500])["test_loss"]
    history = fit(vae.model, vae.guide, x, test_data=mnist10k.x_test[:500], epochs=6, batch_size=64)
    # 6 epochs x 32 steps = 192 SVI steps
    assert history[-1]["test_loss"] < 0.5 * before
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_loss"] < 215


def test_beta_scales_the_kl_part_of_the_loss():
    x = torch.rand(6, 1, 6, 5)
    losses = {}
    for beta in (1.0, 2.0):
        pyro.set_rng_seed(1)
        vae = small_vae(beta=beta)
        pyro.set_rng_seed(2)
        losses[beta] = pyro.infer.TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
        terms = elbo_terms(vae.model, vae.guide, x)
    # same networks, same sample: loss(beta) = recon + beta * kl
    assert math.isclose(losses[2.0] - losses[1.0], terms["kl"] * 6, rel_tol=1e-4)


def test_generate_and_reconstruct_shapes():
    vae = small_vae()
    assert vae.generate(9).shape == (9, 1, 6, 5)
    x = torch.rand(4, 1, 6, 5)
    out = vae.reconstruct(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
