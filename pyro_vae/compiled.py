"""The ELBO of a model captured once per shape as a graph of tensor operations.

Pyro runs a model through a stack of effect handlers on every step: plates, scales,
traces and replays are Python, and on a small network or a GPU that Python, not the
arithmetic, sets the pace. :class:`CapturedLoss` runs the guide and the model once
(per structure: batch shapes and the model's scalar settings) under ``make_fx``, which
records the tensor operations they perform and nothing else, and replays that graph
on later steps: a pure function of the parameters, buffers and batch. Noise is drawn
inside the graph from torch's generator, so each replay draws afresh and checkpoints'
random states still resume exactly. Until a structure is captured, the same function
(:func:`trace_loss`) runs eagerly, so a step computes the same bits whether, or when,
its graph was captured (``tests/test_compiled.py``); Pyro's ``differentiable_loss`` sums
the same terms in another order and agrees to rounding.

The captured loss is the negative ELBO as Pyro computes it,

    -ELBO = -sum_obs log p(x | z) + sum_latent [log q(z | x) - log p(z)]     (Trace_ELBO)

with ``log q - log p`` replaced by the closed-form KL where one is registered
(``TraceMeanField_ELBO``); each site's ``scale`` (beta) and ``mask`` apply as in Pyro.
It applies to models that declare ``capturable`` and whose guide sites are all
reparameterised, with a single-particle ``Trace_ELBO`` or ``TraceMeanField_ELBO``;
anything else runs Pyro's own ``differentiable_loss``. The first call also runs Pyro's
loss once, without gradients and with its draws given back, for Pyro's checks.

A structure runs uncaptured ``capture_after`` times before it is captured, so short
runs (tests, a demo) pay no capture. A new batch shape (the last, ragged
batch of an epoch) or a new value of any scalar attribute of the model object
(``beta`` in a KL warm-up, ``training``, a flag that adds a site) is a new structure;
settings of its sub-modules are not watched (a model whose loss branches on them
declares ``capturable = False``); after :attr:`CapturedLoss.max_graphs`
captures of one model it captures no more and runs uncaptured, as it does where a
structure cannot be captured (Python that reads the data). Graphs belong to the
model and serve every later :func:`~pyro_vae.fit` of it in the process.
"""

import logging
import warnings
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.distributions import kl_divergence

import pyro
import pyro.poutine as poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

logger = logging.getLogger(__name__)


def trace_loss(model: Callable, guide: Callable, analytic_kl: bool, *batch) -> torch.Tensor:
    """The negative ELBO of one guide draw, as Pyro's ``Trace_ELBO`` (or, with
    ``analytic_kl``, ``TraceMeanField_ELBO``) computes it for reparameterised guides,
    written without data-dependent Python so that it can be captured. A latent site
    without ``rsample`` (a score-function estimate needs Pyro's surrogate loss), or in
    only one of model and guide, raises ``NotImplementedError``; a factor of the guide
    (free bits) is subtracted, as Pyro does."""
    guide_trace = poutine.trace(guide).get_trace(*batch)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)
    elbo = 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or _is_subsample(site):
            continue
        if site["is_observed"]:
            elbo = elbo + _log_prob_sum(site)
            continue
        q_site = guide_trace.nodes.get(name)
        if q_site is None or not q_site["fn"].has_rsample:  # Pyro's surrogate loss is needed
            raise NotImplementedError(f"the latent site {name!r} is not reparameterised "
                                      "in the guide")
        kl = _analytic_kl(q_site, site) if analytic_kl else None
        elbo = elbo + (_log_prob_sum(site) - _log_prob_sum(q_site) if kl is None else -kl)
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or _is_subsample(site) or name in model_trace:
            continue
        if not site["is_observed"]:
            raise NotImplementedError(f"the guide's site {name!r} is not in the model")
        elbo = elbo - _log_prob_sum(site)  # a factor of the guide, as Trace_ELBO counts it
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


class _Graphs:
    """The graphs captured for one model, shared by every :class:`CapturedLoss` of it."""

    def __init__(self):
        self.graphs: Dict[Tuple, Callable] = {}
        self.seen: Dict[Tuple, int] = {}  # eager runs of structures not captured yet
        self.failures: Dict[Tuple, str] = {}  # why a structure could not be captured
        self.captures = 0  # graphs captured so far


# model -> its graphs; a model that is garbage-collected takes its graphs along.
_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, _Graphs]" = weakref.WeakKeyDictionary()

# The types of the model's attributes that make up a structure (beta, training, ...).
_SCALARS = (bool, int, float, str, type(None))


