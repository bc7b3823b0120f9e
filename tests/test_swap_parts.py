"""Every guide x prior x likelihood combination traces, trains and evaluates."""

import itertools
import json
import math

import pytest
import torch

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from pyro_vae import VAE, VAEConfig, fit, load_run, train
from pyro_vae.cli import main
from pyro_vae.evaluate import elbo_terms, evaluation_report
from pyro_vae.guides import GUIDES
from pyro_vae.infer import make_elbo
from pyro_vae.iwae import IWAE
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.nets import Encoder
from pyro_vae.priors import PRIORS

X_SHAPE, Z = (1, 5, 4), 3
# Priors of z alone; p(z | y) belongs to labelled models (tests/test_cvae.py).
UNCONDITIONAL = [name for name, cls in PRIORS.items() if not getattr(cls, "conditional", False)]


def _data(likelihood, n=24):
    x = torch.rand((n,) + X_SHAPE, generator=torch.Generator().manual_seed(0))
    return torch.bernoulli(x) if likelihood == "bernoulli" else x


@pytest.mark.parametrize(
    "guide, prior, likelihood", list(itertools.product(GUIDES, UNCONDITIONAL, LIKELIHOODS))
)
def test_combination_traces_trains_and_evaluates(guide, prior, likelihood):
    x = _data(likelihood)
    vae = VAE(X_SHAPE, z_dim=Z, hidden=(8,), guide=guide, prior=prior, likelihood=likelihood,
              mixture_components=3, pseudo_inputs=4)
    vae.check_data(x)

    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    for name in ("z", "x"):  # stable site names, each in the one plate "data"
        assert [f.name for f in model_trace.nodes[name]["cond_indep_stack"]] == ["data"]
    assert model_trace.nodes["z"]["log_prob"].shape == (24,)
    assert model_trace.nodes["x"]["log_prob"].shape == (24,)
    assert guide_trace.nodes["z"]["value"].shape == (24, Z)

    before = {k: v.detach().clone() for k, v in vae.named_parameters()}
    history = fit(vae.model, vae.guide, x, epochs=1, batch_size=12)
    assert math.isfinite(history[-1]["train_loss"])
    changed = {k for k, v in vae.named_parameters() if not torch.equal(v, before[k])}
    # The networks of every part are trained, not just the encoder and decoder.
    assert {k.split(".")[0] for k in before} <= {k.split(".")[0] for k in changed}

    report = evaluation_report(vae.model, vae.guide, x, iw_samples=8)
    assert math.isfinite(report["nll"]) and math.isfinite(report["test_loss"])
    assert 0 <= report["active_units"] <= Z
    assert vae.generate(2).shape == (2,) + X_SHAPE
    assert vae.reconstruct(x[:2]).shape == (2,) + X_SHAPE


def test_a_user_written_guide_function_trains_and_evaluates():
    """Any function with the model's signature is a guide: here a Student-t family."""
    x = _data("bernoulli")
    vae = VAE(X_SHAPE, z_dim=Z, hidden=(8,))
    encoder = Encoder(X_SHAPE, 2 * Z, hidden=(8,))

    def guide(x):
        pyro.module("t_encoder", encoder)
        loc, log_scale = encoder(x).split(Z, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.StudentT(5.0, loc, log_scale.exp()).to_event(1))

    fit(vae.model, guide, x, epochs=2, batch_size=12)
    report = evaluation_report(vae.model, guide, x, iw_samples=8)
    assert math.isfinite(report["nll"]) and report["kl_per_dim"] is None


def test_iwae_objective_trains(mnist10k):
    x = torch.bernoulli(mnist10k.x_train[:64])
    vae = VAE(z_dim=4, hidden=(16,))
    elbo = make_elbo("IWAE", num_particles=4)  # --elbo IWAE --num-particles 4
    assert isinstance(elbo, IWAE) and elbo.num_particles == 4
    history = fit(vae.model, vae.guide, x, epochs=3, batch_size=32, elbo=elbo)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("prior, guide, likelihood", [("vamp", "iaf", "bernoulli"),
                                                      ("flow", "lowrank", "normal")])
def test_run_folder_round_trip(tmp_path, prior, guide, likelihood):
    config = VAEConfig(epochs=1, z_dim=4, hidden=(16,), prior=prior, guide=guide,
                         likelihood=likelihood, pseudo_inputs=6, batch_size=1000,
                         binarize="dynamic" if likelihood == "bernoulli" else "none",
                         out=str(tmp_path / "run"), device="cpu")
    model, _ = train(config)
    loaded, loaded_config = load_run(tmp_path / "run")
    assert loaded_config == config
    x = torch.rand(50, 1, 28, 28).round()
    model.eval()
    scores = []
    for m in (model, loaded):
        pyro.set_rng_seed(0)
        scores.append(elbo_terms(m.model, m.guide, x)["test_loss"])
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)


def test_cli_swaps_parts_and_reports_the_likelihood(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--prior", "mog", "--guide", "lowrank", "--likelihood",
                 "continuous-bernoulli", "--epochs", "1", "--z-dim", "4", "--hidden", "16",
                 "--batch-size", "1000", "--mixture-components", "3", "--out", out,
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", out, "--iw-samples", "5", "--num-images", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("test_loss", "recon", "kl", "num_images", "nll", "iw_samples", "bits_per_dim",
                "active_units", "kl_per_dim"):
        assert key in result
    assert result["num_images"] == 20 and result["iw_samples"] == 5
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (784 * math.log(2)))


@pytest.mark.parametrize("argv, message", [
    (["train", "--prior", "gaussian"], "prior: expected one of"),
    (["train", "--guide", "maf"], "guide: expected one of"),
    (["train", "--likelihood", "poisson"], "likelihood: expected one of"),
    (["train", "--pseudo-inputs", "0"], "pseudo_inputs: expected a positive integer"),
    (["train", "--normal-scale", "0"], "normal_scale: expected a positive number"),
])
def test_cli_rejects_bad_parts(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "config.json").exists()


def test_cli_evaluate_rejects_negative_iw_samples(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--iw-samples", "-1"]) == 2
    assert "iw_samples" in capsys.readouterr().err
