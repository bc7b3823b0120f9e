"""The model protocol: scopes in the param store, generative mode, injected networks,
data preparation, and what every model declares."""

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

import pyro
import pyro.poutine as poutine
from pyro.infer import Predictive

from pyro_vae import CVAE, M2, MODELS, VAE, VAEConfig, fit, load_run, train
from pyro_vae.infer import make_elbo
from pyro_vae.models import Model, model_class, model_defaults, register_model
from pyro_vae.steps import FusedStep

X_SHAPE = (1, 6, 5)


def _x(n=32, seed=0):
    return torch.bernoulli(torch.rand((n,) + X_SHAPE, generator=torch.Generator().manual_seed(seed)))


def _y(n=32):
    return torch.arange(n) % 3


# ----------------------------------------------------------------- one scope per model
def test_two_models_train_side_by_side():
    """Interleaved steps of two VAEs of different z-dim in one param store: both learn."""
    a, b = VAE(X_SHAPE, z_dim=2, hidden=(16,)), VAE(X_SHAPE, z_dim=5, hidden=(16,))
    assert a.name != b.name
    x = _x()
    elbo = make_elbo("Trace_ELBO", num_particles=4)
    steps = {m.name: FusedStep(m.model, m.guide, elbo, lr=0.02) for m in (a, b)}
    losses = {m.name: [] for m in (a, b)}
    for _ in range(60):
        for m in (a, b):
            losses[m.name].append(steps[m.name](x))
    for name, curve in losses.items():
        assert np.mean(curve[-10:]) < np.mean(curve[:10]) - 2, name
    # each model's parameters are in the store under its own name, and only there
    store = pyro.get_param_store()
    for m in (a, b):
        mine = {k for k in store.keys() if k.startswith(m.name + ".")}
        assert {m.param_name(k) for k in mine} == {n for n, _ in m.named_parameters()}


def test_explicit_names_are_unique_and_used():
    vae = VAE(X_SHAPE, z_dim=2, hidden=(4,), name="first")
    poutine.trace(vae.model).get_trace(_x(2))
    assert all(k.startswith("first.") for k in pyro.get_param_store().keys())
    with pytest.raises(ValueError, match="^name: 'first' is already used"):
        VAE(X_SHAPE, z_dim=2, hidden=(4,), name="first")


def test_a_loaded_run_fine_tunes_after_another_run(tmp_path, idx_folder):
    data = idx_folder()
    common = dict(data="mnist-10k", data_dir=str(data), z_dim=2, hidden=(16,), epochs=1,
                  batch_size=16, binarize="dynamic")
    train(VAEConfig(out=str(tmp_path / "a"), **common))
    train(VAEConfig(out=str(tmp_path / "b"), seed=1, **common))  # no clear_param_store
    vae, _ = load_run(tmp_path / "a")
    vae.train()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(3)).bernoulli()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    history = fit(vae.model, vae.guide, x, epochs=3, batch_size=16, lr=0.01)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert any(not torch.equal(before[k], v) for k, v in vae.state_dict().items())


def test_checkpoints_do_not_depend_on_the_instance_name(tmp_path):
    x = _x()
    first = VAE(X_SHAPE, z_dim=2, hidden=(8,), name="one")
    fit(first.model, first.guide, x, epochs=1, batch_size=8, run_dir=tmp_path)
    second = VAE(X_SHAPE, z_dim=2, hidden=(8,), name="two")
    history = fit(second.model, second.guide, x, epochs=2, batch_size=8, run_dir=tmp_path,
                  resume=True)
    assert [row["epoch"] for row in history] == [1, 2]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state["params"]) == set(second.state_dict())  # buffers included, no scope


