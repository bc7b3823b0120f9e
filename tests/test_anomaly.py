"""Anomaly scores, detection metrics, thresholds and `pyro-vae score`."""

import csv
import io
import json
import math
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pyro
import pyro.distributions as dist

from pyro_vae import VAE
from pyro_vae.anomaly import (Scorer, auprc, auroc, compressed_bits, detection_metrics,
                              fpr_at_tpr, quantile_threshold, typicality_test)
from pyro_vae.anomaly.metrics import roc_curve
from pyro_vae.cli import main
from pyro_vae.data import perturb
from pyro_vae.models import Model


class LinearGaussian(Model):
    r"""``z ~ N(0, I_k)``, ``x ~ N(W z, s^2 I_d)``, guided by the exact posterior
    ``q(z | x) = N(S W^T x / s^2, S)`` with ``S = (I + W^T W / s^2)^{-1}``, so
    ``log p(x, z) - log q(z | x) = log p(x) = log N(x; 0, W W^T + s^2 I)`` at every z."""

    def __init__(self, d=4, k=2, s=0.5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, k, generator=g, dtype=torch.float64))
        self.s, self.k, self.x_shape = s, k, (d,)

    def posterior(self, x):
        cov = torch.linalg.inv(torch.eye(self.k, dtype=x.dtype) + self.w.T @ self.w / self.s**2)
        return x @ self.w @ cov / self.s**2, cov

    def model(self, x=None, y=None, num=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.k, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.w.T, self.s).to_event(1), obs=x)

    def guide(self, x=None, y=None, num=None):
        loc, cov = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, covariance_matrix=cov))

    def log_px(self, x):
        cov = self.w @ self.w.T + self.s**2 * torch.eye(len(self.w), dtype=x.dtype)
        return dist.MultivariateNormal(torch.zeros(len(self.w), dtype=x.dtype), cov).log_prob(x)

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.k, generator=g, dtype=torch.float64)
        noise = torch.randn(n, len(self.w), generator=g, dtype=torch.float64)
        return (z @ self.w.T + self.s * noise).detach()


# ------------------------------------------------------------------ scores
@torch.no_grad()
def test_nll_scores_equal_the_closed_form_log_likelihood():
    gauss = LinearGaussian()
    x = gauss.sample(50)
    scores = Scorer(gauss, iw_samples=8, elbo_samples=400).score(x, scores=["iwae", "elbo"])
    exact = -gauss.log_px(x)
    # the exact posterior makes every importance weight equal p(x): no Monte-Carlo error
    assert torch.allclose(scores["iwae"], exact, atol=1e-8)
    # -ELBO = log p(x) in expectation; 400 draws of the reconstruction term leave ~0.05 nats
    assert torch.allclose(scores["elbo"], exact, atol=0.25)


@torch.no_grad()
def test_a_shifted_gaussian_is_detected_by_likelihood_and_latent_scores():
    gauss = LinearGaussian()
    x_normal, x_test = gauss.sample(500, seed=1), gauss.sample(300, seed=2)
    x_shifted = gauss.sample(300, seed=3) + 5.0 * gauss.w[:, 0].detach()  # along W: codes move
    scorer = Scorer(gauss, iw_samples=4).fit(x_normal)
    names = ["elbo", "iwae", "latent", "dose"]
    s_in, s_out = scorer.score(x_test, scores=names), scorer.score(x_shifted, scores=names)
    for name in names:
        assert auroc(s_in[name], s_out[name]) > 0.95, name
    # normal data against normal data is chance
    again = scorer.score(gauss.sample(300, seed=4), scores=names)
    for name in names:
        assert 0.4 < auroc(s_in[name], again[name]) < 0.6, name


@torch.no_grad()
def test_complexity_is_nll_bits_minus_png_bits_on_a_constant_image():
    vae = VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,))
    x = torch.full((3, 1, 8, 8), 0.5)
    scorer = Scorer(vae)
    pyro.set_rng_seed(3)
    complexity = scorer.score(x, scores=["complexity"])["complexity"]
    pyro.set_rng_seed(3)
    elbo = scorer.score(x, scores=["elbo"])["elbo"]
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8), mode="L").save(buffer, "PNG", optimize=True)
    png = 8 * len(buffer.getvalue())
    assert torch.allclose(complexity, elbo / math.log(2) - png)


