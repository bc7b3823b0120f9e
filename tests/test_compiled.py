"""The compiled step: Pyro's loss replayed from a graph captured once per structure, the
same bits as the loss computed without the graph; what it cannot capture runs uncaptured,
and what does not apply runs Pyro's loss."""

import pytest
import torch

import pyro
import pyro.distributions as dist
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import CVAE, M2, VAE, fit
from pyro_vae.compiled import CapturedLoss, trace_loss
from pyro_vae.infer import make_elbo
from pyro_vae.models.base import Model
from pyro_vae.steps import FusedStep

from helpers import StepSeen

X_SHAPE = (1, 6, 5)
X = torch.rand((40,) + X_SHAPE, generator=torch.Generator().manual_seed(0)).bernoulli()
Y = torch.arange(40) % 3
PARTS = [("normal", "diagonal"), ("mog", "lowrank"), ("vamp", "full"), ("flow", "iaf")]


def _vae(prior="normal", guide="diagonal", **kw):
    return VAE(X_SHAPE, z_dim=3, hidden=(8,), prior=prior, guide=guide, pseudo_inputs=4, **kw)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
@pytest.mark.parametrize("prior, guide", PARTS)
def test_trace_loss_is_pyros_differentiable_loss(elbo, prior, guide):
    vae = _vae(prior, guide, beta=2.0)
    pyro.set_rng_seed(1)
    expected = elbo().differentiable_loss(vae.model, vae.guide, X)
    pyro.set_rng_seed(1)
    got = trace_loss(vae.model, vae.guide, elbo is TraceMeanField_ELBO, X)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_trace_loss_subtracts_the_guides_factors_as_pyro_does(elbo):
    vae = _vae("vamp", "iaf", free_bits=3.0)  # the free-bits factor of the guide
    pyro.set_rng_seed(1)
    expected = elbo().differentiable_loss(vae.model, vae.guide, X)
    pyro.set_rng_seed(1)
    got = trace_loss(vae.model, vae.guide, elbo is TraceMeanField_ELBO, X)
    torch.testing.assert_close(got, expected)
    vae.free_bits = 0.0
    pyro.set_rng_seed(1)
    assert not torch.allclose(got, trace_loss(vae.model, vae.guide,
                                              elbo is TraceMeanField_ELBO, X))


def _loss_and_grads(module, loss, batch, seed=3):
    pyro.set_rng_seed(seed)
    value = loss(*batch)
    return value, torch.autograd.grad(value, list(module.parameters()), allow_unused=True)


def _identical(a, b):
    return torch.equal(a[0], b[0]) and all(
        (u is None and v is None) or torch.equal(u, v) for u, v in zip(a[1], b[1]))


def _uncaptured(module, elbo):
    """The loss a compiled step computes while its structure has no graph."""
    return lambda *batch: trace_loss(module.model, module.guide, elbo == "TraceMeanField_ELBO",
                                     *batch)


def _pyros(module, elbo):
    return lambda *batch: make_elbo(elbo).differentiable_loss(module.model, module.guide, *batch)


def _close(a, b):
    torch.testing.assert_close(a[0], b[0])
    for u, v in zip(a[1], b[1]):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("elbo", ["Trace_ELBO", "TraceMeanField_ELBO"])
@pytest.mark.parametrize("make", [*(lambda p=p, g=g: (_vae(p, g, beta=2.0), (X[:16],))
                                    for p, g in PARTS),
                                  lambda: (CVAE(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,),
                                                net="mlp"), (X[:16], Y[:16])),
                                  lambda: (_vae(free_bits=0.5, free_bits_per="dimension"),
                                           (X[:16],))],
                         ids=[*(f"{p}-{g}" for p, g in PARTS), "cvae", "free-bits"])
def test_the_replayed_graph_is_the_uncaptured_loss_bit_for_bit(elbo, make):
    # What exact resume rests on: a step computes the same bits whether its structure
    # was captured yet or not. Pyro's own loss sums the same terms in another order.
    module, batch = make()
    loss = CapturedLoss(module, make_elbo(elbo), capture_after=0)
    loss(*batch)  # validates
    replayed = _loss_and_grads(module, loss, batch)
    assert loss.captures == 1 and loss.reason is None
    assert _identical(replayed, _loss_and_grads(module, _uncaptured(module, elbo), batch))
    _close(replayed, _loss_and_grads(module, _pyros(module, elbo), batch))


