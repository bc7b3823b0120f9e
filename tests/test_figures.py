"""The six figures: each built from a tiny run, the numbers it draws checked."""

import json

import matplotlib.pyplot as plt
import pytest
import torch
from torch.distributions import Normal, kl_divergence

import pyro

from pyro_vae import VAE, TrainConfig, fit, iw_log_likelihood, train
from pyro_vae import figures, runs
from pyro_vae.explore import latent_path


def tiny_vae(x, z_dim=2, epochs=2, seed=0, **options) -> VAE:
    """A small VAE fitted to ``x`` for a few epochs: seconds on one core."""
    pyro.set_rng_seed(seed)
    vae = VAE(x.shape[1:], z_dim=z_dim, hidden=(64,), **options)
    fit(vae.model, vae.guide, x, epochs=epochs, seed=seed)
    return vae.eval()


@pytest.fixture(scope="module")
def data():
    from pyro_vae.data import load_dataset

    return load_dataset("mnist-10k")


@pytest.fixture(scope="module")
def vae_2d(data):
    return tiny_vae(data.x_train[:2000])


# -------------------------------------------------------------------- figure 1
def test_gaussian_kl_is_torchs_closed_form():
    q_loc, q_scale = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    p_loc, p_scale = torch.randn(3), torch.rand(3) + 0.5
    expected = kl_divergence(Normal(q_loc, q_scale), Normal(p_loc, p_scale)).sum(-1)
    assert torch.allclose(figures.gaussian_kl(q_loc, q_scale, p_loc, p_scale), expected, atol=1e-5)


def test_kl_closed_form_equals_monte_carlo(vae_2d, data):
    numbers, fig = figures.kl_divergence_2d(vae_2d, data.x_test[:1], num_samples=20000)
    assert isinstance(fig, plt.Figure)
    assert numbers["kl_closed_form"] == pytest.approx(numbers["kl_torch"], rel=1e-5)
    # Monte-Carlo error is std / sqrt(S); 4 standard errors fail once in ~16,000 seeds.
    assert abs(numbers["kl_closed_form"] - numbers["kl_monte_carlo"]) \
        < 4 * numbers["kl_monte_carlo_stderr"]
    assert numbers["kl_closed_form"] > 0 and len(numbers["mu"]) == 2
    plt.close(fig)


# -------------------------------------------------------------------- figure 2
def test_reparameterised_gradient_has_lower_variance(vae_2d, data):
    numbers, fig = figures.reparameterization(vae_2d, data.x_test[:1], num_draws=2000)
    rep, score = numbers["reparameterised"], numbers["score_function"]
    assert all(r < s for r, s in zip(rep["variance"], score["variance"]))
    # Both estimators are unbiased: their means agree within their standard errors.
    for mr, ms, sr, ss in zip(rep["mean"], score["mean"], rep["stderr"], score["stderr"]):
        assert abs(mr - ms) < 4 * (sr ** 2 + ss ** 2) ** 0.5
    plt.close(fig)


# -------------------------------------------------------------------- figure 3
def test_gap_is_non_negative_and_log_px_matches_iwae(vae_2d, data):
    x = data.x_test[:4]
    numbers, fig = figures.elbo_decomposition({"diagonal": vae_2d}, x, num_samples=1000)
    terms = numbers["diagonal"]
    for gap, stderr in zip(terms["gap"], terms["gap_stderr"]):
        assert gap > -3 * stderr
    for elbo, recon, kl in zip(terms["elbo"], terms["recon"], terms["kl"]):
        assert elbo == pytest.approx(-(recon + kl), abs=1e-3)
    reference = iw_log_likelihood(vae_2d.model, vae_2d.guide, x, num_samples=1000)
    for ours, theirs, stderr in zip(terms["log_px"], reference.tolist(), terms["log_px_stderr"]):
        assert abs(ours - theirs) < 5 * 1.5 * stderr + 1e-3  # two independent estimates
    plt.close(fig)


@pytest.mark.slow
def test_flow_guide_shrinks_the_gap(data):
    """Trained alike on the same data, the iaf guide's gap KL(q || p(z|x)) is smaller."""
    models = {}
    for guide in ("diagonal", "iaf"):  # the default runs of `pyro-vae figures`, about 1 min
        pyro.set_rng_seed(0)
        models[guide] = VAE(data.x_shape, z_dim=20, hidden=(400,), guide=guide, flow_layers=4)
        fit(models[guide].model, models[guide].guide, data.x_train, epochs=15, seed=0)
        models[guide].eval()
    numbers, fig = figures.elbo_decomposition(models, data.x_test[:200], num_samples=1000)
    for guide in models:
        assert numbers[guide]["mean_gap"] > -2 * numbers[guide]["mean_gap_stderr"]
    # Paired over the same images the difference is 0.45 to 1.2 nats over seeds, se ~0.13.
    paired = numbers["gap diagonal - iaf"]
    assert paired["mean_difference"] > 2 * paired["mean_difference_stderr"]
    plt.close(fig)