class CapturedLoss:
    """``loss(*batch)``: the negative ELBO of ``module``'s model and guide, replayed from a
    graph captured once per structure (see the module docstring).

    :param module: a :class:`~pyro_vae.models.base.Model`; its ``capturable`` is obeyed.
    :param elbo: a single-particle ``Trace_ELBO`` or ``TraceMeanField_ELBO``.
    :param backend: a ``torch.compile`` backend (e.g. ``"inductor"``) each captured graph
        is compiled with: fused kernels, at a one-off compile time of the order of a
        minute on a CPU (``docs/speed.md``); ``None`` replays the graph through
        TorchScript's interpreter, operation for operation, with no Python per operation.
    :param capture_after: uncaptured runs of a structure before it is captured
        (default :attr:`capture_after`).
    """

    max_graphs = 8  # captures per model
    # About 0.1-0.2 s of capture per structure is worth it for a run of hundreds of steps,
    # not for the few steps of a test or a smoke run.
    capture_after = 16

    def __init__(self, module: nn.Module, elbo: ELBO, backend: Optional[str] = None,
                 capture_after: Optional[int] = None):
        self.module, self.elbo, self.backend = module, elbo, backend
        if capture_after is not None:
            self.capture_after = capture_after
        self.pyro_loss = lambda *batch: elbo.differentiable_loss(module.model, module.guide,
                                                                 *batch)
        self.analytic_kl = isinstance(elbo, TraceMeanField_ELBO)
        self.objective = _Objective(module, self.analytic_kl)
        self.cache = _GRAPHS.setdefault(module, _Graphs())
        self.reason = why_not_captured(module, elbo)  # None while capturing applies
        # Whether the steps compute trace_loss (eagerly or replayed), else Pyro's loss.
        self.traced = self.reason is None
        self._validated = False
        # Parameters and buffers are updated in place by the optimiser and by loading a
        # checkpoint: the same tensor objects serve every replay, read at the first one.
        self._names: Tuple[str, ...] = ()
        self._tensors: Tuple[torch.Tensor, ...] = ()
        self._signature: Optional[Tuple] = None

    @property
    def graphs(self) -> Dict[Tuple, Callable]:
        """The model's captured graphs, by structure."""
        return self.cache.graphs

    @property
    def captures(self) -> int:
        """How many graphs of the model were captured, in this process."""
        return self.cache.captures

    def __call__(self, *batch) -> torch.Tensor:
        if not self._validated:
            self._validated = True
            return self._validate(batch)
        if self.reason is not None:
            return self._eager(batch)
        key = self._key(batch)
        graph = self.cache.graphs.get(key)
        if graph is None:
            graph = self._capture(key, batch)
            if graph is None:
                return self._eager(batch)
        return graph(*self._tensors, *batch)

    def _validate(self, batch) -> torch.Tensor:
        """The first step: Pyro's loss once for its checks of the model, guide and data
        (its draws given back, its value dropped), then the step's own loss."""
        if self.reason is None:
            self.reason = check_traceable(self.module, batch)
            if self.reason is not None:
                self.traced = False
        if self.reason is not None:
            logger.info("compiled step: %s; Pyro's loss runs instead", self.reason)
        if self.traced:
            with torch.no_grad(), _draws_given_back():
                self.pyro_loss(*batch)
        return self._eager(batch)

    def _eager(self, batch) -> torch.Tensor:
        """The loss without a graph: :func:`trace_loss` where the model can be captured,
        so that a step computes the same bits whether or not its graph exists yet (and
        resumed runs stay exact); Pyro's loss where it cannot."""
        if not self.traced:
            return self.pyro_loss(*batch)
        try:
            return trace_loss(self.module.model, self.module.guide, self.analytic_kl, *batch)
        except NotImplementedError as err:  # a new site without rsample, or unmatched
            self.reason, self.traced = str(err), False
            logger.info("compiled step: %s; Pyro's loss from here on", self.reason)
            return self.pyro_loss(*batch)

    def _key(self, batch) -> Tuple:
        if self._signature is None:
            self._read_inputs()
        shapes = tuple((t.shape, t.dtype, t.device) for t in batch)
        settings = tuple(v for v in vars(self.module).values() if isinstance(v, _SCALARS))
        return self._signature, shapes, settings

    def _read_inputs(self) -> None:
        named = [*self.module.named_parameters(), *self.module.named_buffers()]
        self._names = tuple(f"module.{k}" for k, _ in named)
        self._tensors = tuple(v for _, v in named)
        self._signature = (self.analytic_kl, self.backend, *(
            (k, v.shape, v.dtype, v.device, v.requires_grad) for k, v in named))

    def _capture(self, key: Tuple, batch) -> Optional[Callable]:
        from torch.fx.experimental.proxy_tensor import make_fx

        cache = self.cache
        if key in cache.failures:
            self.reason = cache.failures[key]
            return None
        if len(cache.seen) > 64:  # a setting that changes every step (a KL warm-up)
            cache.seen.clear()
        cache.seen[key] = cache.seen.get(key, 0) + 1
        if cache.seen[key] <= self.capture_after:
            return None
        if cache.captures >= self.max_graphs:
            self.reason = (f"more than {self.max_graphs} batch shapes or settings: "
                           "capturing no more")
            logger.info("compiled step: %s; it runs uncaptured from here on", self.reason)
            return None
        count, names = len(self._names), self._names

        def pure(*inputs):
            values = dict(zip(names, inputs[:count]))
            return torch.func.functional_call(self.objective, values, inputs[count:])

        # Tracing runs the operations; the random numbers it draws are given back, so
        # a step consumes the same draws whether or not it captured a graph (and a
        # resumed run stays exact).
        inputs = (*self._tensors, *batch)
        try:
            with pyro.validation_enabled(False), _draws_given_back():
                with _Traceable():
                    graph = make_fx(pure)(*inputs)
                graph.graph.eliminate_dead_code()  # unused constants and index ranges
                graph.recompile()
                graph = _compiled(graph, inputs, self.backend)
        except Exception as err:  # noqa: BLE001 (Python that depends on the data, ...)
            self.reason = cache.failures[key] = (
                f"the loss cannot be captured ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]})")
            logger.info("compiled step: %s; it runs uncaptured", self.reason)
            return None
        cache.captures += 1
        cache.graphs[key] = graph
        cache.seen.pop(key, None)
        return graph


