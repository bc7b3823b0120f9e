"""One optimisation step of SVI, two ways with the same mathematics.

``SVIStep`` is Pyro's ``SVI.step``: the ELBO's ``loss_and_grads``, then a Pyro
optimiser that keeps one ``torch.optim`` instance per parameter.

``FusedStep`` computes the same loss with the ELBO's ``differentiable_loss`` and
updates every parameter with one ``torch.optim.Adam`` (fused kernels where the
device has them). Adam is elementwise, so one optimiser over all parameters makes
the same update as one optimiser per parameter. What it drops is overhead only:

* per-parameter optimiser objects and their Python loop;
* Pyro's validation checks after the first step, which has already validated the
  model and guide (each check is a host sync on a GPU);
* ``loss.item()`` per step: the loss is returned as a tensor on the device.

``tests/test_steps.py`` checks that both give the same loss and gradients.
Steps are selected by name through :data:`STEPS`.
"""

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

import pyro
import pyro.optim
from pyro.infer import SVI, ELBO


def adam(params, lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` with fused kernels where supported, else multi-tensor."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or an unsupported device
        return torch.optim.Adam(params, lr=lr, foreach=True)


class SVIStep:
    """Pyro's ``SVI.step``. ``optim`` is any :class:`pyro.optim.PyroOptim`."""

    def __init__(self, model: Callable, guide: Callable, elbo: ELBO, optim: pyro.optim.PyroOptim):
        self.svi = SVI(model, guide, optim, elbo)

    def __call__(self, *batch) -> torch.Tensor:
        return torch.tensor(self.svi.step(*batch))

    def state_dict(self) -> Dict[str, Any]:
        return {"step": "svi", "optim": self.svi.optim.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        _expect(state, "svi")
        self.svi.optim.set_state(state["optim"])


class FusedStep:
    """``loss = elbo.differentiable_loss(model, guide, *batch)``; backward; one Adam step.

    The optimiser covers every parameter in Pyro's param store, read after the first
    forward pass (which creates them) and again whenever new ones appear.

    :param lr: Adam's learning rate.
    :param optimizer: ``optimizer(params) -> torch.optim.Optimizer`` to use instead
        of fused Adam.
    :param loss: ``loss(*batch) -> tensor`` to use instead of the ELBO's
        ``differentiable_loss``, e.g. an :class:`ELBOLoss` wrapped in
        ``DistributedDataParallel`` (see :mod:`pyro_vae.distributed`).
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        elbo: ELBO,
        lr: float = 1e-3,
        optimizer: Optional[Callable[[List[torch.Tensor]], torch.optim.Optimizer]] = None,
        loss: Optional[Callable[..., torch.Tensor]] = None,
    ):
        self.loss = loss or (lambda *batch: elbo.differentiable_loss(model, guide, *batch))
        self.make_optimizer = optimizer or (lambda params: adam(params, lr))
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.names: List[str] = []
        self._pending_state: Optional[Dict[str, Any]] = None

    def __call__(self, *batch) -> torch.Tensor:
        if self.optimizer is None:
            loss = self.loss(*batch)  # validated as configured; creates the parameters
            named = dict(pyro.get_param_store().named_parameters())
            self.names = sorted(named)
            self.optimizer = self.make_optimizer([named[n] for n in self.names])
            if self._pending_state is not None:
                self._load(self._pending_state)
                self._pending_state = None
        else:
            with pyro.validation_enabled(False):
                loss = self.loss(*batch)
            if len(pyro.get_param_store()) != len(self.names):
                self._add_new_params()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _add_new_params(self) -> None:
        """A model that creates parameters after the first step gets them optimised too."""
        named = dict(pyro.get_param_store().named_parameters())
        new = sorted(set(named) - set(self.names))
        self.optimizer.add_param_group({"params": [named[n] for n in new]})
        self.names += new  # the optimiser's order: groups are appended

    def state_dict(self) -> Dict[str, Any]:
        if self.optimizer is None:
            return {"step": "fused", "names": [], "optim": {}}
        return {"step": "fused", "names": list(self.names), "optim": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore optimiser state; applied at the first step if the optimiser is not built."""
        _expect(state, "fused")
        if self.optimizer is None:
            self._pending_state = state
        else:
            self._load(state)

    def _load(self, state: Dict[str, Any]) -> None:
        if not state["names"]:
            return
        if sorted(state["names"]) != sorted(self.names):
            raise ValueError("checkpoint: optimiser state was written for other parameters")
        if state["names"] != self.names:  # rebuild in the saved order so indices match
            named = dict(pyro.get_param_store().named_parameters())
            self.names = list(state["names"])
            self.optimizer = self.make_optimizer([named[n] for n in self.names])
        self.optimizer.load_state_dict(state["optim"])


def _expect(state: Dict[str, Any], kind: str) -> None:
    if state.get("step") != kind:
        raise ValueError(
            f"checkpoint: optimiser state is for the {state.get('step')!r} step, "
            f"this run uses {kind!r}"
        )


class ELBOLoss(nn.Module):
    """An ``nn.Module`` whose forward is the ELBO loss of ``module.model``/``module.guide``.

    ``DistributedDataParallel`` wraps modules, not functions: this gives it one, whose
    parameters are ``module``'s.
    """

    def __init__(self, module: nn.Module, model: Callable, guide: Callable, elbo: ELBO,
                 scale: float = 1.0):
        super().__init__()
        self.module = module
        self.model, self.guide, self.elbo, self.scale = model, guide, elbo, scale

    def forward(self, *batch) -> torch.Tensor:
        return self.elbo.differentiable_loss(self.model, self.guide, *batch) * self.scale


STEPS = {"svi": SVIStep, "fused": FusedStep}
