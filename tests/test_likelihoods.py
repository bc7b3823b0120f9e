import math

import pytest
import torch

from pyro_vae.likelihoods import (
    LIKELIHOODS,
    ContinuousBernoulliLogits,
    FixedScaleNormal,
    LearnedScaleNormal,
)

LOGITS = torch.tensor([-80.0, -20.0, -5.0, -0.3, -1e-5, 0.0, 1e-4, 0.002, 1.0, 7.0, 30.0])


def _trapezoid(f, n=200001):
    """∫_0^1 f(x) dx for f: [n] -> [n, ...] by the trapezoid rule (float64)."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.trapezoid(f(x), x, dim=0)


# --------------------------------------------------------------- continuous Bernoulli
def test_continuous_bernoulli_normaliser_matches_closed_form():
    # C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), lambda = sigmoid(eta)
    eta = torch.tensor([-12.0, -3.0, -0.5, 0.25, 2.0, 9.0], dtype=torch.float64)
    lam = torch.sigmoid(eta)
    closed = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    torch.testing.assert_close(ContinuousBernoulliLogits.log_normalizer(eta), closed)
    assert ContinuousBernoulliLogits.log_normalizer(torch.zeros(1)).item() == pytest.approx(
        math.log(2)
    )


def test_continuous_bernoulli_density_integrates_to_one_at_every_logit():
    d = ContinuousBernoulliLogits(LOGITS.double())
    # The density is exp(x eta) C / (1 + e^eta): integrate it in x for every eta.
    total = _trapezoid(lambda x: d.log_prob(x[:, None].expand(-1, len(LOGITS))).exp())
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=2e-3)


def test_continuous_bernoulli_is_exact_where_torch_saturates():
    # Far from 0, C(eta) = eta / tanh(eta / 2) -> |eta|: log C(100) = log 100.
    lc = ContinuousBernoulliLogits.log_normalizer(torch.tensor([100.0, -100.0]))
    torch.testing.assert_close(lc, torch.full((2,), math.log(100.0)))
    # Where torch's implementation is accurate, both agree.
    eta = torch.linspace(-10, 10, 41)
    x = torch.rand(41)
    ours = ContinuousBernoulliLogits(eta).log_prob(x)
    theirs = torch.distributions.ContinuousBernoulli(logits=eta).log_prob(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_continuous_bernoulli_mean_and_samples():
    d = ContinuousBernoulliLogits(LOGITS.double())

    def x_times_density(x):
        x = x[:, None].expand(-1, len(LOGITS))
        return x * d.log_prob(x).exp()

    numeric = _trapezoid(x_times_density)
    torch.testing.assert_close(d.mean, numeric, rtol=0, atol=1e-4)
    samples = ContinuousBernoulliLogits(LOGITS).sample((20000,))
    assert samples.shape == (20000, len(LOGITS))
    assert ((samples >= 0) & (samples <= 1)).all()
    # Standard error of a mean of 20000 draws of a [0, 1] variable is below 0.0036.
    torch.testing.assert_close(samples.mean(0).double(), d.mean, rtol=0, atol=0.015)


def test_continuous_bernoulli_gradients_are_finite_at_extremes():
    eta = LOGITS.clone().requires_grad_()
    ContinuousBernoulliLogits(eta).log_prob(torch.full_like(eta, 0.3)).sum().backward()
    assert torch.isfinite(eta.grad).all()


# ------------------------------------------------------------------------- Normal
def test_normal_log_density_closed_form():
    params = torch.randn(3, 2, 1, 4, 5)  # [B, P=2, C, H, W]
    x = torch.randn(3, 1, 4, 5)
    lik = LearnedScaleNormal(min_scale=0.05)
    loc, sigma = params[:, 0], 0.05 + torch.nn.functional.softplus(params[:, 1])
    expected = (
        -torch.log(sigma) - (x - loc) ** 2 / (2 * sigma**2) - 0.5 * math.log(2 * math.pi)
    ).sum((-3, -2, -1))
    d = lik(params)
    assert d.event_shape == (1, 4, 5) and d.batch_shape == (3,)
    torch.testing.assert_close(d.log_prob(x), expected)
    torch.testing.assert_close(lik.mean(params), loc)


def test_fixed_scale_normal_is_scaled_squared_error():
    params = torch.randn(2, 1, 1, 3, 3)
    x = torch.randn(2, 1, 3, 3)
    sigma, dims = 0.3, 9
    expected = (
        -((x - params[:, 0]) ** 2).sum((-3, -2, -1)) / (2 * sigma**2)
        - dims * math.log(sigma)
        - dims * 0.5 * math.log(2 * math.pi)
    )
    torch.testing.assert_close(FixedScaleNormal(sigma)(params).log_prob(x), expected)


# ----------------------------------------------------------------- support checks
@pytest.mark.parametrize("name", ["bernoulli", "continuous-bernoulli"])
@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_unit_interval_likelihoods_reject_data_outside_it(name, bad):
    x = torch.rand(4, 1, 2, 2)
    x[1, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=f"train data: the {name} likelihood needs values in"):
        LIKELIHOODS[name]().check(x, "train data")
    LIKELIHOODS[name]().check(x.clamp(0, 1), "train data")


@pytest.mark.parametrize("name", ["normal", "normal-fixed"])
def test_normal_likelihoods_accept_any_finite_data(name):
    LIKELIHOODS[name]().check(torch.randn(4, 1, 2, 2) * 100, "data")
    with pytest.raises(ValueError, match="needs finite values"):
        LIKELIHOODS[name]().check(torch.tensor([[[[float("nan")]]]]), "data")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="min_scale"):
        LearnedScaleNormal(min_scale=0)
    with pytest.raises(ValueError, match="scale"):
        FixedScaleNormal(scale=-1)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_params_per_pixel_and_mean_shape(name):
    lik = LIKELIHOODS[name]()
    params = torch.randn(5, 3, lik.params_per_pixel, 1, 4, 4)
    d = lik(params)
    assert d.batch_shape == (5, 3) and d.event_shape == (1, 4, 4)
    assert lik.mean(params).shape == (5, 3, 1, 4, 4)
