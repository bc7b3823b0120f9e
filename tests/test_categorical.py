"""The categorical VAE: sites, the three estimators and the two KL terms of the
relaxed ones, the exact discrete evaluation, the temperature schedule and its resume,
the command line."""

import json
import math

import numpy as np
import pytest
import torch

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import Predictive, Trace_ELBO

from pyro_vae import TrainConfig, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood
from pyro_vae.models import MODELS, CategoricalVAE
from pyro_vae.models.categorical import LOG_PROB_FLOOR, StraightThrough, traverse_categorical
from pyro_vae.runs import Run
from pyro_vae.train import train

N, K = 3, 4
TINY = ["--num-latents", "3", "--num-categories", "4", "--hidden", "16", "--batch-size", "16",
        "--quiet"]


def small(**kw):
    kw = {"num_latents": N, "num_categories": K, "hidden": (16,), **kw}
    return CategoricalVAE((1, 6, 6), **kw)


def images(n=8, seed=0):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed)).bernoulli()


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((80, 1, 6, 6), np.float32).round())
    return path


# ------------------------------------------------------------------ building
@pytest.mark.parametrize("estimator", ["relaxed", "straight-through", "score-function"])
def test_sites_shapes_and_the_data_plate(estimator):
    model, x = small(estimator=estimator), images(5)
    guide_trace = poutine.trace(model.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        z = trace.nodes["z"]
        assert z["value"].shape == (5, N, K) and z["fn"].event_shape == (N, K)
        assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    x_site = model_trace.nodes["x"]
    assert x_site["is_observed"] and x_site["fn"].batch_shape == (5,)
    assert model.elbo == ("TraceGraph_ELBO" if estimator == "score-function" else "Trace_ELBO")
    draws = Predictive(model.model, num_samples=2)(num=3)
    assert draws["x"].shape == (2, 3, 1, 6, 6) and MODELS["categorical"] is CategoricalVAE


def test_encode_decode_generate_reconstruct_and_traverse():
    model, x = small().eval(), images(4)
    probs = model.encode(x)
    assert probs.shape == (4, N, K) and torch.allclose(probs.sum(-1), torch.ones(4, N))
    assert model.generate(7).shape == (7, 1, 6, 6) and model.reconstruct(x).shape == x.shape
    rows = traverse_categorical(model, x, 1)
    assert rows.shape == (4, K, 1, 6, 6)
    code = model.one_hot_mode(x)
    code[:, 1] = torch.nn.functional.one_hot(torch.tensor(2), K).float()
    assert torch.allclose(rows[:, 2], model.decode(code))
    with pytest.raises(ValueError, match=r"^n: expected a latent in \[0, 3\), got 3$"):
        model.traverse_categorical(x, 3)


@pytest.mark.parametrize("kw, message", [
    (dict(estimator="rebar"), "estimator: expected one of"),
    (dict(temperature=0.5, temperature_min=1.0), "temperature_min: expected 0 < temperature_min"),
    (dict(num_categories=1), "num_categories: expected an integer >= 2, got 1"),
    (dict(temperature_min=0.1), "temperature_min: relaxed draws underflow in float32 below 0.4"),
    (dict(kl="exact"), r"kl: expected one of \['discrete', 'relaxed'\], got 'exact'"),
    (dict(estimator="score-function", kl="relaxed"),
     "kl: --estimator score-function trains the discrete model, whose KL is exact"),
])
def test_bad_arguments_name_themselves(kw, message):
    with pytest.raises(ValueError, match=message):
        small(**kw)


# ---------------------------------------------------------------- estimators
def test_relaxed_draws_approach_one_hot_as_the_temperature_falls():
    model, x = small(), images(64)
    peaks = []
    for tau in (5.0, 1.0, 0.1, 0.001):
        model.temperature = tau
        peaks.append(model.posterior(x).rsample().max(-1).values.mean().item())
    assert peaks == sorted(peaks) and peaks[0] < 0.5 and peaks[-1] > 0.99


def test_straight_through_draws_are_one_hot_and_pass_gradients_to_the_logits():
    model, x = small(estimator="straight-through"), images(16)
    logits = model.logits(x)
    logits.retain_grad()
    z = model.code_dist(logits).rsample()
    assert set(z.unique().tolist()) == {0.0, 1.0} and torch.equal(z.sum(-1), torch.ones(16, N))
    (z * torch.randn(K)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_straight_through_scores_the_relaxed_draw_itself():
    """Pyro's class would score a clamped copy of the draw, where log p - log q of a
    confident q is large and positive, an estimate of -KL that training exploits."""
    logits = torch.full((500, N, K), LOG_PROB_FLOOR)
    logits[..., 0] = 0.0
    tau = torch.tensor(0.5)
    torch.manual_seed(1)
    hard = StraightThrough(tau, logits=logits).rsample()
    torch.manual_seed(1)
    soft = dist.RelaxedOneHotCategorical(tau, logits=logits).rsample()
    assert torch.equal(hard._unquantize, soft)
    q, p = StraightThrough(tau, logits=logits), StraightThrough(tau, logits=torch.zeros(K))
    assert (p.log_prob(hard) - q.log_prob(hard)).mean() < 0


def test_eval_mode_kl_is_the_exact_categorical_kl():
    """sum_n KL(q_n || Uniform(K)) = sum_n (log K + sum_k q_nk log q_nk), per image."""
    model, x = small().eval(), images(6)
    q = model.encode(x)
    exact = (math.log(K) + (q * q.log()).sum(-1)).sum(-1).mean().item()
    assert elbo_terms(model.model, model.guide, x)["kl"] == pytest.approx(exact, rel=1e-5)
    # The same under no_grad in training mode, as the per-epoch evaluation runs it.
    model.train()
    assert elbo_terms(model.model, model.guide, x)["kl"] == pytest.approx(exact, rel=1e-5)
    assert model.relaxed and not model.eval().relaxed


def test_importance_weighted_bound_is_above_the_elbo():
    model, x = small().eval(), images(64)
    # The decoder's recon term is a one-sample estimate: average 20 of them.
    neg_elbo = np.mean([elbo_terms(model.model, model.guide, x)["test_loss"] for _ in range(20)])
    nll = -iw_log_likelihood(model.model, model.guide, x, num_samples=200).mean().item()
    assert nll <= neg_elbo


@pytest.mark.parametrize("estimator", ["relaxed", "straight-through", "score-function"])
def test_loss_falls_with_each_estimator(mnist10k, estimator):
    model = CategoricalVAE(num_latents=10, num_categories=4, hidden=(64,), estimator=estimator)
    history = fit(model.model, model.guide, mnist10k.x_train[:256].bernoulli(), epochs=4,
                  batch_size=32, lr=3e-3, progress=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 20


# ---------------------------------------------------------------- KL terms
def one_batch_loss(model, x, seed=2):
    """The training loss of one batch per image, as an SVI step computes it (Trace_ELBO
    under autograd, training mode), with the draw of ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return Trace_ELBO().differentiable_loss(model.model, model.guide, x).item() / len(x)


def by_hand(model, x, seed=2):
    """The same draw outside Pyro: ``logits``, the relaxed (or straight-through) ``z``
    and ``log p(x | z)``, each per image."""
    torch.manual_seed(seed)
    logits = model.logits(x)
    z = model.code_dist(logits).rsample()
    return logits, z, model.likelihood(model.decoder(z.flatten(-2))).log_prob(x)


@pytest.mark.parametrize("estimator", ["relaxed", "straight-through"])
def test_discrete_kl_loss_is_recon_of_the_relaxed_draw_plus_the_exact_kl(estimator):
    """Jang et al.'s surrogate: -E_q_tau[log p(x | z)] + sum_n (log K + sum_k q log q)."""
    model, x = small(estimator=estimator), images(16)
    model.temperature = 0.7
    assert model.kl == "discrete" and model.surrogate
    logits, _, recon = by_hand(model, x)
    q = logits.exp()
    kl = (math.log(K) + (q * logits).sum(-1)).sum(-1)
    assert one_batch_loss(model, x) == pytest.approx((kl - recon).mean().item(), rel=1e-5)
    trace = poutine.trace(model.guide).get_trace(x)
    assert trace.nodes["z"]["mask"] is False and trace.nodes["kl"]["infer"]["is_auxiliary"]
    assert [f.name for f in trace.nodes["kl"]["cond_indep_stack"]] == ["data"]


@pytest.mark.parametrize("estimator", ["relaxed", "straight-through"])
def test_relaxed_kl_loss_is_the_relaxed_models_elbo(estimator):
    """-E_q_tau[log p(x | z) + log p_tau(z) - log q_tau(z | x)], no factor, nothing masked."""
    model, x = small(estimator=estimator, kl="relaxed"), images(16)
    model.temperature = 0.7
    logits, z, recon = by_hand(model, x)
    log_q, log_p = model.code_dist(logits).log_prob(z), model.prior().log_prob(z)
    assert one_batch_loss(model, x) == pytest.approx(
        -(recon + log_p - log_q).mean().item(), rel=1e-5)
    trace = poutine.trace(model.guide).get_trace(x)
    assert "kl" not in trace.nodes and trace.nodes["z"]["mask"] is None


def test_evaluation_ignores_the_kl_term_of_training():
    """Both KL terms train the same discrete model; its -ELBO is scored the same way."""
    x = images(16)
    scores = []
    for kl in ("discrete", "relaxed"):
        pyro.set_rng_seed(0)
        model = small(kl=kl)
        assert not model.eval().surrogate
        torch.manual_seed(1)
        scores.append(elbo_terms(model.model, model.guide, x))
    assert scores[0] == scores[1]
    pyro.set_rng_seed(0)
    model = small().eval()
    assert iw_log_likelihood(model.model, model.guide, x, 4).isfinite().all()


@pytest.mark.parametrize("baseline", ["nn", "average", "none"])
def test_score_function_sets_its_baseline_on_the_site(baseline):
    model, x = small(estimator="score-function", baseline=baseline), images(16)
    site = poutine.trace(model.guide).get_trace(x).nodes["z"]
    assert (baseline == "none") == ("baseline" not in site["infer"])
    history = fit(model.model, model.guide, x, epochs=2, batch_size=8, progress=False)
    assert all(math.isfinite(row["train_loss"]) for row in history)


def test_score_function_refuses_another_elbo(tmp_path, npy, capsys):
    model = small(estimator="score-function")
    with pytest.raises(ValueError, match="elbo: --estimator score-function trains with "
                                         "TraceGraph_ELBO"):
        fit(model.model, model.guide, images(8), elbo="Trace_ELBO", epochs=1)
    argv = ["train", "--model", "categorical", "--data", str(npy), "--estimator",
            "score-function", "--elbo", "Trace_ELBO", "--out", str(tmp_path / "r"), *TINY]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == ["pyro-vae: error: elbo: --estimator score-function trains with "
                      "TraceGraph_ELBO (or auto), got Trace_ELBO"]


# ------------------------------------------------------------------ schedule
def test_the_schedule_lowers_the_temperature_and_resumes_exactly(tmp_path, npy):
    def config(out, epochs):
        return TrainConfig.for_model("categorical", data=str(npy), epochs=epochs, out=str(out),
                                     num_latents=N, num_categories=K, hidden=(16,),
                                     batch_size=16, temperature_rate=0.3)

    model, history = train(config(tmp_path / "a", 3))
    taus = [row["temperature"] for row in history]
    assert taus == [pytest.approx(max(0.5, math.exp(-0.3 * e))) for e in (1, 2, 3)]
    assert taus[0] > taus[1] > taus[2] == model.temperature_min
    train(config(tmp_path / "b", 1))
    _, resumed = train(config(tmp_path / "b", 3), resume=True)
    a, b = (load_checkpoint(tmp_path / r / CHECKPOINT) for r in "ab")
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert [r["temperature"] for r in resumed] == taus


# ---------------------------------------------------------------------- CLI
def test_train_evaluate_sample_reconstruct_from_the_shell(tmp_path, npy, capsys):
    run = tmp_path / "cat"
    assert main(["train", "--model", "categorical", "--data", str(npy), "--epochs", "1",
                 "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_loss"] == pytest.approx(result["recon"] + result["kl"])
    assert 0 <= result["kl"] <= N * math.log(K) and math.isfinite(result["nll"])
    assert main(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 6, 6)
    assert main(["reconstruct", str(run), "--num", "4", "--out", str(tmp_path / "r.png")]) == 0


def test_the_kl_flag_round_trips_and_score_function_refuses_relaxed(tmp_path, npy, capsys):
    run = tmp_path / "kl"
    assert main(["train", "--model", "categorical", "--data", str(npy), "--epochs", "1",
                 "--kl", "relaxed", "--out", str(run), *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["kl"] == "relaxed"
    loaded = Run.load(run)
    assert loaded.config.kl == loaded.model.kl == "relaxed"
    capsys.readouterr()
    argv = ["train", "--model", "categorical", "--data", str(npy), "--estimator",
            "score-function", "--kl", "relaxed", "--out", str(tmp_path / "sf"), *TINY]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == ["pyro-vae: error: kl: --estimator score-function trains the discrete "
                      "model, whose KL is exact; --kl relaxed applies to the relaxed "
                      "estimators only"]
