"""One optimisation step of SVI, three ways with the same mathematics.

``svi`` (:class:`SVIStep`) is Pyro's ``SVI.step`` (as :class:`SafeSVI`, which never
writes NaN or inf into the parameters): the ELBO's ``loss_and_grads``, then a Pyro
optimiser that keeps one ``torch.optim`` instance per parameter.

``fused`` (:class:`FusedStep`) computes the same loss with the ELBO's
``differentiable_loss`` and updates every parameter with one ``torch.optim.Adam``
(fused kernels where the device has them). Adam is elementwise, so one optimiser over
all parameters makes the same update as one per parameter. What it drops is overhead
only:

* per-parameter optimiser objects and their Python loop; once the optimiser's state
  exists, fused Adam's kernel is called directly (:class:`FusedAdamKernel`);
* Pyro's validation checks after the first step, which has already validated the
  model and guide (each check costs time, and a host sync on a GPU);
* the NaN/inf check of the gradients is one foreach kernel and one read of its flag.

``compiled`` (:func:`compiled_step`) is the fused step on the loss captured once per
shape as a graph of tensor operations (:mod:`pyro_vae.compiled`); :func:`pyro_vae.fit`
uses it where it applies, ``fused`` elsewhere.

All skip the update of a step whose loss or gradients are NaN or inf and raise
:class:`NonFiniteStep`. ``tests/test_steps.py`` checks that they give the same loss
and gradients. Steps are found by name in :data:`STEPS`.
"""

import contextlib
import math
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

import pyro
import pyro.optim
import pyro.poutine as poutine
from pyro.infer import ELBO, SVI
from pyro.infer.util import is_validation_enabled, torch_item, zero_grads

from . import checks


# name -> torch optimiser; Pyro's wrappers of the same name serve the "svi" step.
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def _optimizer_args(name: str, lr: float, weight_decay: float) -> Dict[str, float]:
    checks.one_of("optimizer", name, OPTIMIZERS)
    args = {"lr": checks.positive_number("lr", lr)}
    if weight_decay:
        args["weight_decay"] = checks.positive_number("weight_decay", weight_decay)
    return args


def make_optim(lr: float = 1e-3, clip_norm: Optional[float] = None, optimizer: str = "adam",
               weight_decay: float = 0.0) -> pyro.optim.PyroOptim:
    """Pyro's Adam (or AdamW, SGD); with ``clip_norm`` each parameter tensor's gradient
    is first rescaled to Euclidean norm at most ``clip_norm`` (Pyro's ``clip_args``,
    applied per parameter, not to the norm of all gradients together). ``None`` or 0:
    no clipping.
    """
    args = _optimizer_args(optimizer, lr, weight_decay)
    clip = {"clip_norm": checks.positive_number("clip_norm", clip_norm)} if clip_norm else {}
    return pyro.optim.PyroOptim(OPTIMIZERS[optimizer], args, clip_args=clip)


def torch_optimizer(optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0
                    ) -> Callable[[List[torch.Tensor]], torch.optim.Optimizer]:
    """``params -> torch.optim.<optimizer>``, with fused kernels where the device has them."""
    args, cls = _optimizer_args(optimizer, lr, weight_decay), OPTIMIZERS[optimizer]

    def make(params) -> torch.optim.Optimizer:
        params = list(params)
        try:
            return cls(params, fused=True, **args)
        except (RuntimeError, TypeError, ValueError):  # older torch or an unsupported device
            return cls(params, foreach=True, **args)

    return make


class NonFiniteStep(FloatingPointError):
    """A step of :class:`SafeSVI` met a NaN or inf; the parameters were not updated."""


# The first line of torch's message when a distribution's argument fails its
# constraint, which is how NaN or inf network outputs surface with validation on.
_INVALID_ARGUMENT = "but found invalid values"