def _one_hot(labels: torch.Tensor, num_classes: int = -1) -> torch.Tensor:
    """``F.one_hot`` without its check that the labels lie in ``[0, num_classes)``, a
    read of the data that a graph cannot hold (``fit`` checks the labels up front)."""
    if num_classes < 0:
        raise ValueError("one_hot: a captured graph needs num_classes")
    classes = torch.arange(num_classes, device=labels.device, dtype=labels.dtype)
    return (labels.unsqueeze(-1) == classes).long()


class _Traceable(TorchFunctionMode):
    """While a graph is captured, torch functions that read the data run as written
    here (:func:`_one_hot`)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.one_hot:
            return _one_hot(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def _compiled(graph: Callable, inputs: Tuple[torch.Tensor, ...],
              backend: Optional[str]) -> Callable:
    """``graph`` as it is replayed: compiled with ``backend``, or else through TorchScript.

    The FX graph's Python calls each operation through a Python wrapper, which costs
    more than a small operation itself; TorchScript's interpreter calls the same
    operations from C++. Its optimising executor would fuse and reorder them, which
    changes the rounding, so it is turned off: the replay computes what the graph
    computes, bit for bit. Where TorchScript cannot trace the graph, the graph runs.
    """
    if backend is not None:
        return torch.compile(graph, backend=backend, dynamic=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's notice of deprecation
            script = torch.jit.trace(graph, inputs, check_trace=False)
    except Exception as err:  # noqa: BLE001 (any failure leaves the graph as it is)
        logger.info("compiled step: TorchScript could not trace the graph (%s)", err)
        return graph

    def replay(*args):
        with torch.jit.optimized_execution(False):
            return script(*args)

    return replay


def why_not_captured(module: nn.Module, elbo: ELBO) -> Optional[str]:
    """Why the loss of ``module`` under ``elbo`` cannot be captured; ``None`` if it can."""
    if not getattr(module, "capturable", False):
        return f"{type(module).__name__} declares capturable = False"
    if type(elbo) not in (Trace_ELBO, TraceMeanField_ELBO):
        return f"{type(elbo).__name__} is not Trace_ELBO or TraceMeanField_ELBO"
    if elbo.num_particles != 1:
        return f"num_particles is {elbo.num_particles}, not 1"
    return None


def check_traceable(module: nn.Module, batch) -> Optional[str]:
    """Why :func:`trace_loss` cannot compute ``module``'s loss on ``batch``: a latent site
    of the guide without ``rsample`` (a score-function estimate needs Pyro's surrogate
    loss), or a latent site in only one of model and guide; else ``None``. The draws
    are given back."""
    with pyro.validation_enabled(False), torch.no_grad(), _draws_given_back():
        guide_trace = poutine.trace(module.guide).get_trace(*batch)
        model_trace = poutine.trace(poutine.replay(module.model, trace=guide_trace)
                                    ).get_trace(*batch)
    guide_sites, model_sites = (
        {name: site for name, site in trace.nodes.items() if site["type"] == "sample"
         and not site["is_observed"] and not _is_subsample(site)}
        for trace in (guide_trace, model_trace))
    for name, site in guide_sites.items():
        if not site["fn"].has_rsample:
            return f"the guide's site {name!r} is not reparameterised"
    only = sorted(set(guide_sites) ^ set(model_sites))
    if only:
        return f"the latent site {only[0]!r} is in only one of model and guide"
    return None


def _draws_given_back():
    """A context that gives back the random numbers drawn in it, on the CPU and the
    current GPU (where one is in use)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else [])