def test_compressors_count_the_bits_of_their_output():
    noise = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    flat = torch.zeros(2, 1, 16, 16)
    png_noise, png_flat = compressed_bits(noise, "png"), compressed_bits(flat, "png")
    assert (png_flat < png_noise).all()
    raw = np.clip(np.rint(noise[0].numpy() * 255), 0, 255).astype(np.uint8).tobytes()
    assert compressed_bits(noise, "zlib")[0] == 8 * len(zlib.compress(raw, 9))
    assert compressed_bits(torch.rand(1, 3, 8, 8), "png").shape == (1,)  # RGB
    assert compressed_bits(torch.rand(1, 2, 8, 8), "png").shape == (1,)  # zlib fallback
    with pytest.raises(ValueError, match="compressor"):
        compressed_bits(noise, "gzip")


def test_ratio_needs_a_background_model_and_latent_a_reference():
    vae = VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,))
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="background"):
        Scorer(vae).score(x, scores=["ratio"])
    with pytest.raises(ValueError, match="fit"):
        Scorer(vae).score(x, scores=["latent"])
    with pytest.raises(ValueError, match="score: expected one of"):
        Scorer(vae).score(x, scores=["likelihood"])
    background = VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,))
    scores = Scorer(vae, background=background).score(x, scores=["ratio"])["ratio"]
    assert scores.shape == (4,) and torch.isfinite(scores).all()


# ------------------------------------------------------------------ metrics
def test_metrics_match_scikit_learn_with_ties():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    s_in = torch.randn(400, generator=g).round(decimals=1)
    s_out = (torch.randn(200, generator=g) + 1).round(decimals=1)
    y = np.r_[np.zeros(400), np.ones(200)]
    s = torch.cat([s_in, s_out]).numpy()
    assert auroc(s_in, s_out) == pytest.approx(sk.roc_auc_score(y, s))
    assert auprc(s_in, s_out) == pytest.approx(sk.average_precision_score(y, s))
    fpr, tpr = roc_curve(s_in, s_out)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert torch.trapezoid(tpr, fpr).item() == pytest.approx(auroc(s_in, s_out))


def test_auroc_of_two_gaussians_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    delta = 1.5
    s_in, s_out = torch.randn(4000, generator=g), torch.randn(4000, generator=g) + delta
    exact = 0.5 * (1 + math.erf(delta / 2))  # P(N(delta, 2) > 0) = Phi(delta / sqrt 2)
    assert auroc(s_in, s_out) == pytest.approx(exact, abs=0.015)  # ~3 standard errors
    assert auroc(s_out, s_in) == pytest.approx(1 - exact, abs=0.015)


def test_fpr_at_95_tpr_and_thresholds_on_a_small_example():
    s_in = torch.arange(100.0)  # normal: 0..99
    s_out = torch.arange(50.0, 150.0)  # anomalies: 50..149; 95% of them are >= 55
    assert fpr_at_tpr(s_in, s_out, 0.95) == pytest.approx(45 / 100)
    assert detection_metrics(s_in, s_in + 1000)["fpr_at_95_tpr"] == 0.0
    assert quantile_threshold(s_in, 0.9) == pytest.approx(89.1)
    with pytest.raises(ValueError, match="threshold_quantile"):
        quantile_threshold(s_in, 1.5)
    with pytest.raises(ValueError, match="not finite"):
        auroc(torch.tensor([0.0, float("nan")]), s_out)


def test_typicality_flags_shifted_batches_and_few_normal_ones():
    g = torch.Generator().manual_seed(2)
    train, val, test = (torch.randn(n, generator=g) for n in (2000, 2000, 2500))
    normal = typicality_test(train, val, test, batch=25, alpha=0.05)
    atypically_good = typicality_test(train, val, test - 1.0, batch=25, alpha=0.05)
    assert normal["batches"] == 100 and normal["flagged"] < 0.15
    assert atypically_good["flagged"] > 0.95  # a higher likelihood than typical is flagged too


