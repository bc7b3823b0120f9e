import pytest
import torch

from pyro_vae.guides import GUIDES, FullNormal, IAFNormal, LowRankNormal

Z = 4


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_family_contract(name):
    family = GUIDES[name](Z)
    params = torch.randn(6, family.num_params, requires_grad=True)
    q = family(params)
    assert q.has_rsample and q.event_shape == (Z,) and q.batch_shape == (6,)
    z = q.rsample()
    assert z.shape == (6, Z)
    log_q = q.log_prob(z)
    assert log_q.shape == (6,) and torch.isfinite(log_q).all()
    (z.sum() + log_q.sum()).backward()  # reparameterised: gradients reach the encoder
    assert params.grad.abs().sum() > 0
    assert family.loc(params).shape == (6, Z)
    assert family.base(params).event_shape == (Z,)


def test_lowrank_covariance_is_factor_plus_diagonal():
    family = LowRankNormal(Z, rank=2)
    params = torch.randn(1, family.num_params)
    loc, log_var, w = params[0].split([Z, Z, 2 * Z])
    w = w.reshape(Z, 2)
    q = family(params)
    torch.testing.assert_close(q.covariance_matrix[0], w @ w.T + torch.diag(log_var.exp()))
    torch.testing.assert_close(q.loc[0], loc)


def test_full_covariance_has_the_encoded_cholesky_factor():
    family = FullNormal(3)
    assert family.num_params == 3 + 3 + 3
    params = torch.arange(9.0).unsqueeze(0) / 10
    # [mu (3), log diag L (3), strictly-lower L by rows: L10, L20, L21]
    expected_l = torch.tensor(
        [[0.3, 0.0, 0.0], [0.6, 0.4, 0.0], [0.7, 0.8, 0.5]]
    )
    expected_l.diagonal().exp_()
    torch.testing.assert_close(family(params).scale_tril[0], expected_l)


def test_iaf_density_at_a_sample_equals_the_density_by_inversion():
    """log q at the sample uses the cached z_0; inverting the flows from scratch
    (a copy of z breaks the cache) must give the same density."""
    family = IAFNormal(Z, num_layers=3)
    params = torch.randn(5, family.num_params)
    q = family(params)
    z = q.rsample()
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()), rtol=1e-4, atol=1e-4)


def test_iaf_density_is_change_of_variables():
    family = IAFNormal(Z, num_layers=1)
    params = torch.randn(3, family.num_params)
    base = family.base(params)
    z0 = base.sample()
    flow = family.layers[0].condition(params[:, 2 * Z:])
    z = flow(z0)
    expected = base.log_prob(z0) - flow.log_abs_det_jacobian(z0, z)
    torch.testing.assert_close(family(params).log_prob(z.clone()), expected, rtol=1e-4, atol=1e-4)


def test_iaf_layers_are_deterministic_functions_of_the_config():
    """Masks come from fixed variable orders, so a rebuilt model matches a checkpoint."""
    torch.manual_seed(0)
    a = IAFNormal(Z, num_layers=2)
    torch.manual_seed(1)
    b = IAFNormal(Z, num_layers=2)
    for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.layers[0].nn.permutation, a.layers[1].nn.permutation)


@pytest.mark.parametrize("cls, kw, arg", [(LowRankNormal, {"rank": 0}, "rank"),
                                          (IAFNormal, {"num_layers": 0}, "num_layers")])
def test_bad_arguments(cls, kw, arg):
    with pytest.raises(ValueError, match=arg):
        cls(Z, **kw)