def _fit(step=None, model=None, epochs=3, **kw):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae, seen = model or _vae(), StepSeen()
    history = fit(vae.model, vae.guide, X, epochs=epochs, batch_size=4, step=step,
                  elbo="TraceMeanField_ELBO", lr=0.01, callbacks=[seen], **kw)
    return vae, history, seen.step


def test_compiled_is_fits_default_and_trains_as_fused_does():
    fused, fused_history, _ = _fit("fused")
    compiled, history, step = _fit()  # 10 steps an epoch: captured in the second
    assert isinstance(step.loss, CapturedLoss) and step.loss.captures == 1
    assert [r["train_loss"] for r in history] == pytest.approx(
        [r["train_loss"] for r in fused_history], rel=1e-6)
    for (name, a), b in zip(fused.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("make, elbo, expected", [
    (lambda: M2(X_SHAPE, num_classes=3, z_dim=2, hidden=(8,)), None, FusedStep),
    (_vae, "IWAE", FusedStep),
    (_vae, "RenyiELBO", None),
])
def test_fit_falls_back_where_capture_does_not_apply(make, elbo, expected):
    model, seen = make(), StepSeen()
    data = (X, Y) if isinstance(model, M2) else X
    options = {} if elbo is None else {"elbo": make_elbo(elbo, num_particles=2)}
    fit(model.model, model.guide, data, epochs=1, batch_size=20, callbacks=[seen], **options)
    if expected is FusedStep:  # M2 (Pyro's TraceEnum_ELBO), IWAE: the fused step, uncaptured
        assert isinstance(seen.step, FusedStep) and not isinstance(seen.step.loss, CapturedLoss)
    else:  # RenyiELBO has no differentiable_loss: Pyro's SVI.step
        assert not isinstance(seen.step, FusedStep)


def test_no_capture_before_capture_after_runs_of_a_structure():
    vae = _vae()
    loss = CapturedLoss(vae, make_elbo("Trace_ELBO"), capture_after=3)
    for _ in range(4):  # one validating run, three runs of Pyro's loss
        loss(X[:16])
    assert loss.captures == 0
    loss(X[:16])
    assert loss.captures == 1


def test_one_graph_per_batch_shape_and_beta():
    vae = _vae()
    loss = CapturedLoss(vae, make_elbo("TraceMeanField_ELBO"), capture_after=0)
    for batch in [X[:16], X[:16], X[16:32], X[32:], X[:16]]:  # shapes 16 and 8
        loss(batch).backward()
    assert loss.captures == 2 and loss.reason is None
    vae.beta = 0.5  # a warm-up changes beta: a new graph, with the new scale
    captured = _loss_and_grads(vae, loss, (X[:16],))
    assert loss.captures == 3
    assert _identical(captured, _loss_and_grads(
        vae, _uncaptured(vae, "TraceMeanField_ELBO"), (X[:16],)))


class SwitchedVAE(VAE):
    """A VAE with an extra observed site while ``with_extra`` is set."""

    with_extra = False

    def auxiliary(self, x, y):
        if self.with_extra:
            pyro.sample("extra", pyro.distributions.Normal(x.flatten(1).mean(-1), 1.0),
                        obs=torch.zeros(x.shape[0]))


def test_a_new_site_is_captured_anew():
    vae = SwitchedVAE(X_SHAPE, z_dim=3, hidden=(8,))
    loss = CapturedLoss(vae, make_elbo("Trace_ELBO"), capture_after=0)
    loss(X[:16])
    without = _loss_and_grads(vae, loss, (X[:16],))
    vae.with_extra = True  # a scalar setting of the model: part of the structure
    with_extra = _loss_and_grads(vae, loss, (X[:16],))
    assert loss.captures == 2 and not torch.equal(without[0], with_extra[0])
    assert _identical(with_extra, _loss_and_grads(vae, _uncaptured(vae, "Trace_ELBO"),
                                                  (X[:16],)))
    _close(with_extra, _loss_and_grads(vae, _pyros(vae, "Trace_ELBO"), (X[:16],)))


class DataDependentVAE(VAE):
    """A VAE whose model reads a value of the data in Python: no graph can hold it."""

    def model(self, x=None, y=None, num=None):
        if x is not None and float(x.sum()) < 0:
            raise AssertionError("unreachable: pixels are not negative")
        return super().model(x, y, num)


def test_a_loss_that_cannot_be_captured_runs_pyros_loss():
    vae = DataDependentVAE(X_SHAPE, z_dim=3, hidden=(8,))
    loss = CapturedLoss(vae, make_elbo("Trace_ELBO"), capture_after=0)
    loss(X[:16])
    got = _loss_and_grads(vae, loss, (X[:16],))
    assert loss.captures == 0 and "cannot be captured" in loss.reason
    assert _identical(got, _loss_and_grads(vae, _uncaptured(vae, "Trace_ELBO"), (X[:16],)))


class Coin(Model):
    """A discrete latent site: its gradient needs Pyro's score-function surrogate."""

    def __init__(self):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.zeros(()))

    def model(self, x):
        coin = pyro.sample("coin", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(coin, 1.0).expand([len(x)]).to_event(1), obs=x)

    def guide(self, x):
        pyro.sample("coin", dist.Bernoulli(logits=self.logit))