def test_perturb_replaces_the_given_share_of_pixels():
    x = torch.full((200, 1, 10, 10), 2.0)  # outside [0, 1]: a replaced pixel is visible
    out = perturb(x, 0.2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and ((out < 1).double().mean().item() == pytest.approx(0.2, abs=0.01))
    assert torch.equal(perturb(x, 0.0), x)


# ------------------------------------------------------------------ the command line
TINY = ["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--batch-size", "256", "--quiet",
        "--val-fraction", "0.1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "run"
    assert main(["train", "--out", str(out), "--exclude-class", "1", *TINY]) == 0
    return out


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_score_threshold_flags_round_trip(run_dir, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["score", str(run_dir), "--score", "elbo", "complexity", "latent",
                 "--threshold-quantile", "0.9", "--num-images", "400", "--out", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == 400
    assert {"index", "label", "elbo", "complexity", "latent", "flag_elbo"} <= set(rows[0])
    saved = json.loads((run_dir / "anomaly.json").read_text())
    assert saved["quantile"] == 0.9 and set(saved["thresholds"]) == {"elbo", "complexity", "latent"}
    flagged = np.mean([int(r["flag_elbo"]) for r in rows])
    assert 0.02 < flagged < 0.3  # about 10% of normal test digits are above the 0.9 quantile
    for r in rows[:20]:
        assert int(r["flag_elbo"]) == (float(r["elbo"]) > saved["thresholds"]["elbo"])
    # new data later: the saved thresholds flag it the same way, noise above them
    images = np.concatenate([np.random.default_rng(0).random((5, 1, 28, 28)),
                             np.zeros((5, 1, 28, 28))]).astype(np.float32)
    np.save(tmp_path / "new.npy", images)
    assert main(["score", str(run_dir), "--data", str(tmp_path / "new.npy"), "--score", "elbo",
                 "--out", str(tmp_path / "new.csv")]) == 0
    new = _rows(tmp_path / "new.csv")
    assert [int(r["flag_elbo"]) for r in new[:5]] == [1] * 5 and len(new) == 10


def test_held_out_class_reports_metrics_and_figures(run_dir, tmp_path, capsys):
    out = tmp_path / "held.csv"
    assert main(["score", str(run_dir), "--held-out-class", "1", "--iw-samples", "4",
                 "--num-images", "600", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    # all scores but 'ratio', which needs a background run
    assert set(result["metrics"]) == {"elbo", "iwae", "recon", "kl", "complexity", "latent",
                                      "classifier", "dose", "combined"}
    for m in result["metrics"].values():
        assert 0 <= m["auroc"] <= 1 and 0 <= m["fpr_at_95_tpr"] <= 1
    rows = _rows(out)
    assert {r["label"] for r in rows if r["ood"] == "1"} == {"1"}
    assert "1" not in {r["label"] for r in rows if r["ood"] == "0"}
    assert (tmp_path / "held_hist.png").is_file() and (tmp_path / "held_roc.png").is_file()
    assert result["typicality"]["in"]["batch"] == 25


@pytest.mark.parametrize("flags, problem", [
    (["--held-out-class", "3"], "held_out_class: class 3 was not left out"),
    (["--score", "ratio"], "needs a background model"),
    (["--score", "elbow"], "score: expected names"),
    (["--threshold-quantile", "1.2"], "threshold_quantile"),
])
def test_bad_score_flags_end_in_one_line(run_dir, flags, problem, capsys):
    assert main(["score", str(run_dir), "--num-images", "50", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pyro-vae: error:") and problem in err


def test_data_of_another_shape_is_refused_in_one_line(run_dir, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((4, 1, 32, 32), np.float32))
    assert main(["score", str(run_dir), "--data", str(tmp_path / "big.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data: items of shape (1, 32, 32)" in err and "(1, 28, 28)" in err


@torch.no_grad()
def test_classifier_and_combined_scores_use_normal_data_only():
    """Two normal classes of codes; an anomaly between them is uncertain to the classifier."""
    gauss = LinearGaussian(d=4, k=2, s=0.3)
    x = gauss.sample(1200, seed=5)
    codes = gauss.posterior(x)[0]
    y = (codes[:, 0] > 0).long()  # the class is the side of the first code dimension
    keep = codes[:, 0].abs() > 1.0  # normal data: well inside either class
    x_normal, y_normal = x[keep], y[keep]
    half = len(x_normal) // 2
    scorer = Scorer(gauss).fit(x_normal[:half], y_normal[:half],
                               calibration=(x_normal[half:], y_normal[half:]))
    assert set(scorer.reference.null) == {"complexity", "classifier", "latent"}
    x_between = x[codes[:, 0].abs() < 0.2]
    s_in = scorer.score(x_normal[half:], scores=["classifier"])["classifier"]
    s_out = scorer.score(x_between, scores=["classifier"])["classifier"]
    assert auroc(s_in, s_out) > 0.9
    combined = scorer.score(x_normal[half:], scores=["combined"])["combined"]
    # on the calibration items themselves, each p-value is uniform: -2 log p has mean 2
    assert combined.mean().item() == pytest.approx(2 * 3, rel=0.15)
    with pytest.raises(ValueError, match="calibration"):
        Scorer(gauss).fit(x_normal).score(x_between, scores=["combined"])
    with pytest.raises(ValueError, match="class labels"):
        Scorer(gauss).fit(x_normal).score(x_between, scores=["classifier"])


def test_train_with_perturb_writes_a_background_run(tmp_path, capsys):
    out = tmp_path / "bg"
    assert main(["train", "--out", str(out), "--perturb", "0.2", "--binarize", "dynamic",
                 *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["perturb"] == 0.2
    assert main(["train", "--out", str(tmp_path / "bad"), "--perturb", "1.5", *TINY]) == 2
    assert "perturb: expected a share in [0, 1)" in capsys.readouterr().err


# ------------------------------------------- a hierarchical model's level ratio
@torch.no_grad()
def test_level_bound_is_the_bound_with_the_lowest_level_from_the_prior():
    """L^{>1}(x) = E_{q(z2|x) p(z1|z2)} log p(x|z1) - KL(q(z2|x) || p(z2)), by Monte Carlo
    through the model's parts, against the mean of ``level_bound``'s draws."""
    from pyro_vae.anomaly.scores import level_bound
    from pyro_vae.models import HVAE
    hvae = HVAE(x_shape=(1, 4, 4), hidden=(8,), z_dims=(3, 2), level_hidden=(6,)).double()
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    draws = 4000
    rep = x.repeat(draws, 1, 1, 1)
    pyro.set_rng_seed(0)
    q_top = hvae.posterior(hvae.encoder(rep)[-1])
    z2 = q_top.sample()
    z1 = hvae.conditional_prior(1, z2).sample()
    by_parts = hvae.likelihood(hvae.decoder(z1)).log_prob(rep) \
        - torch.distributions.kl_divergence(q_top, hvae.prior())
    by_parts = by_parts.view(draws, 3)
    got = level_bound(hvae, rep, prior_levels=1).view(draws, 3)
    se = (by_parts.var(0) / draws + got.var(0) / draws).sqrt()
    assert ((got.mean(0) - by_parts.mean(0)).abs() < 4 * se).all()
    # k = 0 is the ELBO, here against Pyro's Trace_ELBO over the same replicas
    full = level_bound(hvae, rep).view(draws, 3)
    elbo = -pyro.infer.TraceMeanField_ELBO().loss(hvae.model, hvae.guide, rep) / draws
    assert abs(full.mean(0).sum() - elbo) < 4 * (full.var(0) / draws).sum().sqrt() + 0.05
    with pytest.raises(ValueError, match="prior_levels: expected 0 to 1"):
        level_bound(hvae, x, prior_levels=2)


def test_llr_needs_a_hierarchical_model():
    vae = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="'llr' compares a hierarchical model's levels"):
        Scorer(vae).score(torch.rand(5, 1, 4, 4).round(), scores=["llr"])


def test_cli_scores_a_hierarchical_run_with_llr(tmp_path, capsys):
    run = tmp_path / "hvae"
    assert main(["train", "--model", "hvae", "--exclude-class", "1", "--train-size", "2000",
                 "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["score", str(run), "--held-out-class", "1", "--score", "elbo", "llr",
                 "--num-images", "300", "--json", "--out", str(tmp_path / "s.csv")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["metrics"]) == {"elbo", "llr"}
    assert {"llr"} <= set(_rows(tmp_path / "s.csv")[0])