# --------------------------------------------------------------------- generative mode
def test_prior_predictive_without_data():
    vae = VAE(X_SHAPE, z_dim=2, hidden=(8,))
    draws = Predictive(vae.model, num_samples=5)()
    assert draws["x"].shape == (5, 1) + X_SHAPE and draws["z"].shape == (5, 1, 2)
    assert set(draws["x"].unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws, not means
    assert vae.model(num=7).shape == (7,) + X_SHAPE


def test_cvae_model_draws_images_of_the_asked_classes():
    cvae = CVAE(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,))
    y = torch.tensor([2, 0, 1, 2])
    draws = Predictive(cvae.model, num_samples=6)(None, y)
    assert draws["x"].shape == (6, 4) + X_SHAPE
    assert torch.equal(draws["y"], y.expand(6, 4))
    # z comes from p(z | y): the class's own Gaussian
    z = draws["z"].reshape(-1, 2)
    labels = y.repeat(6)
    assert cvae.prior(labels).log_prob(z).mean() > cvae.prior(2 - labels).log_prob(z).mean()


def test_posterior_predictive_fresh_draws_with_uncondition():
    vae, x = VAE(X_SHAPE, z_dim=2, hidden=(8,)), _x(4)
    observed = Predictive(vae.model, guide=vae.guide, num_samples=3, return_sites=["x"])(x)
    assert torch.equal(observed["x"], x.expand(3, *x.shape))
    fresh = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=3,
                       return_sites=["x"])(x)
    assert fresh["x"].shape == (3, 4) + X_SHAPE and not torch.equal(fresh["x"][0], x)


def test_one_signature_for_the_utilities():
    for model, y in ((VAE(X_SHAPE, z_dim=2, hidden=(8,)), None),
                     (CVAE(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,)), 1),
                     (M2(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,)), 1)):
        x = _x(4)
        z = model.encode(x, y)
        assert z.shape == (4, 2)
        assert model.decode(z, y).shape == x.shape
        assert model.reconstruct(x, y).shape == x.shape
        assert model.generate(5, y).shape == (5,) + X_SHAPE


# ------------------------------------------------------------------ networks as parts
class TinyEncoder(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(30, out))

    def forward(self, x):
        return self.net(x)


class TinyDecoder(nn.Module):
    def __init__(self, z_dim):
        super().__init__()
        self.net = nn.Linear(z_dim, 30)

    def forward(self, z):
        return self.net(z).reshape(z.shape[:-1] + (1,) + X_SHAPE)


def test_injected_networks_are_used_and_trained():
    encoder, decoder = TinyEncoder(4), TinyDecoder(2)
    vae = VAE(X_SHAPE, z_dim=2, encoder=encoder, decoder=decoder)
    assert vae.encoder is encoder and vae.decoder is decoder
    before = decoder.net.weight.detach().clone()
    history = fit(vae.model, vae.guide, _x(), epochs=2, batch_size=8, lr=0.01)
    assert math.isfinite(history[-1]["train_loss"])
    assert not torch.equal(before, decoder.net.weight)


def test_injected_networks_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"^encoder: expected an output of shape \[2, 4\], "
                                         r"got \[2, 3\]$"):
        VAE(X_SHAPE, z_dim=2, encoder=TinyEncoder(3))
    with pytest.raises(ValueError, match=r"^decoder: calling it on a batch of shape \[2, 3\]"):
        VAE(X_SHAPE, z_dim=3, decoder=TinyDecoder(2))


@pytest.mark.parametrize("cls", [VAE, CVAE, M2])
def test_conv_networks_for_every_model(cls):
    model = cls((1, 9, 7), z_dim=2, net="conv", hidden=(16,))
    x = torch.rand(6, 1, 9, 7).bernoulli()
    data = (x, torch.arange(6) % 2) if model.uses_labels else x
    history = fit(model.model, model.guide, data, epochs=1, batch_size=3)
    assert math.isfinite(history[-1]["train_loss"])
    assert model.generate(2, 0 if model.uses_labels else None).shape == (2, 1, 9, 7)