def test_a_site_without_rsample_is_not_captured():
    coin, x = Coin(), torch.randn(5)
    loss = CapturedLoss(coin, make_elbo("Trace_ELBO"), capture_after=0)
    loss(x)
    got = _loss_and_grads(coin, loss, (x,))
    assert loss.captures == 0 and "'coin' is not reparameterised" in loss.reason
    assert _identical(got, _loss_and_grads(coin, _pyros(coin, "Trace_ELBO"), (x,)))


class Unmatched(Model):
    """A latent site of the model that the guide does not sample."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))

    def model(self, x):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(loc + shift, 1.0).expand([len(x)]).to_event(1), obs=x)

    def guide(self, x):
        pyro.sample("loc", dist.Normal(self.loc, 1.0))


def test_a_site_in_only_one_of_model_and_guide_runs_pyros_loss():
    model, x = Unmatched(), torch.randn(5)
    loss = CapturedLoss(model, make_elbo("Trace_ELBO"), capture_after=0)
    loss(x)
    got = _loss_and_grads(model, loss, (x,))
    assert loss.captures == 0 and "'shift' is in only one of model and guide" in loss.reason
    assert _identical(got, _loss_and_grads(model, _pyros(model, "Trace_ELBO"), (x,)))


def test_graphs_serve_every_fit_of_the_model():
    vae = _vae()
    for epochs in (2, 1):
        pyro.set_rng_seed(0)
        _, _, step = _fit(model=vae, epochs=epochs)
    assert step.loss.captures == 1  # captured in the first fit only


def test_too_many_structures_fall_back_to_pyros_loss():
    vae = _vae()
    loss = CapturedLoss(vae, make_elbo("Trace_ELBO"), capture_after=0)
    loss.max_graphs = 2
    for n in (4, 4, 5, 6, 7):
        loss(X[:n])
    assert loss.captures == 2 and "capturing no more" in loss.reason


@pytest.mark.parametrize("make, reason", [
    (lambda: (M2(X_SHAPE, num_classes=2, z_dim=2, hidden=(8,)), "TraceEnum_ELBO"),
     "declares capturable = False"),
    (lambda: (_vae(), "IWAE"), "IWAE is not"),
])
def test_what_cannot_be_captured_runs_pyros_loss(make, reason):
    model, elbo = make()
    loss = CapturedLoss(model, make_elbo(elbo, num_particles=2 if elbo == "IWAE" else 1))
    assert reason in loss.reason


def test_compiled_needs_a_models_methods():
    def model(x):
        pass

    with pytest.raises(ValueError, match="^step: 'compiled' needs the model and guide"):
        fit(model, model, X, step="compiled", epochs=1)


def test_compiled_resumes_exactly(tmp_path):
    # 10 steps an epoch: the uninterrupted run captures in its second epoch, the
    # resumed one in its first (a new model, new graphs) at another step.
    def run(folder, epochs, resume=False):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = _vae()
        fit(vae.model, vae.guide, X, epochs=epochs, batch_size=4, run_dir=folder,
            resume=resume)
        return vae

    whole = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 3, resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
