import math

import pytest
import torch

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from pyro_vae import CVAE, VAE
from pyro_vae.priors import (
    PRIORS,
    FlowPrior,
    MixtureOfGaussians,
    Mixture,
    VampPrior,
)

Z, X_SHAPE = 3, (1, 4, 4)


def _vae(prior, guide="diagonal", **kw):
    # A prior conditioned on the label needs a model of labelled data.
    cls = CVAE if getattr(PRIORS[prior], "conditional", False) else VAE
    return cls(X_SHAPE, z_dim=Z, hidden=(8,), prior=prior, guide=guide, pseudo_inputs=5, **kw)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_prior_contract(name):
    prior = _vae(name).prior
    p = prior()
    assert p.event_shape == (Z,) and p.batch_shape == ()
    z = p.sample((7,))
    assert z.shape == (7, Z)
    assert p.log_prob(z).shape == (7,) and torch.isfinite(p.log_prob(z)).all()
    # The "data" plate broadcasts it.
    assert p.expand((7,)).log_prob(z).shape == (7,)


def test_mixture_of_gaussians_density():
    prior = MixtureOfGaussians(Z, num_components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.log_scales.copy_(0.3 * torch.randn(4, Z))
    z = torch.randn(6, Z)
    comps = dist.Normal(prior.locs, prior.log_scales.exp()).to_event(1)
    expected = (comps.log_prob(z[:, None]) + prior.logits.log_softmax(-1)).logsumexp(-1)
    torch.testing.assert_close(prior().log_prob(z), expected)


@pytest.mark.parametrize("guide", ["diagonal", "lowrank", "iaf"])
def test_vamp_prior_is_the_uniform_mixture_of_the_guide_at_pseudo_inputs(guide):
    vae = _vae("vamp", guide=guide)
    u = vae.prior.pseudo_inputs.clamp(0, 1)
    components = vae.posterior.base(vae.encoder(u))  # the whole q for Gaussian guides
    if guide != "iaf":
        z = torch.randn(2, Z)
        torch.testing.assert_close(
            components.log_prob(z[:, None]), vae.posterior(vae.encoder(u)).log_prob(z[:, None])
        )
    z = torch.randn(6, Z)
    expected = components.log_prob(z[:, None]).logsumexp(-1) - math.log(5)
    torch.testing.assert_close(vae.prior().log_prob(z), expected, rtol=1e-4, atol=1e-4)


def test_mixture_fast_path_matches_broadcasting():
    loc, scale = torch.randn(50, 6), torch.rand(50, 6) + 0.1
    logits = torch.randn(50)
    fast = Mixture(dist.Normal(loc, scale).to_event(1), logits)
    # The same components as a full-covariance Normal take the generic path.
    slow = Mixture(dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale)), logits)
    z = 2 * torch.randn(4, 3, 6)
    torch.testing.assert_close(fast.log_prob(z), slow.log_prob(z), rtol=1e-4, atol=1e-4)
    assert fast.sample((4, 3)).shape == (4, 3, 6)


def test_mixture_samples_pick_components_by_their_weights():
    locs = torch.tensor([[-10.0], [0.0], [10.0]])
    logits = torch.tensor([0.0, 1.0, 2.0])
    z = Mixture(dist.Normal(locs, 0.1).to_event(1), logits).sample((30000,))
    freq = torch.stack([(z < -5).float().mean(), (z.abs() < 5).float().mean(),
                        (z > 5).float().mean()])
    # Standard error of each frequency is below 0.003.
    torch.testing.assert_close(freq, logits.softmax(-1), rtol=0, atol=0.015)


def test_flow_prior_is_a_normalised_density():
    torch.manual_seed(1)
    prior = FlowPrior(2, num_layers=2)
    step = 0.04
    axis = torch.arange(-7, 7, step) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = prior().log_prob(grid).exp().sum() * step**2
        # Sampling inverts the flows; the density of a sample is consistent with it.
        z = prior().sample((5,))
    assert mass.item() == pytest.approx(1.0, abs=5e-3)
    assert torch.isfinite(prior().log_prob(z)).all()


def test_vamp_prior_registers_only_its_pseudo_inputs():
    vae = _vae("vamp")
    names = dict(vae.named_parameters())
    assert "prior.pseudo_inputs" in names
    assert not any(n.startswith("prior.") and n != "prior.pseudo_inputs" for n in names)
    assert not any(k.startswith("prior.") and k != "prior.pseudo_inputs" for k in vae.state_dict())
    x = torch.rand(2, *X_SHAPE)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    store = set(pyro.get_param_store().keys())
    scope = vae.name + "."
    assert scope + "prior$$$pseudo_inputs" in store and scope + "encoder$$$net.0.weight" in store
    assert not any(k.startswith(scope + "prior$$$") and "net" in k for k in store)


def test_vamp_prior_needs_binding_to_a_matching_model():
    prior = VampPrior(Z, X_SHAPE, num_pseudo_inputs=3)
    with pytest.raises(RuntimeError, match="bind"):
        prior()
    with pytest.raises(ValueError, match="x_shape"):
        VAE((1, 5, 5), z_dim=Z, hidden=(8,), prior=prior)
    vae = VAE(X_SHAPE, z_dim=Z, hidden=(8,), prior=prior)  # given as an object
    assert vae.prior() is not None


@pytest.mark.parametrize("cls, kw, arg", [
    (MixtureOfGaussians, {"num_components": 0}, "num_components"),
    (FlowPrior, {"num_layers": 0}, "num_layers"),
])
def test_bad_arguments(cls, kw, arg):
    with pytest.raises(ValueError, match=arg):
        cls(Z, **kw)
    with pytest.raises(ValueError, match="num_pseudo_inputs"):
        VampPrior(Z, X_SHAPE, num_pseudo_inputs=0)


def test_model_options_reach_only_the_parts_that_take_them():
    vae = VAE(X_SHAPE, z_dim=Z, hidden=(8,), prior="mog", guide="iaf", mixture_components=7,
              flow_layers=3)
    assert vae.prior.num_components == 7 and len(vae.posterior.layers) == 3
    with pytest.raises(ValueError, match=r"prior: expected one of \['class', 'flow', 'learned'"):
        VAE(X_SHAPE, z_dim=Z, prior="gaussian")