class SafeSVI(SVI):
    """Pyro's ``SVI`` whose ``step`` never writes NaN or inf into the parameters.

    Pyro's own step applies the optimiser unconditionally, so one bad batch puts NaN
    into every parameter it touches. Here a step whose loss or any gradient is NaN
    or inf, or whose model or guide hands a distribution NaN or inf arguments (a
    ``ValueError`` under Pyro's validation), leaves the parameters as they were,
    zeroes the gradients and raises :class:`NonFiniteStep` saying which. Otherwise
    the step is Pyro's, operation for operation.
    """

    def step(self, *args, **kwargs) -> float:
        with poutine.trace(param_only=True) as param_capture:
            try:
                loss = torch_item(self.loss_and_grads(self.model, self.guide, *args, **kwargs))
                problem = None
            except ValueError as err:
                if _INVALID_ARGUMENT not in str(err):
                    raise
                what = str(err).split(_INVALID_ARGUMENT)[0].rstrip(", ")
                loss, problem = math.nan, f"NaN or inf in a distribution's arguments ({what})"
        params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
        problem = problem or _non_finite(loss, params)
        if problem is None:
            self.optim(params)
        zero_grads(params)
        if problem is not None:
            raise NonFiniteStep(problem)
        return loss


def _non_finite(loss: float, params) -> Optional[str]:
    """What is NaN or inf, the loss or the gradients of which parameters; else None."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    grads = [p.grad for p in params if p.grad is not None]
    # One fused reduction, one device sync: NaN or inf anywhere makes a norm non-finite.
    if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
        store = pyro.get_param_store()
        bad = sorted(store.param_name(p) for p in params
                     if p.grad is not None and not torch.isfinite(p.grad).all())
        return f"gradient of {', '.join(bad) or 'the parameters'} is not finite (loss {loss:.6g})"
    return None


def owner(model: Callable, guide: Callable) -> Optional[nn.Module]:
    """The :class:`~pyro_vae.models.base.Model` whose methods ``model`` and ``guide`` are.

    Its parameters are named by ``named_parameters()`` in optimiser states and
    checkpoints, whatever scope the instance has in Pyro's param store. ``None`` for
    other functions, whose parameters are named by the param store.
    """
    module = getattr(model, "__self__", None)
    if (isinstance(module, nn.Module) and getattr(guide, "__self__", None) is module
            and callable(getattr(module, "param_name", None))):
        return module
    return None


class SVIStep:
    """Pyro's ``SVI.step`` (as :class:`SafeSVI`) with any :class:`pyro.optim.PyroOptim`."""

    def __init__(self, model: Callable, guide: Callable, elbo: ELBO, optim: pyro.optim.PyroOptim):
        self.svi = SafeSVI(model, guide, optim, elbo)
        self.module = owner(model, guide)
        self._restored: Dict[str, Any] = {}

    def __call__(self, *batch) -> float:
        return self.svi.step(*batch)

    @property
    def lr(self) -> float:
        return float(self.svi.optim.pt_optim_args["lr"])

    def set_lr(self, lr: float) -> None:
        """The learning rate of every parameter's optimiser, and of those made later."""
        self.svi.optim.pt_optim_args = {**self.svi.optim.pt_optim_args, "lr": lr}
        for optimizer in self.svi.optim.optim_objs.values():
            for group in optimizer.param_groups:
                group["lr"] = lr

    def state_dict(self) -> Dict[str, Any]:
        # A Pyro optimiser reports only the parameters it has stepped since it was
        # made; a resumed run that saves before its first step must pass on the
        # state it restored.
        rename = self.module.param_name if self.module is not None else (lambda n: n)
        current = {rename(k): v for k, v in self.svi.optim.get_state().items()}
        return {"step": "svi", "optim": {**self._restored, **current}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        _expect(state, "svi")
        self._restored = state["optim"]
        rename = self.module.store_name if self.module is not None else (lambda n: n)
        self.svi.optim.set_state({rename(k): v for k, v in state["optim"].items()})


class FusedAdamKernel:
    """``torch.optim.Adam(fused=True).step()`` (or AdamW's) as one call of its kernel.

    The optimiser's ``step`` spends most of its time, on a small network, in Python:
    grouping tensors by device, gathering each parameter's state, hooks, profiling
    records. This calls the same fused kernel on the same state tensors with the
    group's current hyperparameters, so the update and the ``state_dict`` are those of
    ``step``, bit for bit. :meth:`of` gives one only once ``step`` has made the state,
    and only for a single parameter group on one device and dtype, with neither
    AMSGrad, ``maximize``, a tensor learning rate nor optimiser hooks.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.group = optimizer.param_groups[0]
        state = [optimizer.state[p] for p in self.group["params"]]
        self.exp_avgs = [s["exp_avg"] for s in state]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in state]
        self.steps = [s["step"] for s in state]
        self.kernel = (torch._fused_adamw_ if self.group["decoupled_weight_decay"]
                       else torch._fused_adam_)

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> Optional["FusedAdamKernel"]:
        """The kernel call of ``optimizer``; ``None`` where ``step`` must run."""
        from torch.optim import optimizer as base

        if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) \
                or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        params = group["params"]
        simple = (group.get("fused") and not group["amsgrad"] and not group["maximize"]
                  and not group["differentiable"] and not torch.is_tensor(group["lr"])
                  and "decoupled_weight_decay" in group)
        hooks = (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
                 or base._global_optimizer_pre_hooks or base._global_optimizer_post_hooks)
        made = all("exp_avg" in optimizer.state.get(p, {}) for p in params)
        one_kind = len({(p.device, p.dtype) for p in params}) == 1
        if not (simple and made and one_kind and params) or hooks:
            return None
        return cls(optimizer)

    def __call__(self, params: List[torch.Tensor], grads: List[torch.Tensor]) -> None:
        group = self.group
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            torch._foreach_add_(self.steps, 1)
            self.kernel(params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,
                        amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                        weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                        grad_scale=None, found_inf=None)


class FusedStep:
    """``loss = elbo.differentiable_loss(model, guide, *batch)``; backward; one Adam step.

    The optimiser covers the parameters of the model and guide: those of the
    :class:`~pyro_vae.models.base.Model` they are methods of, or else the param-store
    entries the first step touches (and any that appear later).

    :param lr: Adam's learning rate.
    :param clip_norm: rescale each parameter's gradient to norm at most this, as
        Pyro's ``clip_args={"clip_norm": ...}`` does.
    :param optimizer: ``optimizer(params) -> torch.optim.Optimizer`` to use instead
        of fused Adam.
    :param loss: ``loss(*batch) -> tensor`` to use instead of the ELBO's
        ``differentiable_loss``, e.g. an :class:`ELBOLoss` wrapped in
        ``DistributedDataParallel`` (see :mod:`pyro_vae.distributed`).
    :param loss_scale: the factor ``loss`` includes; the step reports ``loss / loss_scale``.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        elbo: ELBO,
        lr: float = 1e-3,
        clip_norm: Optional[float] = None,
        optimizer: Optional[Callable[[List[torch.Tensor]], torch.optim.Optimizer]] = None,
        loss: Optional[Callable[..., torch.Tensor]] = None,
        loss_scale: float = 1.0,
    ):
        self.loss_scale = loss_scale
        self.loss = loss or (lambda *batch: elbo.differentiable_loss(model, guide, *batch))
        self.make_optimizer = optimizer or torch_optimizer("adam", lr)
        self._lr: Optional[float] = None  # set by set_lr, e.g. by a schedule
        self.clip_norm = clip_norm
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.module = owner(model, guide)
        self.names: List[str] = []
        self.params: List[torch.Tensor] = []
        self._pending_state: Optional[Dict[str, Any]] = None
        self._store_size = -1
        self._kernel: Optional[FusedAdamKernel] = None  # once the optimiser state exists
        self._found_inf: Optional[torch.Tensor] = None
        self._one: Optional[torch.Tensor] = None

    def __call__(self, *batch) -> float:
        first = self.optimizer is None
        # Without a module, the step's parameters are read off a param-only trace,
        # taken only when the param store has grown (a trace costs host time).
        store_size = len(pyro.get_param_store())
        discover = self.module is None and store_size != self._store_size
        capture = poutine.trace(param_only=True) if discover else contextlib.nullcontext()
        try:
            # The first step runs with validation as configured and creates the
            # parameters; later ones skip the checks it has already passed.
            with pyro.validation_enabled(is_validation_enabled() and first), capture:
                loss = self.loss(*batch)
        except ValueError as err:
            if _INVALID_ARGUMENT not in str(err):
                raise
            what = str(err).split(_INVALID_ARGUMENT)[0].rstrip(", ")
            raise NonFiniteStep(f"NaN or inf in a distribution's arguments ({what})") from None
        if not getattr(loss, "requires_grad", False):  # nothing to train, as in SVI
            problem = _non_finite(torch_item(loss), [])
            if problem is not None:
                raise NonFiniteStep(problem)
            return torch_item(loss) / self.loss_scale
        if discover:
            self._store_size = len(pyro.get_param_store())
        if first:
            self._build(self._named(capture))
        elif discover:
            self._add_new_params(self._named(capture))
        for p in self.params:  # what zero_grad(set_to_none=True) does, without its hooks
            p.grad = None
        loss.backward()
        if self.clip_norm:
            for p in self.params:
                if p.grad is not None:
                    nn.utils.clip_grad_norm_(p, self.clip_norm)
        # Two reads per step, the loss and the NaN/inf flag below (free on a CPU; on a
        # GPU each waits for the step's kernels, as SVI.step's loss.item() does).
        value = loss.item()
        grads = [p.grad for p in self.params if p.grad is not None]
        if not math.isfinite(value) or (grads and self._non_finite_grads(grads)):
            problem = _non_finite(value, self.params)
            for p in self.params:
                p.grad = None
            raise NonFiniteStep(problem or f"loss or gradients are not finite (loss {value:.6g})")
        self._update(grads)
        return value / self.loss_scale

    def _update(self, grads: List[torch.Tensor]) -> None:
        """The optimiser's update: fused Adam's kernel called directly once its state
        exists and every parameter has a gradient, else ``optimizer.step()``."""
        if self._kernel is not None and len(grads) == len(self.params):
            self._kernel(self.params, grads)
            return
        self.optimizer.step()
        kernel = FusedAdamKernel.of(self.optimizer)
        # the kernel's state lists follow the optimiser's order, which is the step's
        same_order = kernel is not None and len(kernel.group["params"]) == len(self.params) \
            and all(a is b for a, b in zip(kernel.group["params"], self.params))
        self._kernel = kernel if same_order else None

    def _non_finite_grads(self, grads: List[torch.Tensor]) -> bool:
        """Whether any gradient holds a NaN or inf: one foreach kernel (the one
        ``GradScaler`` uses, here with a scale of 1) and one read of its flag."""
        if self._found_inf is None or self._found_inf.device != grads[0].device:
            self._found_inf = torch.zeros((), device=grads[0].device)
            self._one = torch.ones((), device=grads[0].device)
        try:
            self._found_inf.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(grads, self._found_inf, self._one)
        except (RuntimeError, AttributeError, TypeError):  # mixed devices or dtypes
            return not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum())
        return bool(self._found_inf)

    @property
    def lr(self) -> float:
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self._lr

    def set_lr(self, lr: float) -> None:
        """The learning rate of every parameter group, now or once the optimiser is built."""
        self._lr = lr
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def _named(self, capture) -> Dict[str, torch.Tensor]:
        """The trainable parameters by name: the module's, or those the trace captured."""
        if self.module is not None:
            return {n: p for n, p in self.module.svi_parameters() if p.requires_grad}
        return {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()
                if site["type"] == "param"}

    def _build(self, named: Dict[str, torch.Tensor]) -> None:
        self.names = sorted(named)
        self.params = [named[n] for n in self.names]
        self.optimizer, self._kernel = self.make_optimizer(self.params), None
        if self._lr is not None:
            self.set_lr(self._lr)
        if self._pending_state is not None:
            self._load(self._pending_state, named)
            self._pending_state = None

    def _add_new_params(self, named: Dict[str, torch.Tensor]) -> None:
        """A model that creates parameters after the first step gets them optimised too."""
        new = sorted(set(named) - set(self.names))
        if not new:
            return
        self.optimizer.add_param_group({"params": [named[n] for n in new]})
        self._kernel = None
        self.names += new  # the optimiser's order: groups are appended
        self.params += [named[n] for n in new]

    def state_dict(self) -> Dict[str, Any]:
        if self.optimizer is None:
            return dict(self._pending_state or {"step": "fused", "names": [], "optim": {}})
        return {"step": "fused", "names": list(self.names), "optim": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore optimiser state; applied at the first step if the optimiser is not built."""
        _expect(state, "fused")
        if self.optimizer is None:
            self._pending_state = state
        else:
            self._load(state, dict(zip(self.names, self.params)))

    def _load(self, state: Dict[str, Any], named: Dict[str, torch.Tensor]) -> None:
        if not state["names"]:
            return
        if sorted(state["names"]) != sorted(self.names):
            raise ValueError("checkpoint: its optimiser state was written for other parameters")
        if state["names"] != self.names:  # rebuild in the saved order so indices match
            self.names = list(state["names"])
            self.params = [named[n] for n in self.names]
            self.optimizer = self.make_optimizer(self.params)
        self.optimizer.load_state_dict(state["optim"])  # new state tensors
        self._kernel = None


def _expect(state: Dict[str, Any], kind: str) -> None:
    if state.get("step") != kind:
        raise ValueError(
            f"checkpoint: optimiser state is for the {state.get('step')!r} step, "
            f"this run uses {kind!r}"
        )


class OptimizerStep:
    """A plain optimisation step outside SVI: ``loss = loss_fn(*batch)``; backward; update.

    For a model's second objective with its own optimiser, such as a discriminator's
    (:meth:`~pyro_vae.models.base.Model.extra_steps`). Skips the update and raises
    :class:`NonFiniteStep` when the loss or a gradient is NaN or inf, as the SVI steps do.

    :param params: the parameters it updates (none of the SVI step's).
    :param loss_fn: ``loss_fn(*batch) -> scalar tensor`` to minimise.
    :param optimizer: ``optimizer(params) -> torch.optim.Optimizer``.
    """

    def __init__(self, params, loss_fn: Callable[..., torch.Tensor],
                 optimizer: Callable[[List[torch.Tensor]], torch.optim.Optimizer]):
        self.params = [p for p in params if p.requires_grad]
        self.loss_fn, self.optimizer = loss_fn, optimizer(self.params)

    def __call__(self, *batch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(*batch)
        loss.backward()
        value = loss.item()
        grads = [p.grad for p in self.params if p.grad is not None]
        if not math.isfinite(value) or (grads and not torch.isfinite(sum(g.sum() for g in grads))):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteStep(f"loss or gradients of a second step are not finite ({value:.6g})")
        self.optimizer.step()
        return value

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> Dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


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


def compiled_step(model: Callable, guide: Callable, elbo: ELBO, backend: Optional[str] = None,
                  capture_after: Optional[int] = None, **options) -> FusedStep:
    """The fused step on a loss captured once per shape (:mod:`pyro_vae.compiled`): the
    same mathematics, less host work per step; the default of :func:`pyro_vae.fit` where
    it applies. ``model`` and ``guide`` must be methods of a
    :class:`~pyro_vae.models.base.Model`; where capture does not apply (enumeration, a
    score-function site, another ELBO) it runs Pyro's loss, as ``fused`` does. Each
    shape runs ``capture_after`` steps uncaptured before it is captured (default
    :attr:`pyro_vae.compiled.CapturedLoss.capture_after`)."""
    from .compiled import CapturedLoss

    module = owner(model, guide)
    if module is None:
        raise ValueError("step: 'compiled' needs the model and guide of a pyro_vae model "
                         "(methods of a pyro_vae.models.Model); use 'fused'")
    loss = CapturedLoss(module, elbo, backend, capture_after=capture_after)
    return FusedStep(model, guide, elbo, loss=loss, **options)


STEPS = {"svi": SVIStep, "fused": FusedStep, "compiled": compiled_step}
