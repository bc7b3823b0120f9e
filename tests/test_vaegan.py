"""The VAE-GAN: sites and plate, the feature likelihood's closed form, which step moves
which parameters, a falling loss, exact resume of the discriminator, the command line."""

import json
import math

import numpy as np
import pytest
import torch

import pyro.poutine as poutine
from pyro.infer import Trace_ELBO

from pyro_vae import TrainConfig, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.models import MODELS, VAEGAN
from pyro_vae.steps import FusedStep, torch_optimizer
from pyro_vae.train import train

SHAPE = (1, 8, 8)
FLAGS = ["--z-dim", "3", "--hidden", "16", "--disc-channels", "4,8", "--batch-size", "16",
         "--quiet"]


def small(**kw):
    return VAEGAN(SHAPE, **{"z_dim": 3, "hidden": (16,), "disc_channels": (4, 8), **kw})


def images(n=8, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).bernoulli()


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((64, *SHAPE), np.float32).round())
    return path


def snapshot(params):
    return {n: p.detach().clone() for n, p in params}


def moved(before, params):
    return {n for n, p in params if not torch.equal(before[n], p.detach())}


# ------------------------------------------------------------------ building
def test_sites_shapes_and_the_data_plate():
    model, x = small(), images(5)
    assert MODELS["vaegan"] is VAEGAN
    guide_trace = poutine.trace(model.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    for name in ("z", "x", "gan"):
        site = model_trace.nodes[name]
        assert [f.name for f in site["cond_indep_stack"]] == ["data"], name
        assert site["fn"].batch_shape == (5,), name
    assert model_trace.nodes["x"]["fn"].event_shape == SHAPE
    with torch.no_grad():  # evaluation: the feature-likelihood VAE alone
        assert "gan" not in poutine.trace(model.model).get_trace(x).nodes
    assert model.model(num=4).shape == (4, *SHAPE)


def test_the_feature_log_prob_is_the_gaussian_closed_form():
    model, x = small(feature_scale=0.7, pixel_weight=0.0, feature_weight=2.0), images(4)
    params = model.decoder(torch.randn(4, 3))
    f_x, _ = model.discriminator(x)
    f_rec, _ = model.discriminator(torch.sigmoid(params.squeeze(1)))
    sigma = 0.7
    closed = (-(f_x - f_rec) ** 2 / (2 * sigma ** 2) - math.log(sigma)
              - 0.5 * math.log(2 * math.pi)).sum(-1)
    got = model.likelihood(params).log_prob(x)
    assert torch.allclose(got, 2.0 * closed, atol=1e-4)
    mixed = small(feature_scale=0.7, pixel_weight=0.5)
    mixed.load_state_dict(model.state_dict())
    bernoulli = torch.distributions.Bernoulli(logits=params.squeeze(1)).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(mixed.likelihood(params).log_prob(x), closed + 0.5 * bernoulli,
                          atol=1e-4)


@pytest.mark.parametrize("flag, value", [("real_label", 1.5), ("gan_weight", 0.0),
                                         ("disc_lr_scale", -1.0), ("feature_scale", 0.0),
                                         ("pixel_weight", -1.0)])
def test_bad_arguments_name_the_flag(flag, value):
    with pytest.raises(ValueError, match=flag):
        small(**{flag: value})


# ------------------------------------------------------- who moves what
def test_each_step_moves_only_its_own_parameters():
    model, x = small(disc_floor=0.0), images(8)
    disc = {n for n, _ in model.named_parameters() if n.startswith("discriminator.")}
    assert disc and not disc & {n for n, _ in model.svi_parameters()}
    step = FusedStep(model.model, model.guide, Trace_ELBO(),
                     optimizer=torch_optimizer("adam", 1e-2))
    before = snapshot(model.named_parameters())
    step(x)
    svi_moved = moved(before, model.named_parameters())
    assert svi_moved and not svi_moved & disc
    d_step = model.extra_steps(torch_optimizer("adam", 1e-2))["discriminator"]
    assert d_step.lr == pytest.approx(1e-2 * model.disc_lr_scale)
    before = snapshot(model.named_parameters())
    assert math.isfinite(d_step(x))
    assert moved(before, model.named_parameters()) == disc


def test_the_discriminator_skips_its_update_while_it_wins_clearly():
    model, x = small(disc_floor=100.0), images(8)
    d_step = model.extra_steps(torch_optimizer("adam", 1e-2))["discriminator"]
    before = snapshot(model.named_parameters())
    assert math.isfinite(d_step(x)) and not moved(before, model.named_parameters())


def test_the_r1_penalty_is_half_gamma_times_the_mean_squared_input_gradient():
    model, x = small(disc_penalty=0.0), images(8)
    penalised = small(disc_penalty=4.0)
    penalised.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    plain = model.discriminator_loss(x)
    torch.manual_seed(1)
    total = penalised.discriminator_loss(x)
    real = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(model.discriminator(real)[1].sum(), real)
    by_hand = 4.0 / 2 * grad.pow(2).sum((1, 2, 3)).mean()
    assert by_hand > 0
    assert (total - plain).item() == pytest.approx(by_hand.item(), rel=1e-5)
    with torch.no_grad():  # the floor's check: the cross-entropy alone
        torch.manual_seed(1)
        assert penalised.discriminator_loss(x).item() == pytest.approx(plain.item(), rel=1e-6)
    penalised.discriminator_loss(x).backward()  # differentiable twice: D's step can use it
    assert all(p.grad is not None for p in penalised.discriminator.parameters())


def test_spectral_norm_gives_each_discriminator_layer_unit_largest_singular_value():
    model = small(disc_norm="spectral", disc_channels=(4, 8))
    for _ in range(30):  # power iterations run in training forwards
        model.discriminator(images(4))
    layers = [m for m in model.discriminator.modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 3
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="disc_norm"):
        small(disc_norm="batch")
    with pytest.raises(ValueError, match="disc_penalty"):
        small(disc_penalty=-1.0)


def test_losses_are_finite_and_the_loss_falls():
    model = small()
    x = images(4).repeat(16, 1, 1, 1)  # four patterns: learnable in a few steps

    def pixel_loss():
        return torch.nn.functional.binary_cross_entropy(model.reconstruct(x), x).item()

    start = pixel_loss()
    history = fit(model.model, model.guide, x, epochs=8, batch_size=16, lr=1e-2)
    assert all(math.isfinite(v) for row in history for k, v in row.items() if k.endswith("loss"))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert pixel_loss() < start


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("disc", [{}, {"disc_norm": "spectral", "disc_penalty": 1.0}],
                         ids=["plain", "spectral-r1"])
def test_resume_restores_the_discriminator_and_its_optimiser_exactly(tmp_path, npy, disc):
    def config(out, epochs):
        return TrainConfig.for_model("vaegan", data=str(npy), epochs=epochs, out=str(out),
                                     z_dim=3, hidden=(16,), disc_channels=(4, 8),
                                     batch_size=16, disc_floor=0.0, **disc)

    train(config(tmp_path / "a", 2))
    train(config(tmp_path / "b", 1))
    train(config(tmp_path / "b", 2), resume=True)
    a, b = (load_checkpoint(tmp_path / r / CHECKPOINT) for r in "ab")
    assert any(k.startswith("discriminator.") for k in a["params"])
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    sa, sb = (s["extra_optim"]["discriminator"]["state"] for s in (a, b))
    assert sa.keys() == sb.keys() and all(
        torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


# ---------------------------------------------------------------------- CLI
def test_train_evaluate_sample_from_the_shell(tmp_path, npy, capsys):
    run = tmp_path / "vg"
    assert main(["train", "--model", "vaegan", "--data", str(npy), "--epochs", "1",
                 "--out", str(run), *FLAGS]) == 0
    assert json.loads((run / "config.json").read_text())["disc_channels"] == [4, 8]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_loss"] == pytest.approx(result["recon"] + result["kl"])
    assert main(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, *SHAPE)
