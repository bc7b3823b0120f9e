"""The VQ-VAE: sites and plate, the straight-through gradient, the EMA update in closed
form, dead-code restarts, the learnt prior, exact resume of the codebook, the command line."""

import json
import math

import numpy as np
import pytest
import torch

import pyro.poutine as poutine
from pyro.infer import Predictive, Trace_ELBO

from pyro_vae import TrainConfig
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.models import MODELS, VQVAE
from pyro_vae.models.vqvae import LAPLACE_EPS, UniformCodes, lookup, nearest, straight_through
from pyro_vae.train import prepare_data, train

K, D = 8, 4
TINY = ["--num-codes", "8", "--code-dim", "4", "--channels", "4,8", "--prior-width", "8",
        "--prior-layers", "1", "--batch-size", "16", "--quiet"]


def small(**kw):
    kw = {"num_codes": K, "code_dim": D, "channels": (4, 8), "prior_width": 8,
          "prior_layers": 1, **kw}
    return VQVAE((1, 6, 6), **kw)


def images(n=8, seed=0):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((64, 1, 6, 6), np.float32))
    return path


# ------------------------------------------------------------------ building
def test_sites_shapes_and_the_data_plate():
    model, x = small().eval(), images(5)  # eval: the trace leaves the codebook as it is
    assert MODELS["vqvae"] is VQVAE and model.grid == (2, 2)
    guide_trace = poutine.trace(model.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        z = trace.nodes["z"]
        assert z["value"].shape == (5, D, 2, 2) and z["fn"].event_shape == (D, 2, 2)
        assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    commitment = guide_trace.nodes["commitment"]
    assert commitment["fn"].batch_shape == (5,)
    assert [f.name for f in commitment["cond_indep_stack"]] == ["data"]
    assert model_trace.nodes["x"]["is_observed"]
    # the guide's value is the nearest code; the uniform prior's KL is h w log K
    codes = nearest(model.encoder(x), model.codebook)
    assert torch.allclose(guide_trace.nodes["z"]["value"], lookup(model.codebook, codes))
    assert model_trace.nodes["z"]["fn"].log_prob(z["value"]).tolist() == \
        pytest.approx([-4 * math.log(K)] * 5)
    draws = Predictive(model.model, num_samples=2)(num=3)
    assert draws["x"].shape == (2, 3, 1, 6, 6)


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="^decay: "):
        small(decay=1.0)
    with pytest.raises(ValueError, match="^num_codes: "):
        small(num_codes=1)
    with pytest.raises(ValueError, match="^prior: "):
        small(prior="gaussian")


# ------------------------------------------------------------------ the math
def test_straight_through_gradient_is_the_identity_on_the_encoder_output():
    z_e = torch.randn(3, D, 2, 2, requires_grad=True)
    z_q = torch.randn(3, D, 2, 2, requires_grad=True)
    out = straight_through(z_e, z_q)
    assert torch.equal(out, z_e + (z_q - z_e))  # the value of z_q, up to rounding
    weights = torch.randn(3, D, 2, 2)
    (grad_e,) = torch.autograd.grad((out * weights).sum(), z_e)
    assert torch.equal(grad_e, weights)  # d loss / d z_e = d loss / d z_q


def test_the_decoder_gradient_reaches_the_encoder_unchanged():
    """Through the whole ELBO: the encoder output's gradient from the likelihood is the
    gradient the decoder input receives (commitment off, to isolate that path)."""
    model, x = small(commitment=0.0).eval(), images(4)
    seen = {}

    def keep(name, tensor):  # records the gradient reaching ``tensor``; returns None
        tensor.register_hook(lambda g: seen.__setitem__(name, g))

    model.encoder.register_forward_hook(lambda m, i, out: keep("z_e", out))
    model.decoder.register_forward_pre_hook(lambda m, i: keep("z_q", i[0]))
    Trace_ELBO().differentiable_loss(model.model, model.guide, x).backward()
    assert torch.allclose(seen["z_e"], seen["z_q"])


def test_ema_update_equals_its_closed_form():
    model = small(decay=0.9, dead_after=0)
    count0, sum0 = model.ema_count.clone(), model.ema_sum.clone()
    z_e = torch.randn(2, D, 2, 2)
    idx = torch.tensor([[[0, 0], [1, 3]], [[3, 3], [3, 0]]])
    model.ema_update(z_e, idx)
    flat, flat_idx = z_e.movedim(1, -1).reshape(-1, D), idx.reshape(-1)
    n = torch.stack([(flat_idx == k).sum() for k in range(K)]).float()
    sums = torch.stack([flat[flat_idx == k].sum(0) for k in range(K)])
    count = 0.9 * count0 + 0.1 * n
    total = count.sum()
    smoothed = (count + LAPLACE_EPS) / (total + K * LAPLACE_EPS) * total
    assert torch.allclose(model.ema_count, count)
    assert torch.allclose(model.ema_sum, 0.9 * sum0 + 0.1 * sums)
    assert torch.allclose(model.codebook, (0.9 * sum0 + 0.1 * sums) / smoothed[:, None])
    assert model.idle.tolist() == [0, 0, 1, 0, 1, 1, 1, 1]


