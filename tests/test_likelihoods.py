import decimal
import math
from decimal import Decimal

import pytest
import torch

from pyro_vae.likelihoods import (
    LIKELIHOODS,
    ContinuousBernoulliLogits,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
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
@pytest.mark.parametrize("name", ["bernoulli", "continuous-bernoulli", "dlogistic"])
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


# ----------------------------------------------- discretised logistic mixture
LEVELS = torch.arange(256, dtype=torch.float64) / 255


def _dlogistic_params(k, shape=(4, 1, 1, 1), spread=2.0, dtype=torch.float64):
    """Random decoder output ``[B, 3K, C, H, W]``: logits, locations around [0, 1],
    log-scales from far below a bin width (e^-6 ~ 1/400) to the whole range."""
    g = torch.Generator().manual_seed(k)
    logits = torch.randn((shape[0], k) + shape[1:], generator=g, dtype=dtype) * spread
    loc = torch.rand((shape[0], k) + shape[1:], generator=g, dtype=dtype) * 1.4 - 0.2
    log_scale = torch.rand((shape[0], k) + shape[1:], generator=g, dtype=dtype) * 6 - 6
    return torch.cat([logits, loc, log_scale], 1)


def _dlogistic_reference(params, x):
    """log P(x) for one pixel by the definition, in 60-digit decimal arithmetic so that no
    bin's mass cancels to 0: sum_j pi_j [F_j(x + 1/510) - F_j(x - 1/510)], F_j(t) =
    1 / (1 + exp(-(t - mu_j) / s_j)), with the edge bins open-ended."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        k = params.shape[0] // 3
        logits, loc, log_s = ([Decimal(v) for v in params[i * k:(i + 1) * k].tolist()]
                              for i in range(3))
        weights = [w.exp() for w in logits]
        total = Decimal(0)
        for w, mu, ls in zip(weights, loc, log_s):
            s = max(ls, Decimal(DiscretizedLogisticMixture.MIN_LOG_SCALE)).exp()

            def cdf(t):
                return 1 / (1 + (-(t - mu) / s).exp())

            x_ = Decimal(x)
            upper = Decimal(1) if x > 254.5 / 255 else cdf(x_ + Decimal(1) / 510)
            lower = Decimal(0) if x < 0.5 / 255 else cdf(x_ - Decimal(1) / 510)
            total += w * (upper - lower)
        return float((total / sum(weights)).ln())


@pytest.mark.parametrize("k", [1, 3, 5])
def test_dlogistic_level_probabilities_sum_to_one(k):
    params = _dlogistic_params(k, shape=(6, 1, 1, 1))
    d = DiscretizedLogistic(k)(params)
    log_p = d.log_prob(LEVELS.view(256, 1, 1, 1, 1).expand(256, 6, 1, 1, 1))  # [256, 6]
    assert log_p.shape == (256, 6) and torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.exp().sum(0), torch.ones(6, dtype=torch.float64),
                               rtol=0, atol=1e-5)
    # in float32 as well, where the bins of a narrow component are far in its tails
    log_p = DiscretizedLogistic(k)(params.float()).log_prob(
        LEVELS.float().view(256, 1, 1, 1, 1).expand(256, 6, 1, 1, 1))
    torch.testing.assert_close(log_p.exp().sum(0), torch.ones(6), rtol=0, atol=1e-5)


def test_dlogistic_log_prob_matches_the_definition():
    params = _dlogistic_params(3, shape=(5, 1, 1, 1))
    levels = [0, 1, 2, 60, 127, 128, 200, 253, 254, 255]
    d = DiscretizedLogistic(3)(params)
    for level in levels:
        x = torch.full((5, 1, 1, 1), level / 255, dtype=torch.float64)
        ours = d.log_prob(x)
        reference = [_dlogistic_reference(params[b, :, 0, 0, 0], level / 255) for b in range(5)]
        torch.testing.assert_close(ours, torch.tensor(reference, dtype=torch.float64))


def test_dlogistic_sums_over_pixels_and_channels():
    lik = DiscretizedLogistic(2)
    params = _dlogistic_params(2, shape=(3, 2, 4, 5))
    x = torch.randint(0, 256, (3, 2, 4, 5), dtype=torch.float64) / 255
    pixelwise = lik._dist(params).log_prob(x)
    assert pixelwise.shape == (3, 2, 4, 5)
    torch.testing.assert_close(lik(params).log_prob(x), pixelwise.sum((-3, -2, -1)))
    # the channels are separate mixtures: channel 0's parameters are the first C-slice
    c0 = DiscretizedLogistic(2)(params[:, :, :1]).log_prob(x[:, :1])
    torch.testing.assert_close(c0, pixelwise[:, 0].sum((-2, -1)))


def test_dlogistic_is_stable_in_the_far_tails():
    # A narrow component at 0.9 in float32: levels near 0 are ~200 scale units away, where
    # both CDFs round to 0 (and near 1 they round to 1), so F(x + d) - F(x - d) is 0.
    # The identity in log form keeps such masses finite and exact.
    params = torch.tensor([0.0, 0.9, -5.5]).view(1, 3, 1, 1, 1)
    levels = [0, 10, 40, 128, 254, 255]
    x = torch.tensor(levels).view(-1, 1, 1, 1, 1) / 255
    log_p = DiscretizedLogistic(1)(params).log_prob(x).view(-1)
    reference = [_dlogistic_reference(params.view(3).double(), k / 255) for k in levels]
    assert min(reference) < -150  # the test reaches masses below float32's smallest number
    torch.testing.assert_close(log_p, torch.tensor(reference), rtol=1e-5, atol=1e-4)
    params.requires_grad_()
    DiscretizedLogistic(1)(params).log_prob(x).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_dlogistic_samples_lie_on_the_grid_and_follow_the_probabilities():
    params = _dlogistic_params(3, shape=(2, 1, 1, 1))
    d = DiscretizedLogistic(3)(params)
    n = 40000
    x = d.sample((n,))  # [n, 2, 1, 1, 1]
    assert x.shape == (n, 2, 1, 1, 1)
    torch.testing.assert_close(x * 255, (x * 255).round(), rtol=0, atol=1e-9)
    assert ((x >= 0) & (x <= 1)).all()
    probs = d.log_prob(LEVELS.view(256, 1, 1, 1, 1).expand(256, 2, 1, 1, 1)).exp()
    for b in range(2):
        counts = torch.bincount((x[:, b].flatten() * 255).round().long(), minlength=256)
        # a frequency of n draws has standard error sqrt(p (1 - p) / n) <= 0.0025;
        # 0.012 is about five standard errors for the commonest level
        torch.testing.assert_close(counts.double() / n, probs[:, b], rtol=0, atol=0.012)


def test_dlogistic_mean_shapes_and_leading_dims():
    lik = DiscretizedLogistic(4)
    params = torch.randn(3, 2, 12, 3, 4, 5) * 3  # [S, B, 3K, C, H, W]
    d = lik(params)
    assert d.batch_shape == (3, 2) and d.event_shape == (3, 4, 5)
    x = torch.randint(0, 256, (2, 3, 4, 5)) / 255
    assert d.log_prob(x).shape == (3, 2)
    assert d.sample().shape == (3, 2, 3, 4, 5) and d.sample((7,)).shape == (7, 3, 2, 3, 4, 5)
    mean = lik.mean(params)
    assert mean.shape == (3, 2, 3, 4, 5) and (mean >= 0).all() and (mean <= 1).all()
    # one component: the mean is its location, clamped
    one = torch.tensor([0.0, 0.4, -3.0]).view(1, 3, 1, 1, 1)
    assert DiscretizedLogistic(1).mean(one).item() == pytest.approx(0.4)
    expanded = DiscretizedLogisticMixture(*torch.zeros(3, 1, 4, 2)).expand((5, 1, 4))
    assert expanded.batch_shape == (5, 1, 4) and expanded.sample().shape == (5, 1, 4)


def test_dlogistic_arguments():
    # (``check`` is tested with the other [0, 1] likelihoods above)
    lik = LIKELIHOODS["dlogistic"]()
    assert lik.num_components == 5 and lik.params_per_pixel == 15
    with pytest.raises(ValueError, match="num_components: expected a positive integer"):
        DiscretizedLogistic(num_components=0)
