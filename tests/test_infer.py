"""The SVI runner: any Pyro model/guide pair, run folders, resume, bad arguments."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_vae import fit
from pyro_vae.infer import make_elbo, resolve_device


def conjugate_model(x):
    """mu ~ N(0, 1); x_i ~ N(mu, 1): the posterior is N(sum x / (n + 1), 1 / (n + 1))."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0], subsample_size=x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def conjugate_guide(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("mu", dist.Normal(loc, scale))


def test_fit_trains_a_user_written_pair():
    x = torch.randn(50) + 3.0
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.996})  # decays to lr ~ 5e-4
    fit(conjugate_model, conjugate_guide, x, epochs=1200, batch_size=50, optim=optim,
        elbo=pyro.infer.TraceMeanField_ELBO(num_particles=4, vectorize_particles=True))
    n = len(x)
    assert abs(pyro.param("loc").item() - x.sum().item() / (n + 1)) < 0.05
    assert abs(pyro.param("scale").item() - 1 / math.sqrt(n + 1)) < 0.03


def test_fit_passes_every_tensor_of_a_tuple():
    seen = []

    def model(x, y):
        seen.append((x.shape, y.shape, bool((x[:, 0] == y).all())))
        pyro.param("w", torch.zeros(()))

    x = torch.arange(10.0).unsqueeze(1).repeat(1, 3)
    fit(model, lambda x, y: None, (x, torch.arange(10.0)), epochs=1, batch_size=4)
    assert [s[0][0] for s in seen] == [4, 4, 2] and all(s[2] for s in seen)


def test_run_folder_and_resume(tmp_path):
    x = torch.randn(40) + 1.0
    kw = dict(epochs=3, batch_size=8, run_dir=tmp_path, elbo="Trace_ELBO")
    full = fit(conjugate_model, conjugate_guide, x, **kw)
    final = pyro.param("loc").item()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "epoch_s", "images_per_s"} <= set(rows[0])

    pyro.clear_param_store()
    fit(conjugate_model, conjugate_guide, x, **dict(kw, epochs=2, run_dir=tmp_path / "b"))
    pyro.clear_param_store()
    resumed = fit(conjugate_model, conjugate_guide, x, resume=True, **dict(kw, run_dir=tmp_path / "b"))
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert math.isclose(pyro.param("loc").item(), final, rel_tol=1e-6)
    assert math.isclose(resumed[-1]["train_loss"], full[-1]["train_loss"], rel_tol=1e-6)


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"), (dict(epochs=-1), "epochs"),
    (dict(elbo="ELBO9"), r"elbo: expected one of .*Trace_ELBO"),
    (dict(checkpoint_every=0), "checkpoint_every"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(conjugate_model, conjugate_guide, torch.randn(5), **kw)


def test_data_must_share_first_dimension():
    with pytest.raises(ValueError, match="first dimension"):
        fit(conjugate_model, conjugate_guide, (torch.randn(5), torch.randn(4)))


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_loss_stops_with_epoch_and_step():
    pyro.enable_validation(False)  # let the NaN reach the loss instead of a distribution check

    def model(x):
        pyro.param("w", torch.zeros(()))
        pyro.factor("bad", torch.tensor(float("nan")))

    with pytest.raises(FloatingPointError, match="epoch 1, step 1 of 2"):
        fit(model, lambda x: None, torch.randn(4), epochs=1, batch_size=2)


def test_make_elbo_and_device():
    assert make_elbo("TraceEnum_ELBO").max_plate_nesting == 1
    elbo = pyro.infer.Trace_ELBO()
    assert make_elbo(elbo) is elbo
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")
