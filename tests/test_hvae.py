"""The hierarchical VAE: an exact log p(x) oracle, KL per level, free bits, the CLI."""

import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import kl_divergence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import fit
from pyro_vae.cli import main
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood, kl_per_site, log_weights
from pyro_vae.models import HVAE, MODELS
from pyro_vae.models.hvae import MAX_LOG_VAR, diagonal_normal, floored_variance, precision_weighted

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = dict(x_shape=(1, 4, 4), hidden=(8,), z_dims=(3, 2), level_hidden=(6,))


def _binary(n=16, shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) > 0.5).float()


# ------------------------------------------------------ a linear-Gaussian oracle
class LinearDecoder(nn.Module):
    """``z_1 -> C z_1 + d``, shaped as the ``normal-fixed`` likelihood reads it."""

    def __init__(self, c, d):
        super().__init__()
        self.c, self.d = nn.Parameter(c), nn.Parameter(d)

    def forward(self, z):
        return (z @ self.c.T + self.d).reshape(z.shape[:-1] + (1, 1, 1, -1))


class LinearLadder(nn.Module):
    """The bottom-up read-outs ``[mu_hat_1, log var_hat_1]`` and ``[m_2, log s_2^2]``,
    both affine in ``x``."""

    def __init__(self, w1, b1, log_var1, w2, b2, log_var2):
        super().__init__()
        for name, value in dict(w1=w1, b1=b1, log_var1=log_var1, w2=w2, b2=b2,
                                log_var2=log_var2).items():
            self.register_buffer(name, value)

    def forward(self, x):
        x = x.flatten(1)
        ones = x.new_ones(len(x), 1)
        return [torch.cat([x @ self.w1.T + self.b1, ones * self.log_var1], -1),
                torch.cat([x @ self.w2.T + self.b2, ones * self.log_var2], -1)]


class LinearGaussian:
    r"""z2 ~ N(0, I), z1 | z2 ~ N(A z2 + b, D1), x | z1 ~ N(C z1 + d, s0^2 I), built as
    an :class:`HVAE` with affine networks; with ``skip``, x | z1, z2 ~ N(C z1 + E z2 + d,
    s0^2 I), the decoder reading both levels.

    ``C`` has orthogonal columns, so the Gaussian factor of p(x | z1) in z1 is diagonal,
    N(z1; (C^T C)^-1 C^T (x - d), s0^2 (C^T C)^-1), and the ladder's precision-weighted
    q(z1 | z2, x) is the exact conditional posterior (``E``'s columns are orthogonal to
    ``C``'s, so ``C^T E z2 = 0`` leaves that factor as it is). q(z2 | x) keeps the exact
    mean of p(z2 | x) and the diagonal of its covariance widened by ``widen``: an
    imperfect guide. Marginally x ~ N(C b + d, (C A + E)(C A + E)^T + C D1 C^T + s0^2 I).
    """

    def __init__(self, widen=1.3, seed=0, skip=False):
        g = torch.Generator().manual_seed(seed)
        f64 = dict(generator=g, dtype=torch.float64)
        self.a, self.b = torch.randn(3, 2, **f64), torch.randn(3, **f64)
        self.d1 = 0.3 + torch.rand(3, **f64)
        q, _ = torch.linalg.qr(torch.randn(4, 4, **f64))
        self.c_diag = torch.tensor([1.5, 1.0, 0.7], dtype=torch.float64)
        self.c, self.d, self.s0 = q[:, :3] * self.c_diag, torch.randn(4, **f64), 0.5
        self.e = q[:, 3:] @ torch.randn(1, 2, **f64) if skip else torch.zeros(4, 2, dtype=torch.float64)
        eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
        cov_x1 = self.c @ torch.diag(self.d1) @ self.c.T + self.s0**2 * eye(4)
        ca = self.c @ self.a + self.e
        s2 = torch.linalg.inv(eye(2) + ca.T @ torch.linalg.solve(cov_x1, ca))
        w2 = s2 @ ca.T @ torch.linalg.inv(cov_x1)
        encoder = LinearLadder(
            w1=self.c.T / self.c_diag[:, None] ** 2, b1=-(self.c.T @ self.d) / self.c_diag**2,
            log_var1=torch.log(self.s0**2 / self.c_diag**2),
            w2=w2, b2=-w2 @ (self.d + self.c @ self.b),
            log_var2=torch.log(widen**2 * torch.diagonal(s2)))
        top_down = nn.Linear(2, 6)
        with torch.no_grad():
            top_down.weight.copy_(torch.cat([self.a, torch.zeros(3, 2, dtype=torch.float64)]))
            top_down.bias.copy_(torch.cat([self.b, self.d1.log()]))
        self.hvae = HVAE(x_shape=(1, 1, 4), levels=2, z_dims=(3, 2), likelihood="normal-fixed",
                         normal_scale=self.s0, encoder=encoder.double(),
                         top_down=[top_down.double()], skip=skip, min_scale=0.0,
                         decoder=LinearDecoder(torch.cat([self.c, self.e], 1) if skip
                                               else self.c, self.d)).double()

    def marginal(self):
        ca = self.c @ self.a + self.e
        cov = (ca @ ca.T + self.c @ torch.diag(self.d1) @ self.c.T
               + self.s0**2 * torch.eye(4, dtype=torch.float64))
        return dist.MultivariateNormal(self.c @ self.b + self.d, covariance_matrix=cov)

    def sample(self, n, seed=1):
        torch.manual_seed(seed)
        return self.marginal().sample((n,)).reshape(n, 1, 1, 4)