def test_dead_codes_restart_at_encoder_outputs():
    model = small(dead_after=3)
    z_e = torch.randn(2, D, 2, 2)
    idx = torch.zeros(2, 2, 2, dtype=torch.long)  # every cell on code 0
    for _ in range(2):
        model.ema_update(z_e, idx)
    assert model.idle.tolist() == [0] + [2] * (K - 1)
    model.ema_update(z_e, idx)  # the third idle step: codes 1..K-1 restart
    flat = z_e.movedim(1, -1).reshape(-1, D)
    for k in range(1, K):
        assert any(torch.equal(model.codebook[k], row) for row in flat)
        assert torch.equal(model.ema_sum[k], model.codebook[k]) and model.ema_count[k] == 1
    assert model.idle.tolist() == [0] * K


def test_only_training_steps_update_the_codebook():
    model, x = small(), images(4)
    before = model.codebook.clone()
    with torch.no_grad():
        model.guide(x)
    model.eval()
    model.guide(x)
    assert torch.equal(model.codebook, before)
    model.train()
    model.guide(x)
    assert not torch.equal(model.codebook, before)


# ------------------------------------------------------------------ the prior
def test_the_learnt_prior_is_causal_and_samples_codes():
    model = small()
    codes = torch.randint(K, (3, 4))
    changed = codes.clone()
    changed[:, 2] = (codes[:, 2] + 1) % K
    a, b = model.code_prior(codes), model.code_prior(changed)
    assert torch.allclose(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3], b[:, 3])
    assert model.sample_codes(5).shape == (5, 4) and model.generate(5).shape == (5, 1, 6, 6)
    assert model.generate(2, prior="uniform").shape == (2, 1, 6, 6)
    assert "code_prior.head.weight" not in dict(model.svi_parameters())
    assert list(small(prior="uniform").extra_steps(torch.optim.Adam)) == []


def test_fit_prior_lowers_the_code_nll_and_leaves_the_vq_vae_alone():
    model, x = small(), images(32)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("code_")}
    losses = model.fit_prior(x, epochs=5, batch_size=8, lr=1e-2)
    assert len(losses) == 5 and losses[-1] < losses[0] and model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="^epochs: "):
        model.fit_prior(x, epochs=-1)


def test_uniform_codes_sample_from_the_codebook():
    codebook = torch.randn(K, D)
    draws = UniformCodes(codebook, (2, 2)).expand((6,)).sample()
    assert draws.shape == (6, D, 2, 2)
    assert torch.equal(lookup(codebook, nearest(draws, codebook)), draws)


# ------------------------------------------------------------------ training
def config(out, npy, epochs, **kw):
    return TrainConfig.for_model("vqvae", data=str(npy), epochs=epochs, out=str(out),
                                 num_codes=K, code_dim=D, channels=(4, 8), prior_width=8,
                                 prior_layers=1, batch_size=16, dead_after=2, **kw)


def test_codebook_and_prior_resume_exactly(tmp_path, npy):
    _, history = train(config(tmp_path / "a", npy, 2))
    assert all(math.isfinite(row["prior_loss"]) for row in history)
    train(config(tmp_path / "b", npy, 1))
    train(config(tmp_path / "b", npy, 2), resume=True)
    a, b = (load_checkpoint(tmp_path / r / CHECKPOINT)["params"] for r in "ab")
    for name in ("codebook", "ema_count", "ema_sum", "idle"):
        assert torch.equal(a[name], b[name]), name
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_prior_phase_is_fit_prior_after_the_last_epoch(tmp_path, npy):
    _, history = train(config(tmp_path / "phase", npy, 1, prior_epochs=3))
    assert set(history[-1]) >= {"prior_phase_loss", "prior_phase_s"}
    plain, _ = train(config(tmp_path / "plain", npy, 1, prior_epochs=0))
    data = prepare_data(config(tmp_path / "plain", npy, 1))
    losses = plain.fit_prior(data.x_train, 3, batch_size=16, lr=1e-3, seed=0)
    assert history[-1]["prior_phase_loss"] == pytest.approx(losses[-1])
    saved = load_checkpoint(tmp_path / "phase" / CHECKPOINT)["params"]
    for name, value in plain.state_dict().items():
        assert torch.equal(saved[name], value), name


def test_no_prior_step_alongside_when_asked(tmp_path, npy):
    model, history = train(config(tmp_path / "a", npy, 1, prior_alongside=False, prior_epochs=0))
    assert "prior_loss" not in history[-1] and model.extra_steps(torch.optim.Adam) == {}
    assert load_checkpoint(tmp_path / "a" / CHECKPOINT)["extra_optim"] == {}


def test_early_stopping_with_a_prior_phase_is_refused(tmp_path, npy, capsys):
    assert main(["train", "--model", "vqvae", "--data", str(npy), "--epochs", "2",
                 "--val-fraction", "0.25", "--early-stopping", "1",
                 "--out", str(tmp_path / "es"), *TINY]) == 2
    assert "early_stopping: the prior's second phase" in capsys.readouterr().err
    assert not (tmp_path / "es").exists()


def test_train_evaluate_sample_from_the_shell(tmp_path, npy, capsys):
    run = tmp_path / "vq"
    assert main(["train", "--model", "vqvae", "--data", str(npy), "--epochs", "1",
                 "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kl"] == pytest.approx(4 * math.log(K), rel=1e-5)
    assert result["test_loss"] == pytest.approx(result["recon"] + result["kl"])
    assert 0 < result["codebook_usage"] <= 1 and 1 <= result["codebook_perplexity"] <= K
    assert result["mse"] > 0
    assert main(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 6, 6)
    assert main(["train", "--model", "vqvae", "--data", str(npy), "--decay", "1.5",
                 "--out", str(tmp_path / "bad"), *TINY]) == 2
