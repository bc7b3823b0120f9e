"""The ELBO of a model captured once per shape as a graph of tensor operations.

Pyro runs a model through a stack of effect handlers on every step: plates, scales,
traces and replays are Python, and on a small network or a GPU that Python, not the
arithmetic, sets the pace. :class:`CapturedLoss` runs the guide and the model once
(per batch shape) under ``make_fx``, which records the tensor operations they perform
and nothing else, and replays that graph on later steps: a pure function of the
parameters, buffers and batch. Noise is drawn inside the graph from torch's generator,
so each replay draws afresh and checkpoints' random states still resume exactly.

The captured loss is the negative ELBO as Pyro computes it,

    -ELBO = -sum_obs log p(x | z) + sum_latent [log q(z | x) - log p(z)]     (Trace_ELBO)

with ``log q - log p`` replaced by the closed-form KL where one is registered
(``TraceMeanField_ELBO``); each site's ``scale`` (beta) and ``mask`` apply as in Pyro.
It applies to models that declare ``capturable`` and whose guide sites are all
reparameterised, with a single-particle ``Trace_ELBO`` or ``TraceMeanField_ELBO``;
anything else runs Pyro's own ``differentiable_loss``, as does the first call (which
also validates the model under Pyro's checks). A new batch shape (the last, ragged
batch of an epoch) or a new ``beta`` (a KL warm-up) is captured anew; after
:attr:`CapturedLoss.max_graphs` captures it stops capturing and runs Pyro's loss.
"""

import logging
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

logger = logging.getLogger(__name__)


def trace_loss(model: Callable, guide: Callable, analytic_kl: bool, *batch) -> torch.Tensor:
    """The negative ELBO of one guide draw, as Pyro's ``Trace_ELBO`` (or, with
    ``analytic_kl``, ``TraceMeanField_ELBO``) computes it for reparameterised guides,
    written without data-dependent Python so that it can be captured."""
    guide_trace = poutine.trace(guide).get_trace(*batch)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)
    elbo = 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or _is_subsample(site):
            continue
        if site["is_observed"]:
            elbo = elbo + _log_prob_sum(site)
            continue
        q_site = guide_trace.nodes[name]
        kl = _analytic_kl(q_site, site) if analytic_kl else None
        elbo = elbo + (_log_prob_sum(site) - _log_prob_sum(q_site) if kl is None else -kl)
    return -elbo


def _is_subsample(site: Dict[str, Any]) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def _log_prob_sum(site: Dict[str, Any]) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


def _analytic_kl(q_site: Dict[str, Any], p_site: Dict[str, Any]) -> Optional[torch.Tensor]:
    try:
        kl = kl_divergence(q_site["fn"], p_site["fn"])
    except NotImplementedError:
        return None
    return scale_and_mask(kl, q_site["scale"], q_site["mask"]).sum()


class _Objective(nn.Module):
    """``forward(*batch)`` = :func:`trace_loss` of ``module.model`` and ``module.guide``,
    so that ``torch.func.functional_call`` can swap in the parameters as inputs."""

    def __init__(self, module: nn.Module, analytic_kl: bool):
        super().__init__()
        self.module, self.analytic_kl = module, analytic_kl

    def forward(self, *batch) -> torch.Tensor:
        return trace_loss(self.module.model, self.module.guide, self.analytic_kl, *batch)