@pytest.mark.parametrize("skip", [False, True])
def test_importance_weighted_estimate_matches_the_exact_log_likelihood(skip):
    oracle = LinearGaussian(skip=skip)
    x = oracle.sample(6)
    exact = oracle.marginal().log_prob(x.flatten(1))
    model, guide = oracle.hvae.model, oracle.hvae.guide
    elbo = torch.stack([log_weights(model, guide, x) for _ in range(200)]).mean(0)
    estimate = iw_log_likelihood(model, guide, x, num_samples=4000, chunk_size=6000)
    assert estimate.shape == (6,) and estimate.dtype == torch.float64
    # The weights are p(x) p(z2 | x) / q(z2 | x): only the widened q(z2 | x) misfits.
    # Their relative variance is 0.22 for this guide (measured on 20000 draws), so the
    # log-mean-exp of 4000 has a Monte-Carlo sd of sqrt(0.22 / 4000) = 0.007 nats: 0.04
    # is over 5 sd.
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.04)
    # The ELBO (the mean log-weight) is visibly below: the IW bound earns its K.
    assert (exact - elbo).mean() > 0.1  # measured: 0.19 = KL(q(z2 | x) || p(z2 | x))
    assert (estimate - elbo).mean() > 0.1


def test_kl_per_level_sums_to_the_total_kl():
    oracle = LinearGaussian()
    x = oracle.sample(50)
    model, guide = oracle.hvae.model, oracle.hvae.guide
    pyro.set_rng_seed(3)
    total = elbo_terms(model, guide, x, batch_size=20)
    pyro.set_rng_seed(3)
    per_site = kl_per_site(model, guide, x, batch_size=20)
    assert list(per_site) == ["z", "z1"]
    assert sum(per_site.values()) == pytest.approx(total["kl"], rel=1e-9)
    assert all(v > 0 for v in per_site.values())
    metrics = oracle.hvae.metrics(x)
    assert set(metrics) == {"kl_z", "kl_z1", "active_units_z", "active_units_z1"}
    assert metrics["active_units_z"] == 2 and metrics["active_units_z1"] == 3


# ----------------------------------------------------------- sites, shapes, plate
@pytest.mark.parametrize("levels, sites", [(1, ["z"]), (2, ["z", "z1"]), (3, ["z", "z2", "z1"])])
def test_sites_shapes_and_the_data_plate(levels, sites):
    hvae = HVAE(x_shape=(1, 4, 4), hidden=(8,), z_dim=2, levels=levels)
    assert hvae.z_dims == tuple(2 * 2 ** (levels - 1 - i) for i in range(levels))
    assert hvae.latent_shape == (2,) and hvae.sites == tuple(sites)
    x = _binary(5)
    guide_trace = poutine.trace(hvae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(hvae.model, trace=guide_trace)).get_trace(x)
    for trace, names in ((guide_trace, sites), (model_trace, sites + ["x"])):
        samples = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]
        assert samples == names
        for name in names:
            site = trace.nodes[name]
            assert [f.name for f in site["cond_indep_stack"]] == ["data"]
            assert site["fn"].batch_shape == (5,)
    for name, dim in zip(sites, reversed(hvae.z_dims)):
        assert guide_trace.nodes[name]["value"].shape == (5, dim)
    assert model_trace.nodes["x"]["is_observed"]