# -------------------------------------------------------------------- figure 4
def test_latent_interpolation_decodes_the_path_between_two_codes(vae_2d, data):
    x = data.x_test[:2]
    numbers, fig = figures.latent_interpolation(vae_2d, x[:1], x[1:], steps=7,
                                                codes=vae_2d.encode(data.x_test[:200]),
                                                labels=data.y_test[:200])
    z = vae_2d.encode(x)
    for name in ("linear", "slerp"):
        path = torch.tensor(numbers[name]["codes"])
        assert path.shape == (7, 2)
        assert torch.allclose(path, latent_path(z[0], z[1], 7, path=name), atol=1e-6)
        assert len(numbers[name]["log_prior"]) == 7
    plt.close(fig)


# -------------------------------------------------------------------- figure 5
def test_beta_sweep_kl_falls_as_beta_rises(data):
    x = data.x_train[:2000]
    models = {beta: tiny_vae(x, z_dim=5, beta=beta) for beta in (0.5, 2.0, 8.0)}
    numbers, fig = figures.beta_vae_tradeoff(models, data.x_test[:500])
    kls = [p["kl"] for p in sorted(numbers["points"], key=lambda p: p["beta"])]
    assert kls == sorted(kls, reverse=True)
    plt.close(fig)


# -------------------------------------------------------------------- figure 6
def test_training_curves_read_the_runs_metrics(tmp_path):
    config = TrainConfig.for_model("vae", z_dim=2, hidden=(32,), epochs=2, warmup="linear",
                                   warmup_epochs=1.0, out=str(tmp_path / "run"))
    train(config)
    rows = runs.read_metrics(tmp_path / "run")
    numbers, fig = figures.training_curves({"run": rows}, {"run": config})
    assert numbers["run"]["kl"] == [row["kl"] for row in rows]
    assert numbers["run"]["recon"] == [row["recon"] for row in rows]
    assert numbers["run"]["warmup"] == {"schedule": "linear", "epochs": 1.0}
    warmup_axis = fig.axes[2]
    assert warmup_axis.lines and max(warmup_axis.lines[0].get_ydata()) == pytest.approx(1.0)
    plt.close(fig)


# ---------------------------------------------------------- all six, from runs
def test_figures_help_parses(capsys):
    from pyro_vae.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["figures", "--help"])
    assert stop.value.code == 0 and "--run" in capsys.readouterr().out


def test_write_all_trains_missing_runs_once(tmp_path, monkeypatch):
    tiny = {"hidden": (16,), "epochs": 1}
    monkeypatch.setattr(figures, "BETAS", (0.5, 1.0, 4.0))
    monkeypatch.setattr(figures, "RECIPES", {
        "vae-2d": {"z_dim": 2, **tiny}, "iaf": {"z_dim": 2, "guide": "iaf", **tiny},
        "warmup": {"z_dim": 2, "warmup": "linear", "warmup_epochs": 1.0, **tiny},
        "beta-1": {"z_dim": 2, **tiny}, "beta-0.5": {"z_dim": 2, "beta": 0.5, **tiny},
        "beta-4": {"z_dim": 2, "beta": 4.0, **tiny}})
    numbers = figures.write_all(tmp_path, num_images=2, iw_samples=50)
    for name in figures.FILES.values():
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "figures.json").read_text())["runs"] == numbers["runs"]
    # The iaf run's diagonal twin is a run already there, not one more.
    assert numbers["runs"]["diagonal"] in (numbers["runs"]["2d"], numbers["runs"]["sweep"]["1"])
    assert not (tmp_path / "runs" / "iaf-diagonal").exists()
    assert sorted(numbers["runs"]["sweep"]) == ["0.5", "1", "4"]
    checkpoint = tmp_path / "runs" / "vae-2d" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    run = figures.cached_run(checkpoint.parent, **figures.RECIPES["vae-2d"])
    assert checkpoint.stat().st_mtime_ns == written  # found, not trained again
    assert run.config.z_dim == 2 and run.epoch == 1