def test_discretised_logistic_reports_bits_per_dim_on_8bit_data():
    from pyro_vae.evaluate import evaluation_report

    # 8-bit pixels spread over 16 levels around mid-grey: 4 bits of entropy per pixel
    x = torch.randint(120, 136, (64,) + X_SHAPE, generator=torch.Generator().manual_seed(0))
    x = x.float() / 255
    vae = VAE(X_SHAPE, z_dim=2, hidden=(16,), likelihood="dlogistic")
    before = evaluation_report(vae.model, vae.guide, x, iw_samples=4)["bits_per_dim"]
    fit(vae.model, vae.guide, x, epochs=40, batch_size=16, lr=0.01)
    report = evaluation_report(vae.model, vae.guide, x, iw_samples=4)
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (30 * math.log(2)))
    # below the 8 bits of a uniform over 256 levels, and far below the untrained model
    assert report["bits_per_dim"] < 6 < before


# ---------------------------------------------------------- bad input before any step
def test_numpy_float64_images_are_cast_with_a_note(caplog):
    vae = VAE(X_SHAPE, z_dim=2, hidden=(8,))
    x = _x().numpy().astype(np.float64)
    with caplog.at_level(logging.INFO, logger="pyro_vae.infer"):
        history = fit(vae.model, vae.guide, x, epochs=1, batch_size=8)
    assert math.isfinite(history[-1]["train_loss"])
    assert "data: torch.float64 images cast to torch.float32" in caplog.text


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16])
def test_labels_of_any_integer_dtype(dtype):
    cvae = CVAE(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,))
    history = fit(cvae.model, cvae.guide, (_x(), _y().to(dtype)), epochs=1, batch_size=8)
    assert math.isfinite(history[-1]["train_loss"])


def test_float_labels_are_refused_in_one_line():
    cvae = CVAE(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,))
    with pytest.raises(TypeError, match=r"^data labels: expected an integer tensor, got torch.float32$"):
        fit(cvae.model, cvae.guide, (_x(), _y().float()), epochs=1)


def test_m2_through_fit_gets_its_own_elbo_and_batching():
    m2 = M2(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,))
    y = _y()
    y[6:] = -1  # six labels, the rest unlabelled
    history = fit(m2.model, m2.guide, (_x(), y), epochs=2, batch_size=8)
    assert math.isfinite(history[-1]["train_loss"])
    with pytest.raises(ValueError, match=r"^elbo: M2 enumerates its label and needs TraceEnum_ELBO"):
        fit(m2.model, m2.guide, (_x(), y), epochs=1, elbo="Trace_ELBO")


# ------------------------------------------------------------- declarations, registry
def test_models_declare_what_the_runner_needs():
    assert (VAE.uses_labels, CVAE.uses_labels, M2.uses_labels) == (False, True, True)
    assert M2.semi_supervised and not CVAE.semi_supervised
    assert (VAE.elbo, M2.elbo) == ("Trace_ELBO", "TraceEnum_ELBO")
    assert M2.classifies and not CVAE.classifies
    assert {cls.data_kind for cls in MODELS.values()} == {"image", "text"}
    assert model_defaults(CVAE)["prior"] == "class" and model_defaults(M2)["prior"] == "normal"
    assert model_defaults(CVAE)["z_dim"] == 50


class StudentT(VAE):
    """A VAE registered from a test, as a user would."""


def test_register_model_and_import_path():
    register_model("student-test", StudentT)
    assert model_class("student-test") is StudentT
    assert model_class("pyro_vae.models.cvae:CVAE") is CVAE
    with pytest.raises(ValueError, match="^model: cannot import"):
        model_class("no_such_module:Nothing")
    with pytest.raises(TypeError, match="subclass of pyro_vae.models.Model"):
        register_model("bad", dict)
    assert issubclass(StudentT, Model)
    del MODELS["student-test"], MODELS["pyro_vae.models.cvae:CVAE"]
