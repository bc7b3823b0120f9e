"""ADGM and SDGM: sites and plate, the enumerated bound against the explicit sum over
labels, the classification factor, classification by averaging over a, the command line."""

import json
import math

import numpy as np
import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import Predictive, TraceEnum_ELBO

from pyro_vae.cli import main
from pyro_vae.models import ADGM, MODELS, SDGM

K = 3
SHAPE = (1, 4, 4)


def small(cls=ADGM, **kw):
    kw = {"num_classes": K, "z_dim": 2, "a_dim": 3, "hidden": (8,), **kw}
    return cls(SHAPE, **kw)


def images(n=5, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def clear():
    pyro.clear_param_store()


def test_registered_with_its_declarations():
    assert MODELS["adgm"] is ADGM and MODELS["sdgm"] is SDGM
    for cls in (ADGM, SDGM):
        assert cls.semi_supervised and cls.classifies and cls.elbo == "TraceEnum_ELBO"


@pytest.mark.parametrize("cls", [ADGM, SDGM])
def test_sites_shapes_and_the_data_plate(cls):
    model, x, y = small(cls), images(), torch.tensor([0, 1, 2, 0, 1])
    guide_trace = poutine.trace(model.guide).get_trace(x, y)
    trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, y)
    assert guide_trace.nodes["a"]["value"].shape == (5, 3)
    assert guide_trace.nodes["z"]["value"].shape == (5, 2)
    assert "y" not in guide_trace.nodes  # observed: only the model has it
    for name in ("y", "z", "a", "x", "classification"):
        frames = trace.nodes[name]["cond_indep_stack"]
        assert [f.name for f in frames] == ["data"], name
    order = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
    assert order.index("a") > order.index("x") if cls is ADGM else order.index("a") < order.index("x")
    draws = Predictive(model.model, num_samples=2)(num=4)
    assert draws["x"].shape == (2, 4, *SHAPE) and draws["a"].shape == (2, 4, 3)


def explicit_bound(model, x):
    """-loss of one unlabelled batch written out: with the guide's draws a ~ q(a | x)
    and, for each label k, z_k ~ q(z | a, k, x) (drawn in the order the enumerated guide
    draws them), sum_n [sum_k q(k | a, x) (log p(x, k, z_k, a) - log q(z_k | a, k, x)
    - log q(k | a, x)) - log q(a | x)]."""
    flat = x.flatten(1)
    q_a = model.gaussian_a(model.aux_encoder(flat))
    a = q_a.rsample()                                                  # [B, A]
    labels = torch.arange(K).view(K, 1)                                # [K, 1]
    y1h = model.one_hot(labels)                                        # [K, 1, K]
    q_z = model.gaussian_z(model.encoder(a, y1h, flat))
    z = q_z.rsample()                                                  # [K, B, Z]
    q_y = model.label_posterior(a, x)
    log_q_y = q_y.logits.log_softmax(-1).T                             # [K, B]
    aux = model.gaussian_a(model.aux_params(x, y1h, z))
    log_p = (model.pixels(model.decode_params(y1h, z, a if model.skip else None)).log_prob(x)
             + model.z_prior(len(x)).log_prob(z) + aux.log_prob(a) - math.log(K))
    inner = log_p - q_z.log_prob(z) - log_q_y
    return ((log_q_y.exp() * inner).sum(0) - q_a.log_prob(a)).sum()


@pytest.mark.parametrize("cls", [ADGM, SDGM])
def test_the_enumerated_bound_equals_the_explicit_sum_over_labels(cls):
    model, x = small(cls), images()
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(4)
    loss = elbo.differentiable_loss(model.model, model.guide, x)
    pyro.set_rng_seed(4)
    assert -loss.item() == pytest.approx(explicit_bound(model, x).item(), rel=1e-5)


def test_the_labelled_bound_adds_alpha_log_q_y_given_a_and_x():
    model, x, y = small(alpha=7.0), images(), torch.tensor([0, 1, 2, 0, 1])
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(1)
    with_factor = elbo.differentiable_loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(1)
    guide_trace = poutine.trace(model.guide).get_trace(x, y)
    a = guide_trace.nodes["a"]["value"]
    model.alpha = 0.0
    pyro.set_rng_seed(1)
    without = elbo.differentiable_loss(model.model, model.guide, x, y)
    expected = 7.0 * model.label_posterior(a, x).log_prob(y).sum()
    assert (without - with_factor).item() == pytest.approx(expected.item(), rel=1e-5)


def test_classify_averages_q_y_over_draws_of_a():
    model, x = small(classify_samples=2000), images(3)
    probs = model.classify(x)
    assert probs.shape == (3, K) and torch.allclose(probs.sum(-1), torch.ones(3))
    q_a = model.gaussian_a(model.aux_encoder(x.flatten(1)))
    a = q_a.sample((4000,))
    reference = model.label_posterior(a, x).probs.mean(0)
    assert torch.allclose(probs, reference, atol=0.02)


def test_utilities_and_bad_arguments():
    model, x = small(SDGM), images(4)
    assert model.encode(x).shape == (4, 2) and model.reconstruct(x).shape == x.shape
    assert model.generate(6, y=1).shape == (6, *SHAPE)
    assert model.decode(torch.zeros(2, 2), y=torch.tensor([0, 2])).shape == (2, *SHAPE)
    with pytest.raises(ValueError, match="^a_dim: "):
        small(a_dim=0)
    with pytest.raises(ValueError, match="^enum_discrete: "):
        small(enum_discrete="all")
    with pytest.raises(ValueError, match="^elbo: ADGM enumerates"):
        small().check_elbo(pyro.infer.Trace_ELBO())


def test_train_evaluate_classify_from_the_shell(tmp_path, capsys):
    path, labels = tmp_path / "x.npz", np.arange(60) % K
    rng = np.random.default_rng(0)
    x = (rng.random((60, *SHAPE)) * 0.3 + labels[:, None, None, None] * 0.3).astype(np.float32)
    np.savez(path, x=x, y=labels)
    run = tmp_path / "run"
    assert main(["train", "--model", "sdgm", "--data", str(path), "--labels", "9",
                 "--z-dim", "2", "--a-dim", "2", "--hidden", "8", "--epochs", "2",
                 "--batch-size", "16", "--warmup", "linear", "--warmup-epochs", "2",
                 "--out", str(run), "--quiet"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["test_accuracy"] <= 1 and "beta" in r for r in rows)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert math.isfinite(result["test_loss"]) and 0 <= result["test_accuracy"] <= 1
    assert main(["train", "--model", "adgm", "--data", str(path), "--a-dim", "0",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
