"""The class-conditional VAE: sites, shapes, conditioning, samples of a requested class."""

import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import SVI, Trace_ELBO

from pyro_vae import CVAE, MODELS, elbo_terms


def traces(model, x, y):
    guide_trace = poutine.trace(model.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, y)
    return guide_trace, model_trace


def test_sites_and_shapes():
    cvae = CVAE((1, 6, 6), num_classes=4, z_dim=3, hidden=(8,))
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 3, 0])
    guide_trace, model_trace = traces(cvae, x, y)
    sites = [n for n, s in model_trace.nodes.items() if s["type"] == "sample"]
    assert sites == ["data", "y", "z", "x"]
    assert model_trace.nodes["y"]["is_observed"] and torch.equal(model_trace.nodes["y"]["value"], y)
    assert model_trace.nodes["x"]["fn"].batch_shape == (5,)
    assert [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"] == ["data", "z"]
    assert MODELS["cvae"] is CVAE and CVAE.uses_labels


def test_label_enters_both_networks():
    cvae = CVAE((1, 6, 6), num_classes=4, z_dim=3, hidden=(8,))
    x, z = torch.rand(2, 1, 6, 6), torch.randn(2, 3)
    assert not torch.allclose(cvae.encode(x, 0), cvae.encode(x, 1))
    assert not torch.allclose(cvae.decode(z, 0), cvae.decode(z, 1))


def test_elbo_bounds_log_p_x_and_y():
    """-ELBO(x, y) = recon + KL, and its recon part holds -log p(y) = log K."""
    cvae = CVAE((1, 6, 6), num_classes=4, z_dim=3, hidden=(8,))
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 3, 0])
    pyro.set_rng_seed(0)
    _, model_trace = traces(cvae, x, y)
    pyro.set_rng_seed(0)
    terms = elbo_terms(cvae.model, cvae.guide, (x, y), batch_size=5)
    recon_x = -model_trace.nodes["x"]["fn"].log_prob(x).sum().item() / 5
    assert terms["recon"] == pytest.approx(recon_x + torch.log(torch.tensor(4.0)).item(), rel=1e-5)


def test_samples_have_the_requested_shape_and_label():
    """Trained on toy images whose class k lights up row k, samples of class k do too."""
    num_classes, n = 4, 256
    y = torch.arange(n) % num_classes
    x = torch.full((n, 1, 4, 6), 0.05)
    x[torch.arange(n), 0, y] = 0.95
    cvae = CVAE((1, 4, 6), num_classes=num_classes, z_dim=2, hidden=(32,))
    svi = SVI(cvae.model, cvae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for step in range(300):
        idx = torch.randint(0, n, (64,))
        svi.step(x[idx], y[idx])
    for k in range(num_classes):
        samples = cvae.generate(7, y=k)
        assert samples.shape == (7, 1, 4, 6)
        row_means = samples.mean(dim=(0, 1, 3))  # [4]: one mean intensity per image row
        assert row_means.argmax().item() == k, row_means
    assert cvae.generate(3).shape == (3, 1, 4, 6)  # labels drawn from p(y)
    assert cvae.generate(4, y=torch.tensor([0, 1, 2, 3])).shape == (4, 1, 4, 6)


def test_bad_labels_name_the_problem():
    cvae = CVAE((1, 6, 6), num_classes=4, z_dim=3, hidden=(8,))
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 4\)"):
        cvae.generate(2, y=7)
    with pytest.raises(TypeError, match="integer"):
        cvae.generate(2, y=1.5)
    with pytest.raises(ValueError, match="needs the labels"):
        cvae.guide(torch.rand(2, 1, 6, 6))
    with pytest.raises(ValueError, match=r"train labels: expected values in \[0, 4\)"):
        cvae.check_labels(torch.tensor([0, 4]), 2, "train labels")
    with pytest.raises(ValueError, match=r"expected shape \[3\]"):
        cvae.check_labels(torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        CVAE(num_classes=1)


def test_part_options_reach_a_conditional_model():
    from pyro_vae import M2Config
    from pyro_vae.train import build_model

    config = M2Config(prior="mog", mixture_components=7, z_dim=3, hidden=(8,))
    m2 = build_model(config, (1, 6, 6), num_classes=4)
    assert m2.prior.num_components == 7 and m2.num_classes == 4 and m2.hidden == (8,)