def test_predictive_draws_images_and_posterior_codes():
    hvae = HVAE(**TINY)
    prior = Predictive(hvae.model, num_samples=3)(num=4)
    assert prior["x"].shape == (3, 4, 1, 4, 4) and prior["z1"].shape == (3, 4, 3)
    x = _binary(4)
    posterior = Predictive(hvae.model, guide=hvae.guide, num_samples=2,
                           return_sites=["z", "z1"])(x)
    assert posterior["z"].shape == (2, 4, 2) and posterior["z1"].shape == (2, 4, 3)
    assert hvae.generate(6).shape == (6, 1, 4, 4)
    assert hvae.reconstruct(x).shape == x.shape
    assert hvae.decode(hvae.encode(x)).shape == x.shape
    assert hvae.decode(torch.zeros(2, 3, 2)).shape == (2, 3, 1, 4, 4)


def test_skip_connections_let_every_level_reach_the_image():
    hvae = HVAE(**TINY, skip=True).eval()
    assert hvae.decoder.net[0].in_features == 3 + 2  # [z1, z2]
    z1, z2 = torch.randn(4, 3), torch.randn(4, 2)
    # with z1 held, the top level alone moves p(x | z1, z2); without skip it cannot
    assert not torch.allclose(hvae.decode_levels([z2, z1]), hvae.decode_levels([z2 + 1, z1]))
    plain = HVAE(**TINY).eval()
    assert torch.equal(plain.decode_levels([z2, z1]), plain.decode_levels([z2 + 1, z1]))
    x = _binary(6)
    assert hvae.generate(5).shape == (5, 1, 4, 4) and hvae.reconstruct(x).shape == x.shape
    assert hvae.decode(hvae.encode(x)).shape == x.shape


@pytest.mark.parametrize("options", [
    dict(prior="vamp", pseudo_inputs=5), dict(prior="flow"), dict(prior="mog"),
    dict(guide="iaf"), dict(guide="full"), dict(norm="batch"), dict(norm="weight"),
    dict(net="conv", hidden=(8,)), dict(likelihood="normal"),
    dict(skip=True, prior="vamp", pseudo_inputs=5), dict(skip=True, levels=3, z_dims=(3, 2, 2),
                                                         level_hidden=(6, 6)),
])
def test_parts_train_and_evaluate(options):
    hvae = HVAE(**{**TINY, **options})
    x = _binary(32)
    before = {k: v.clone() for k, v in hvae.state_dict().items() if v.is_floating_point()}
    history = fit(hvae.model, hvae.guide, x, epochs=2, batch_size=16)
    assert all(math.isfinite(h["train_loss"]) for h in history)
    moved = [k for k, v in hvae.state_dict().items()
             if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith("top_down") for k in moved)
    assert any(k.startswith("encoder") for k in moved)
    hvae.eval()
    elbo = -elbo_terms(hvae.model, hvae.guide, x)["test_loss"]
    pyro.set_rng_seed(1)
    iw = iw_log_likelihood(hvae.model, hvae.guide, x, num_samples=50).mean().item()
    assert iw > elbo  # L_50 above the ELBO (on average over 32 items, by far)


def test_the_vamp_prior_is_the_top_guide_at_pseudo_inputs():
    hvae = HVAE(**TINY, prior="vamp", pseudo_inputs=7)
    components = hvae.prior().components
    assert components.batch_shape == (7,) and components.event_shape == (2,)
    u = torch.nn.functional.hardtanh(hvae.prior.pseudo_inputs, 0.0, 1.0)
    torch.testing.assert_close(components.mean, hvae.posterior.loc(hvae.top_params(u)))
    log_p = hvae.prior().log_prob(torch.zeros(3, 2)).sum()
    log_p.backward()
    assert hvae.encoder.heads[-1].weight.grad.abs().sum() > 0  # the prior trains the encoder