class CapturedLoss:
    """``loss(*batch)``: the negative ELBO of ``module``'s model and guide, replayed from a
    graph captured once per batch shape (see the module docstring).

    :param module: a :class:`~pyro_vae.models.base.Model`; its ``capturable`` is obeyed.
    :param elbo: a single-particle ``Trace_ELBO`` or ``TraceMeanField_ELBO``.
    :param backend: a ``torch.compile`` backend (e.g. ``"inductor"``) each captured graph
        is compiled with: fused kernels, at a one-off compile time of the order of a
        minute on a CPU (``docs/speed.md``); ``None`` replays the graph as captured.
    """

    max_graphs = 8

    def __init__(self, module: nn.Module, elbo: ELBO, backend: Optional[str] = None):
        self.module, self.elbo, self.backend = module, elbo, backend
        self.eager = lambda *batch: elbo.differentiable_loss(module.model, module.guide, *batch)
        self.objective = _Objective(module, isinstance(elbo, TraceMeanField_ELBO))
        self.graphs: Dict[Tuple, Callable] = {}
        self.captures = 0  # graphs captured so far, those evicted included
        self.reason = _why_not(module, elbo)  # None while capturing applies
        self._validated = False
        self._names: Tuple[str, ...] = ()
        self._tensors: Tuple[torch.Tensor, ...] = ()  # parameters and buffers, as captured

    def __call__(self, *batch) -> torch.Tensor:
        if not self._validated:  # the first step runs Pyro's loss, with its checks
            self._validated = True
            self.reason = self.reason or check_reparameterised(self.module, batch)
            if self.reason is not None:
                logger.info("compiled step: %s; Pyro's loss runs instead", self.reason)
            return self.eager(*batch)
        if self.reason is not None:
            return self.eager(*batch)
        key = self._key(batch)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self._capture(key, batch)
            if graph is None:
                return self.eager(*batch)
        return graph(*self._tensors, *batch)

    def _key(self, batch) -> Tuple:
        shapes = tuple((tuple(t.shape), t.dtype, t.device) for t in batch)
        return shapes, getattr(self.module, "beta", None), self.module.training

    def _inputs(self) -> Tuple[Tuple[str, ...], Tuple[torch.Tensor, ...]]:
        named = [*self.module.named_parameters(), *self.module.named_buffers()]
        return tuple(f"module.{k}" for k, _ in named), tuple(v for _, v in named)

    def _capture(self, key: Tuple, batch) -> Optional[Callable]:
        from torch.fx.experimental.proxy_tensor import make_fx

        if self.captures >= self.max_graphs:
            self.reason = (f"more than {self.max_graphs} batch shapes or beta values: "
                           "capturing no more")
            logger.info("compiled step: %s; Pyro's loss from here on", self.reason)
            return None

        # Parameters and buffers are updated in place by the optimiser and by loading
        # a checkpoint: the same tensor objects serve every replay, read once here.
        self._names, self._tensors = self._inputs()
        count = len(self._names)

        def pure(*inputs):
            values = dict(zip(self._names, inputs[:count]))
            return torch.func.functional_call(self.objective, values, inputs[count:])

        # Tracing runs the operations once; the random numbers it draws are given back,
        # so a step consumes the same draws whether or not it captured a graph (and a
        # resumed run stays exact).
        with pyro.validation_enabled(False), torch.random.fork_rng(devices=[]):
            graph = make_fx(pure)(*self._tensors, *batch)
        if self.backend is not None:
            graph = torch.compile(graph, backend=self.backend, dynamic=False)
        self.captures += 1
        self.graphs[key] = graph
        return graph


def _why_not(module: nn.Module, elbo: ELBO) -> Optional[str]:
    """Why the loss of ``module`` under ``elbo`` cannot be captured; ``None`` if it can."""
    if not getattr(module, "capturable", False):
        return f"{type(module).__name__} declares capturable = False"
    if type(elbo) not in (Trace_ELBO, TraceMeanField_ELBO):
        return f"{type(elbo).__name__} is not Trace_ELBO or TraceMeanField_ELBO"
    if elbo.num_particles != 1:
        return f"num_particles is {elbo.num_particles}, not 1"
    return None


def check_reparameterised(module: nn.Module, batch) -> Optional[str]:
    """Why ``module``'s guide cannot be captured on ``batch``: a latent site without
    ``rsample`` (a score-function estimate needs Pyro's surrogate loss); else ``None``."""
    with pyro.validation_enabled(False), torch.no_grad(), torch.random.fork_rng(devices=[]):
        trace = poutine.trace(module.guide).get_trace(*batch)
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not _is_subsample(site) \
                and not site["fn"].has_rsample:
            return f"the guide's site {name!r} is not reparameterised"
    return None
