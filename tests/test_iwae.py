"""The importance-weighted bound as a training objective: pyro_vae.iwae.IWAE."""

import math

import pytest
import torch

import pyro
import pyro.distributions as dist
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_vae import fit
from pyro_vae.evaluate import log_weights
from pyro_vae.infer import make_elbo
from pyro_vae.iwae import IWAE
from pyro_vae.models import HVAE, M2, VAE
from pyro_vae.steps import FusedStep

from helpers import PPCA, StepSeen


def _binary(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=g) > 0.5).float()


def test_with_the_exact_posterior_every_weight_is_p_x():
    """q(z | x) = p(z | x) makes each weight p(x, z) / q(z | x) = p(x): L_K = log p(x)
    exactly, for every K and every draw."""
    ppca = PPCA(shift=0.0, c=1.0)
    x = ppca.sample(6)
    for k in (1, 7):
        loss = IWAE(num_particles=k).loss(ppca.model, ppca.guide, x)
        assert loss == pytest.approx(-ppca.log_px(x).sum().item(), rel=1e-9)


def test_one_draw_is_the_elbo_at_the_same_draw():
    vae = VAE((1, 4, 4), z_dim=3, hidden=(8,), beta=0.5)  # beta scales the KL sites in both
    x = _binary()
    pyro.set_rng_seed(3)
    expected = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    assert IWAE(num_particles=1).loss(vae.model, vae.guide, x) == pytest.approx(expected,
                                                                               rel=1e-6)


def test_the_weights_are_the_evaluators_on_the_replicated_batch():
    vae, x, k = VAE((1, 4, 4), z_dim=3, hidden=(8,)), _binary(5), 4
    pyro.set_rng_seed(0)
    log_w = IWAE(num_particles=k).log_weights(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    expected = log_weights(vae.model, vae.guide, x.repeat(k, 1, 1, 1)).view(k, 5)
    assert log_w.shape == (k, 5)
    torch.testing.assert_close(log_w, expected)


def test_same_draws_as_renyis_particle_plate():
    """Row k B + j of the replicated batch is particle k of item j, the order in which
    RenyiELBO(vectorize_particles=True) lays out its [K, B] draws: at the same seed the
    two losses are one number."""
    vae, x = VAE((1, 4, 4), z_dim=3, hidden=(8,)), _binary(10)
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(5)
    expected = renyi.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(5)
    assert IWAE(num_particles=6).loss(vae.model, vae.guide, x) == pytest.approx(expected,
                                                                               rel=1e-5)


def test_value_and_gradient_match_renyi_at_alpha_zero_in_expectation():
    """Pyro's RenyiELBO(alpha=0) estimates the same bound and gradient with its draws one
    by one: the means over 300 estimates agree within 4 standard errors."""
    ppca = PPCA(shift=1.0, c=0.8)
    x = ppca.sample(4)
    pyro.clear_param_store()

    def guide(x):  # the PPCA guide, shifted by a learnable loc
        loc = pyro.param("loc", torch.zeros(2, dtype=torch.float64))
        q_loc, cov = ppca.q_params(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(q_loc + loc, covariance_matrix=cov))

    def estimates(elbo, seed):
        pyro.set_rng_seed(seed)
        values, grads = [], []
        for _ in range(300):
            values.append(elbo.loss_and_grads(ppca.model, guide, x))
            loc = pyro.param("loc").unconstrained()
            grads.append(loc.grad.clone())
            loc.grad = None
        return torch.tensor(values), torch.stack(grads)

    mine, mine_g = estimates(IWAE(num_particles=5), 0)
    renyi, renyi_g = estimates(RenyiELBO(alpha=0, num_particles=5), 1)
    se = math.sqrt((mine.var() + renyi.var()).item() / 300)
    assert abs(mine.mean() - renyi.mean()).item() < 4 * se
    se_g = ((mine_g.var(0) + renyi_g.var(0)) / 300).sqrt()
    assert ((mine_g.mean(0) - renyi_g.mean(0)).abs() < 4 * se_g).all()
    # ... and the bound is tighter than the ELBO: E[-L_5] < -ELBO
    assert mine.mean() < -ppca.elbo(x).sum().item()


def test_a_guide_without_rsample_is_refused():
    m2 = M2((1, 4, 4), num_classes=3, z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="site 'y': .* no reparameterised sample.*RenyiELBO"):
        IWAE(num_particles=2).loss(m2.model, m2.guide, _binary(6))  # an unlabelled batch


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_num_particles(bad):
    with pytest.raises(ValueError, match="num_particles: expected a positive integer"):
        IWAE(num_particles=bad)


@pytest.mark.parametrize("make", [
    lambda: VAE((1, 4, 4), z_dim=3, hidden=(8,)),
    lambda: HVAE((1, 4, 4), hidden=(8,), z_dims=(3, 2), level_hidden=(6,), norm="batch"),
])
def test_iwae_by_name_trains_with_the_fused_step(make):
    model, seen = make(), StepSeen()
    elbo = make_elbo("IWAE", num_particles=3)  # --elbo IWAE --num-particles 3
    assert isinstance(elbo, IWAE) and elbo.num_particles == 3
    history = fit(model.model, model.guide, _binary(40), epochs=4, batch_size=10, lr=1e-2,
                  elbo=elbo, callbacks=[seen])
    assert isinstance(seen.step, FusedStep)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
