"""The importance-weighted estimate of log p(x), pinned against closed forms."""

import math

import pytest
import torch

import pyro
import pyro.distributions as dist

from pyro_vae import VAE, fit
from pyro_vae.evaluate import (
    elbo_terms,
    evaluation_report,
    iw_log_likelihood,
    latent_statistics,
    log_weights,
)

from helpers import PPCA


def test_ppca_estimate_matches_closed_form_log_likelihood():
    ppca = PPCA()
    x = ppca.sample(8)
    exact = ppca.log_px(x)
    elbo = ppca.elbo(x)
    assert (exact - elbo).min() > 0.1  # the guide is imperfect: the ELBO is visibly loose
    # chunk_size < K: every item's 5000 samples come in two chunks.
    estimate = iw_log_likelihood(ppca.model, ppca.guide, x, num_samples=5000, chunk_size=3000)
    assert estimate.shape == (8,)
    # Monte-Carlo error of log-mean-exp of K weights: sqrt(Var(w) / K) / E[w] = 0.01
    # nats for this guide (Var(w) / E[w]^2 = 0.48, measured on 20000 draws): 5 sd.
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.05)


def test_iw_bound_is_above_the_elbo_and_grows_with_k():
    ppca = PPCA(shift=1.5, c=0.8)  # a narrow, offset guide: heavy-tailed weights, a slow climb
    x = ppca.sample(40)
    exact, elbo = ppca.log_px(x).mean(), ppca.elbo(x).mean()
    bounds = {}
    for k in (1, 10, 100):
        pyro.set_rng_seed(k)
        bounds[k] = iw_log_likelihood(ppca.model, ppca.guide, x, num_samples=k).mean()
    # L_1 is an unbiased estimate of the ELBO (measured here within 0.05 nats of it).
    assert bounds[1].item() == pytest.approx(elbo.item(), abs=0.3)
    assert elbo < bounds[10] < bounds[100] < exact
    assert bounds[10] - bounds[1] > 0.5 and bounds[100] - bounds[10] > 0.2


def test_iw_bound_on_a_vae_is_above_its_elbo_and_grows_with_k(mnist10k):
    x = torch.bernoulli(mnist10k.x_train[:600], generator=torch.Generator().manual_seed(0))
    vae = VAE(z_dim=8, hidden=(64,))
    fit(vae.model, vae.guide, x[:500], epochs=2, batch_size=50)
    test = x[500:]
    elbo = -elbo_terms(vae.model, vae.guide, test)["test_loss"]
    bounds = []
    for k in (1, 10, 100):
        pyro.set_rng_seed(0)
        bounds.append(iw_log_likelihood(vae.model, vae.guide, test, num_samples=k).mean().item())
    # Early in training the guide is poor and the climb is steep (about 20 nats per
    # factor of 10 here); L_1 is the ELBO up to Monte-Carlo noise of a few nats.
    assert bounds[0] == pytest.approx(elbo, abs=5.0)
    assert elbo + 5 < bounds[1] < bounds[2] - 5


def test_log_weights_refuse_sites_outside_the_data_plate():
    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(w, 1.0), obs=x)

    def guide(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="site 'w' is outside the 'data' plate"):
        log_weights(model, guide, torch.zeros(3))


def test_log_weights_refuse_latent_sites_missing_from_the_guide():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(ValueError, match="site 'z' is latent in the model but absent"):
        log_weights(model, lambda x: None, torch.zeros(3))


def test_log_weights_are_per_item_and_skip_factors_and_masked_terms():
    def model(x, keep):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0).mask(keep), obs=x)
            pyro.factor("bonus", torch.full(x.shape, 100.0))  # a training term

    def guide(x, keep):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x, 0.5))

    x, keep = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([True, False, True])
    pyro.set_rng_seed(3)
    lw = log_weights(model, guide, x, keep)
    pyro.set_rng_seed(3)
    z = dist.Normal(x, 0.5).sample()
    expected = (dist.Normal(0.0, 1.0).log_prob(z) + keep * dist.Normal(z, 1.0).log_prob(x)
                - dist.Normal(x, 0.5).log_prob(z))
    torch.testing.assert_close(lw, expected)


def _linear_pair(flow: bool):
    """z in R^4 whose guide mean follows x in dims 0 and 1 only; unit guide scale."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))

    def guide(x):
        loc = torch.cat([x, torch.zeros_like(x)], -1)
        q = dist.Normal(loc, 1.0).to_event(1)
        if flow:  # no closed-form mean: the Monte-Carlo path
            q = dist.TransformedDistribution(q, [dist.transforms.AffineTransform(0.0, 1.0)])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q)

    return model, guide


@pytest.mark.parametrize("flow", [False, True])
def test_active_units_follow_burdas_definition(flow):
    x = 0.5 * torch.randn(400, 2)  # Cov_x of the active means: 0.25 > 0.01
    stats = latent_statistics(*_linear_pair(flow), x, num_samples=200)
    assert stats["active_units"] == 2
    activity = torch.tensor(stats["activity"])
    expected = torch.cat([x.var(0), torch.zeros(2)])
    # The Monte-Carlo means add Var_q / S = 0.005 per dimension, which is subtracted.
    torch.testing.assert_close(activity, expected, rtol=0, atol=0.06 if flow else 1e-6)


def test_kl_per_dim_sums_to_the_closed_form_kl():
    model, guide = _linear_pair(flow=False)
    x = torch.randn(50, 2)
    stats = latent_statistics(model, guide, x)
    expected = torch.cat([0.5 * (x**2).mean(0), torch.zeros(2)])  # KL(N(m,1) || N(0,1))
    torch.testing.assert_close(torch.tensor(stats["kl_per_dim"]), expected)
    assert sum(stats["kl_per_dim"]) == pytest.approx(elbo_terms(model, guide, x)["kl"], rel=1e-5)
    assert latent_statistics(*_linear_pair(flow=True), x)["kl_per_dim"] is None


def test_evaluation_report_keys_and_bits_per_dim():
    ppca = PPCA()
    x = ppca.sample(6)
    report = evaluation_report(ppca.model, ppca.guide, x, iw_samples=50)
    for key in ("test_loss", "recon", "kl", "nll", "nll_stderr", "iw_samples", "bits_per_dim",
                "active_units", "kl_per_dim"):
        assert key in report
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (5 * math.log(2)))
    assert report["nll"] < report["test_loss"]  # -L_50 <= -ELBO, here by a wide margin
    assert "nll" not in evaluation_report(ppca.model, ppca.guide, x)


def test_bad_arguments():
    ppca = PPCA()
    with pytest.raises(ValueError, match="num_samples"):
        iw_log_likelihood(ppca.model, ppca.guide, ppca.sample(2), num_samples=0)
