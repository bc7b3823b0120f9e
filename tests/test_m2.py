"""M2: the enumerated label, the classification factor, one objective for both batch kinds."""


import pytest
import torch

import pyro
import pyro.poutine as poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO

from pyro_vae import M2, MODELS, elbo_terms


def small_m2(**kw):
    return M2((1, 6, 6), num_classes=10, z_dim=3, hidden=(16,), **kw)


def test_enumerated_label_has_ten_values_in_the_trace():
    m2 = small_m2()
    x = torch.rand(7, 1, 6, 6)
    guide_trace = poutine.trace(poutine.enum(m2.guide, first_available_dim=-2)).get_trace(x)
    y = guide_trace.nodes["y"]
    assert y["infer"]["enumerate"] == "parallel"
    assert y["value"].shape == (10, 1)
    assert torch.equal(y["value"].squeeze(-1), torch.arange(10))
    # z and x carry the enumeration dimension in front of the plate dimension.
    assert guide_trace.nodes["z"]["value"].shape == (10, 7, 3)
    model_trace = poutine.trace(poutine.replay(m2.model, trace=guide_trace)).get_trace(x)
    assert model_trace.nodes["x"]["fn"].batch_shape == (10, 7)
    assert MODELS["m2"] is M2


def test_labelled_batch_observes_y_and_adds_the_classification_factor():
    m2 = small_m2(alpha=3.0)
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([1, 5, 9, 0])
    guide_trace = poutine.trace(m2.guide).get_trace(x, y)
    assert "y" not in guide_trace.nodes
    model_trace = poutine.trace(poutine.replay(m2.model, trace=guide_trace)).get_trace(x, y)
    assert model_trace.nodes["y"]["is_observed"]
    factor = model_trace.nodes["classification"]
    log_q = m2.label_posterior(x).log_prob(y)
    assert torch.allclose(factor["fn"].log_prob(factor["value"]), 3.0 * log_q)
    # The training loss is -ELBO(x, y) - alpha * log q(y | x); elbo_terms leaves the factor out.
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(m2.model, m2.guide, x, y)
    pyro.set_rng_seed(3)
    terms = elbo_terms(m2.model, m2.guide, (x, y), batch_size=4)
    pyro.set_rng_seed(3)
    guide_trace = poutine.trace(m2.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(m2.model, trace=guide_trace)).get_trace(x, y)
    zs, zp = guide_trace.nodes["z"], model_trace.nodes["z"]
    kl_sample = (zs["fn"].log_prob(zs["value"]) - zp["fn"].log_prob(zs["value"])).sum()
    recon = terms["recon"] * 4
    assert loss == pytest.approx(recon + kl_sample.item() - 3.0 * log_q.sum().item(), rel=1e-5)


def test_unlabelled_loss_is_the_enumerated_bound():
    """TraceEnum_ELBO's unlabelled loss equals, at the same draws of z, the explicit sum
    -sum_x [sum_y q(y|x) (log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)) + H(q(y|x))]."""
    m2 = small_m2()
    x = torch.rand(3, 1, 6, 6)
    pyro.set_rng_seed(5)
    z = poutine.trace(poutine.enum(m2.guide, first_available_dim=-2)).get_trace(x).nodes["z"]["value"]
    pyro.set_rng_seed(5)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(m2.model, m2.guide, x)
    q = m2.label_posterior(x)
    expected = q.entropy()
    for k in range(10):
        yk = m2.one_hot(torch.full((3,), k))
        log_joint = (m2.likelihood(m2.decoder(z[k], yk)).log_prob(x) + m2.label_prior().log_prob(torch.tensor(k))
                     + m2.prior().log_prob(z[k]) - m2.posterior(m2.encoder(x, yk)).log_prob(z[k]))
        expected = expected + q.probs[:, k] * log_joint
    assert loss == pytest.approx(-expected.sum().item(), rel=1e-5)


@pytest.mark.parametrize("enum_discrete", ["parallel", "none"])
def test_labelled_and_unlabelled_losses_are_finite_and_fall(mnist10k, enum_discrete):
    m2 = M2(num_classes=10, z_dim=8, hidden=(64,), enum_discrete=enum_discrete)
    x_l, y_l = mnist10k.x_train[:32], mnist10k.y_train[:32]
    x_u = mnist10k.x_train[32:96]
    svi = SVI(m2.model, m2.guide, pyro.optim.Adam({"lr": 3e-3}), TraceEnum_ELBO(max_plate_nesting=1))
    labelled, unlabelled = [], []
    for _ in range(25):
        labelled.append(svi.step(x_l, y_l))
        unlabelled.append(svi.step(x_u))
    for losses in (labelled, unlabelled):
        assert all(torch.isfinite(torch.tensor(losses)))
        assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_sampled_label_is_one_draw_per_image():
    m2 = small_m2(enum_discrete="none")
    guide_trace = poutine.trace(m2.guide).get_trace(torch.rand(7, 1, 6, 6))
    assert guide_trace.nodes["y"]["value"].shape == (7,)
    assert guide_trace.nodes["y"]["infer"] == {}


def test_classify_and_arguments():
    m2 = small_m2()
    probs = m2.classify(torch.rand(5, 1, 6, 6))
    assert probs.shape == (5, 10) and torch.allclose(probs.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="alpha"):
        small_m2(alpha=-1)
    with pytest.raises(ValueError, match="enum_discrete"):
        small_m2(enum_discrete="exact")


def test_reconstruct_without_labels_uses_the_classifier():
    m2 = small_m2()
    x = torch.rand(4, 1, 6, 6)
    predicted = m2.classify(x).argmax(-1)
    assert torch.equal(m2.reconstruct(x), m2.reconstruct(x, predicted))
    assert m2.reconstruct(x).shape == x.shape