# ------------------------------------------------------------------------ free bits
def _terms(hvae, x, seed):
    """The negative ELBO's parts with gradients, at the guide draw of ``seed``:
    ``-log p(x | z_1)`` and each level's closed-form KL, summed over the batch."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(hvae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(hvae.model, trace=guide_trace)).get_trace(x)
    recon = -model_trace.nodes["x"]["fn"].log_prob(x).sum()
    kls = {s: kl_divergence(guide_trace.nodes[s]["fn"], model_trace.nodes[s]["fn"]).sum()
           for s in hvae.sites}
    return recon, kls


def _grads(hvae, loss, retain_graph=False):
    hvae.zero_grad()
    loss.backward(retain_graph=retain_graph)
    return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for k, p in hvae.named_parameters()}


def test_free_bits_remove_the_kl_gradient_of_a_level_below_lambda_only():
    hvae = HVAE(**TINY, z_dim=2).double()
    x = _binary(16).double()
    recon, kls = _terms(hvae, x, seed=5)
    kl_means = {s: (v / len(x)).item() for s, v in kls.items()}
    low, high = sorted(kl_means, key=kl_means.get)
    lam = (kl_means[low] + kl_means[high]) / 2  # between the two levels' batch means
    elbo = TraceMeanField_ELBO()
    expected = {  # free bits lambda: what the objective should be, and its gradient
        0.0: recon + kls[low] + kls[high],
        lam: recon + len(x) * lam + kls[high],
        kl_means[high] + 1.0: recon + len(x) * 2 * (kl_means[high] + 1.0),
    }
    for free_bits, target in expected.items():
        hvae.free_bits = free_bits
        pyro.set_rng_seed(5)
        loss = elbo.differentiable_loss(hvae.model, hvae.guide, x)
        assert loss.item() == pytest.approx(target.item(), rel=1e-9)
        recon, kls = _terms(hvae, x, seed=5)  # fresh graphs for the target's gradient
        target = {0.0: recon + kls[low] + kls[high], lam: recon + kls[high],
                  kl_means[high] + 1.0: recon}[free_bits]
        want = _grads(hvae, target)
        pyro.set_rng_seed(5)
        got = _grads(hvae, elbo.differentiable_loss(hvae.model, hvae.guide, x))
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-7, atol=1e-9)
    # Above lambda nothing changes: the free-bits loss's gradient is the ELBO's.
    assert any(want[k].abs().sum() > 0 for k in want if k.startswith("top_down"))


def test_free_bits_under_trace_elbo_cancel_the_kl_gradient_in_expectation():
    hvae = HVAE(**TINY, z_dim=2, free_bits=50.0).double()  # far above both levels' KL
    x = _binary(16).double()
    free_bits, kl, draws = 0.0, 0.0, 100
    for seed in range(draws):  # the same draws for each term
        pyro.set_rng_seed(seed)
        loss = _grads(hvae, Trace_ELBO().differentiable_loss(hvae.model, hvae.guide, x))
        recon, kls = _terms(hvae, x, seed)
        recon = _grads(hvae, recon, retain_graph=True)
        kl_grad = _grads(hvae, sum(kls.values()))
        free_bits = free_bits + torch.cat([(loss[k] - recon[k]).flatten() for k in loss]) / draws
        kl = kl + torch.cat([kl_grad[k].flatten() for k in kl_grad]) / draws
    # Per draw, Trace_ELBO's KL gradient (log q - log p at the draw) differs from the
    # closed form's that the factor removes; averaged over draws, what is left of the
    # KL gradient is a small fraction of the KL gradient itself (measured: 0.08 and 0.10
    # of it for two sets of 100 draws, 0.11 and 0.23 for sets of 30).
    assert free_bits.norm() < 0.3 * kl.norm()


# ------------------------------------------------------------------- the shell
def test_cli_train_evaluate_and_sample(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((40, 1, 6, 5), np.float32))
    run = tmp_path / "run"
    assert main(["train", "--model", "hvae", "--levels", "2", "--data", str(data), "--epochs",
                 "1", "--z-dim", "2", "--hidden", "8", "--level-hidden", "6", "--free-bits",
                 "0.5", "--norm", "weight", "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "hvae" and config["levels"] == 2 and config["free_bits"] == 0.5
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("kl_z", "kl_z1", "active_units_z", "active_units_z1", "nll", "kl"):
        assert key in result
    assert result["kl_z"] + result["kl_z1"] == pytest.approx(result["kl"], rel=0.5)
    assert main(["sample", str(run), "--num", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 6, 5)


# ------------------------------------------------------------- the variance floor
def test_the_floor_bounds_every_variance_and_keeps_gradients_finite():
    log_var = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4], requires_grad=True)
    var = floored_variance(log_var, 1e-3)
    var.sum().backward()
    assert torch.isfinite(log_var.grad).all() and (var >= 1e-6).all()
    assert var[0] == 1e-6 and var[-1] == math.exp(MAX_LOG_VAR) + 1e-6
    torch.testing.assert_close(var[2], torch.tensor(1.0 + 1e-6))
    # min_scale = 0 is the plain parameterisation sigma^2 = exp(log_var)
    free = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(floored_variance(free, 0.0), free.exp())
    torch.testing.assert_close(diagonal_normal(torch.cat([free, free]), 0.0).base_dist.scale,
                               (0.5 * free).exp())


def test_the_ladder_posterior_stays_finite_where_both_variances_would_vanish():
    """Read-out and top-down output of log sigma^2 = -1000: without the floor both
    precisions are infinite and q(z_1 | z_2, x) is NaN; with it, its variance is
    1 / (2 / min_scale^2) and its mean the precision-weighted one."""
    up = torch.tensor([[1.0, 3.0, -1000.0, -1000.0]])
    prior = dist.Normal(torch.tensor([[-1.0, 3.0]]), torch.tensor([[0.0, 0.0]]),
                        validate_args=False).to_event(1)
    with pytest.raises(ValueError, match="nan"):  # the distribution's own check refuses it
        precision_weighted(up, prior, 0.0)
    low = diagonal_normal(torch.tensor([[-1.0, 3.0, -1000.0, -1000.0]]), 0.01)
    q = precision_weighted(up, low, 0.01).base_dist
    torch.testing.assert_close(q.scale, torch.full((1, 2), 0.01 / math.sqrt(2)))
    torch.testing.assert_close(q.loc, torch.tensor([[0.0, 3.0]]))


def test_the_floor_is_an_option_of_the_model():
    hvae = HVAE(**TINY, min_scale=0.5)
    z2 = torch.randn(7, 2)
    assert (hvae.conditional_prior(1, z2).base_dist.scale >= 0.5).all()
    with pytest.raises(ValueError, match="min_scale: expected a finite number >= 0, got -1"):
        HVAE(**TINY, min_scale=-1)


@pytest.mark.parametrize("argv, message", [
    (["--min-scale", "-0.1"], "min_scale: expected a finite number >= 0, got -0.1"),
    (["--levels", "0"], "levels: expected a positive integer, got 0"),
    (["--z-dims", "3,2,1"], "z_dims: expected 2 positive dimensions (one per level, z1 first), "
                            "got (3, 2, 1)"),
    (["--level-hidden", "4,4"], "level_hidden: expected 1 positive widths"),
    (["--norm", "batch", "--prior", "vamp"], "norm: batch norm in the bottom-up pass"),
    (["--free-bits", "-1"], "free_bits: expected a non-negative number of nats, got -1.0"),
    (["--norm", "layer"], "norm: expected one of ['none', 'batch', 'weight'], got 'layer'"),
    (["--elbo", "IWAE", "--free-bits", "1"], "free_bits: needs TraceMeanField_ELBO"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((20, 1, 4, 4), np.float32))
    code = main(["train", "--model", "hvae", "--data", str(data), "--epochs", "1",
                 "--z-dim", "2", "--hidden", "8", "--out", str(tmp_path / "run"), "--quiet",
                 *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], errors


def test_registered_and_declared():
    assert MODELS["hvae"] is HVAE
    assert HVAE.elbo == "TraceMeanField_ELBO" and HVAE.latent_kind == "continuous"
    assert HVAE(**TINY).capturable and not HVAE(**TINY, norm="batch").capturable


def test_example(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [
        "hvae.py", "--epochs", "1", "--num-train", "200", "--num-test", "20", "--iw-samples",
        "5", "--z-dim", "2", "--hidden", "16", "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "hvae.py"), run_name="__main__")
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "reconstructions.png").is_file()
    out = capsys.readouterr().out
    assert "kl_z1" in out and "NLL" in out
