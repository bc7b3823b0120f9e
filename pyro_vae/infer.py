"""The SVI runner: :func:`fit` trains any Pyro model/guide pair on in-memory tensors.

It steps Pyro's ``SVI``, logs one line of metrics per epoch, writes
``metrics.jsonl`` and atomic checkpoints into a run folder, resumes from them exactly
(to the step, bit for bit on the CPU), stops cleanly on SIGINT/SIGTERM and on a
non-finite loss, and calls hooks. It knows nothing of images, plots or model names.
See ``docs/robustness.md``.
"""

import json
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import pyro
import pyro.optim
import pyro.poutine as poutine
from pyro.infer import (
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from . import checks
from .checkpoint import Checkpoints, atomic_write, check_writable, remove_stale_temps, run_path
from .evaluate import Tensors, as_tuple, elbo_terms
from .interrupt import Interrupted, deferred_signals
from .distributed import all_sum, ddp_step, rank as dist_rank, shard, world_size
from .steps import STEPS, FusedStep, NonFiniteStep, SafeSVI, SVIStep, make_optim, owner  # noqa: F401

logger = logging.getLogger(__name__)

ELBOS = {
    "Trace_ELBO": Trace_ELBO,
    "TraceMeanField_ELBO": TraceMeanField_ELBO,
    "TraceGraph_ELBO": TraceGraph_ELBO,
    # max_plate_nesting=1: every model here has the single plate "data".
    "TraceEnum_ELBO": lambda **kw: TraceEnum_ELBO(max_plate_nesting=1, **kw),
    "RenyiELBO": RenyiELBO,
    # The importance-weighted bound of Burda et al. (2015), with num_particles = K
    # samples per item: Renyi's bound at alpha = 0. Pyro keeps the "data" plate's
    # dim when it averages the weights, so the bound is per item, as it must be.
    "IWAE": lambda **kw: RenyiELBO(alpha=0, **kw),
}
METRICS = "metrics.jsonl"
CHECKPOINT_FORMAT = 3

# batches(data, generator) -> the epoch's argument tuples for one step each.
Batches = Callable[[Tuple[torch.Tensor, ...], torch.Generator], Sequence[Sequence[torch.Tensor]]]


def shuffled_batches(batch_size: int) -> Batches:
    """:func:`fit`'s own batching as a policy: a random order cut into ``batch_size``
    slices of every tensor (``(x[idx], y[idx])`` for ``data = (x, y)``); the last
    batch is smaller when ``batch_size`` does not divide ``N``."""

    def batches(data: Tuple[torch.Tensor, ...], generator: torch.Generator):
        order = torch.randperm(len(data[0]), generator=generator).to(data[0].device)
        return _Slices(data, order.split(batch_size))

    return batches


def make_elbo(elbo: Union[str, ELBO], num_particles: int = 1) -> ELBO:
    """An ELBO object from a name in :data:`ELBOS`, or ``elbo`` itself."""
    if isinstance(elbo, ELBO):
        return elbo
    checks.one_of("elbo", elbo, ELBOS)
    return ELBOS[elbo](num_particles=checks.integer("num_particles", num_particles))


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; other values pass through."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available")
    return device


def rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """Every random state the next step depends on, as plain tensors and lists.

    Pyro draws its samples from torch's generator, so ``"torch"`` is Pyro's state
    too; ``"batches"`` is fit's own generator (data order and ``transform``).
    """
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "batches": generator.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(float, np_state[2:])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["batches"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Progress:
    """Where training stands: a checkpoint holds these fields beside the parameters,
    the optimiser state and the random states."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in epoch ``epoch + 1``
    global_step: int = 0  # steps completed in all
    order: Optional[torch.Tensor] = None  # data order of epoch ``epoch + 1``, once drawn
    # with a custom batching policy: the generator state its batches were drawn from
    batch_state: Optional[torch.Tensor] = None
    loss: float = 0.0  # summed loss of this epoch's finite steps so far
    seen: int = 0  # examples in those steps
    bad_steps: int = 0  # steps skipped for a NaN or inf, whole run

    def count(self, loss: float, size: int) -> None:
        """One more step, of ``size`` examples and finite ``loss``."""
        self.step, self.global_step = self.step + 1, self.global_step + 1
        self.loss, self.seen = self.loss + loss, self.seen + size

    def count_bad(self) -> None:
        """One more step, skipped for a NaN or inf."""
        self.step, self.global_step = self.step + 1, self.global_step + 1
        self.bad_steps += 1

    def describe(self) -> str:
        if self.step == 0 and self.epoch > 0:
            return f"the end of epoch {self.epoch} (step {self.global_step})"
        return f"epoch {self.epoch + 1}, step {self.step} (step {self.global_step} in all)"


PROGRESS_FIELDS = tuple(f.name for f in fields(Progress))


def _create_params(model: Callable, guide: Callable, batch: Sequence[torch.Tensor]) -> None:
    """Run guide and model once so every ``pyro.param`` exists in the param store."""
    guide_trace = poutine.trace(guide).get_trace(*batch)
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)


def model_params(module: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
    """What a checkpoint holds of the parameters: the model's ``state_dict()`` (buffers
    included, names independent of its param-store scope), else the param store's
    unconstrained values for model/guide functions that are not a model's methods."""
    if module is not None:
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu() for k, v in pyro.get_param_store().named_parameters()}


def load_model_params(module: nn.Module, saved: Dict[str, torch.Tensor], source) -> None:
    """Load a checkpoint's parameters and buffers into ``module``, in place.

    Checkpoints of format 1 and 2 held param-store names (``"decoder$$$net.0.weight"``)
    and no buffers; they load too.
    """
    if any("$$$" in k for k in saved):
        saved = {k.replace("$$$", "."): v for k, v in saved.items()}
        saved = {**{k: v for k, v in module.state_dict().items() if k not in saved}, **saved}
    expected = module.state_dict()
    differ = sorted(set(saved) ^ set(expected))
    if differ:
        raise ValueError(f"checkpoint: {source} does not match the model (entries {differ[:4]} "
                         "differ); it was written by another model configuration")
    for name, value in expected.items():
        if saved[name].shape != value.shape:
            raise ValueError(
                f"checkpoint: {source} was written by another model configuration "
                f"({name} has shape {list(saved[name].shape)}, expected {list(value.shape)})"
            )
    module.load_state_dict(saved)


def _restore(state: Dict[str, Any], step, source: Path) -> None:
    """Copy checkpointed parameter values into the model (or the param store) in place."""
    saved = state["params"]
    if step.module is not None:
        load_model_params(step.module, saved, source)
        step.load_state_dict(state["optim"])
        return
    current = dict(pyro.get_param_store().named_parameters())
    if set(saved) != set(current):
        raise ValueError(
            f"checkpoint: {source} was written by another model configuration "
            f"(parameters {sorted(set(saved) ^ set(current))[:4]} differ)"
        )
    for name, value in current.items():
        if saved[name].shape != value.shape:
            raise ValueError(
                f"checkpoint: {source} was written by another model configuration "
                f"({name} has shape {list(saved[name].shape)}, expected {list(value.shape)})"
            )
        with torch.no_grad():
            value.copy_(saved[name])
    step.load_state_dict(state["optim"])


def _check_data(
    model: Callable, guide: Callable, data: Tensors, test_data: Optional[Tensors]
) -> Tuple[Tuple[torch.Tensor, ...], Optional[Tuple[torch.Tensor, ...]]]:
    """``data`` and ``test_data`` as tuples, refused unless non-empty and finite.

    When ``model`` and ``guide`` are methods of a :class:`~pyro_vae.models.Model`,
    it prepares them: images cast to its dtype (a note is logged) and checked for
    shape and the likelihood's support, labels cast to int64 and checked, so a bad
    data set fails before the first step.
    """
    sets = {"data": as_tuple(data)}
    if test_data is not None:
        sets["test_data"] = as_tuple(test_data)
    module = owner(model, guide)
    for name, tensors in sets.items():
        if len(tensors[0]) == 0:
            raise ValueError(f"{name}: expected at least one example, got an empty data set")
        for i, t in enumerate(tensors):
            checks.finite(name if len(tensors) == 1 else f"{name}[{i}]", t)
        if module is not None:
            sets[name] = _prepared(module, tensors, name)
    return sets["data"], sets.get("test_data")


def _prepared(module, tensors: Tuple[torch.Tensor, ...], name: str) -> Tuple[torch.Tensor, ...]:
    """Images in the model's dtype and int64 labels, both checked by the model."""
    x = module.prepare_data(tensors[0], name)
    if x.dtype != tensors[0].dtype:
        logger.info("%s: %s images cast to %s, the model's dtype", name, tensors[0].dtype, x.dtype)
    if len(tensors) == 1 or not module.uses_labels:
        return (x, *tensors[1:])
    y = module.prepare_labels(tensors[1], len(x), f"{name} labels",
                              allow_missing=module.semi_supervised)
    return (x, y, *tensors[2:])


def _snapshot(
    at: Progress,
    step,
    generator: torch.Generator,
    history: List[Dict[str, Any]],
    config: Optional[Dict[str, Any]],
    batch_size: int,
) -> Dict[str, Any]:
    """Everything the next step depends on, as plain data (see ``docs/robustness.md``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        **vars(at),
        "batch_size": batch_size,
        "params": model_params(step.module),
        "optim": step.state_dict(),
        "rng": rng_state(generator),
        # A JSON round trip turns numpy scalars from hooks into floats: the safe
        # loader refuses anything but plain types.
        "history": json.loads(json.dumps(history)),
        "config": json.loads(json.dumps(config or {})),
    }


def _resume(
    store: Checkpoints,
    model: Callable,
    guide: Callable,
    data: Sequence[torch.Tensor],
    step,
    generator: torch.Generator,
    batch_size: int,
    probe: Sequence[torch.Tensor],
) -> Tuple[Progress, List[Dict[str, Any]]]:
    """Progress, history and optimiser state of ``store``'s newest checkpoint; its
    parameters and random states are restored in place."""
    state = store.load()
    needed = ("params", "optim", "rng", "history", "batch_size", *PROGRESS_FIELDS)
    missing = [k for k in needed if k not in state]
    if state.get("format") != CHECKPOINT_FORMAT or missing:
        raise ValueError(
            f"checkpoint: {store.latest} cannot be resumed: expected format "
            f"{CHECKPOINT_FORMAT} with {list(needed)}, got format {state.get('format')} "
            f"without {missing}"
        )
    # A mid-epoch position means "the next batches of this order": it holds only for
    # the same number of examples cut into batches of the same size.
    order = state["order"]
    if order is not None and (len(order) != len(data[0]) or state["batch_size"] != batch_size):
        raise ValueError(
            f"checkpoint: {store.latest} stopped mid-epoch over {len(order)} examples in "
            f"batches of {state['batch_size']}; got {len(data[0])} examples in batches "
            f"of {batch_size}"
        )
    _create_params(model, guide, probe)
    _restore(state, step, store.latest)
    set_rng_state(state["rng"], generator)
    at = Progress(**{k: state[k] for k in PROGRESS_FIELDS})
    logger.info("resumed from %s at %s", store.latest, at.describe())
    return at, list(state["history"])


def fit(
    model: Callable,
    guide: Callable,
    data: Tensors,
    *,
    test_data: Optional[Tensors] = None,
    epochs: int = 10,
    batch_size: int = 128,
    elbo: Union[str, ELBO, None] = None,
    optim: Optional[pyro.optim.PyroOptim] = None,
    step: Optional[str] = None,
    lr: float = 1e-3,
    clip_norm: Optional[float] = None,
    seed: Optional[int] = 0,
    device: Union[str, torch.device, None] = None,
    transform: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    evaluate: Optional[Callable[[], Dict[str, float]]] = None,
    run_dir: Union[str, Path, None] = None,
    checkpoint_every: int = 1,
    checkpoint_steps: int = 0,
    keep_checkpoints: int = 2,
    resume: bool = False,
    max_bad_steps: int = 0,
    config: Optional[Dict[str, Any]] = None,
    hooks: Sequence[Callable[[Dict[str, Any]], None]] = (),
    batches: Optional[Batches] = None,
    step_hooks: Sequence[Callable[[float], None]] = (),
    progress: bool = False,
    distributed: bool = False,
) -> List[Dict[str, Any]]:
    """Train ``model``/``guide`` with stochastic variational inference.

    Each epoch draws a random order of the ``N`` examples; each step slices every
    tensor of ``data`` with the next ``batch_size`` indices of that order and calls
    one SVI step on it (``step(*batch)``), so the model and guide receive the same positional
    arguments (``model(x)``, or ``model(x, y)`` when ``data = (x, y)``). A
    ``batch_size`` larger than ``N`` is allowed and means one full batch per epoch
    (as with a ``DataLoader``); a warning says so. ``batches`` replaces that policy,
    e.g. to interleave labelled ``(x, y)`` and unlabelled ``(x,)`` batches.

    Parameters live in Pyro's param store, as for any ``SVI``. Each model of
    :mod:`pyro_vae.models` registers its networks under its own name there, so
    several models train in one process; its checkpoints hold its ``state_dict()``.

    With ``run_dir``, checkpoints are written atomically every ``checkpoint_every``
    epochs (and the last) and every ``checkpoint_steps`` steps; ``resume=True``
    continues from the newest one exactly where it was written: with the same
    arguments the final parameters equal those of an uninterrupted run, bit for bit
    on the CPU. Without ``resume`` the checkpoints already in ``run_dir`` are deleted.
    A first SIGINT or SIGTERM lets the current step finish, writes a checkpoint and
    raises :class:`pyro_vae.interrupt.Interrupted`.

    A step that meets a NaN or inf (loss, gradient, or a distribution's arguments)
    leaves the parameters untouched (see :mod:`pyro_vae.steps`); after more than
    ``max_bad_steps`` such steps in the run, ``FloatingPointError`` names the problem,
    the epoch and the step, and the last checkpoint on disk is the last good one.

    :param data: a tensor or tuple of tensors with a shared first dimension ``N``;
        moved to ``device`` once and batched by index. Checked before the first step:
        non-empty, finite, and, when ``model`` is a bound method of an object with
        ``check_data`` (every model of :mod:`pyro_vae.models`), fit for that model.
    :param test_data: held-out data, evaluated after each epoch with
        :func:`pyro_vae.evaluate.elbo_terms` (``test_loss``, ``recon``, ``kl``).
    :param elbo: a name in :data:`ELBOS` or any Pyro ``ELBO`` object; default the
        model's own (:attr:`~pyro_vae.models.Model.elbo`), else ``Trace_ELBO``.
    :param optim: a Pyro optimiser (implies ``step="svi"``); default Adam with ``lr``.
    :param step: ``"fused"`` (the default where it applies): the ELBO's
        ``differentiable_loss`` and one fused ``torch.optim.Adam``; ``"svi"``: Pyro's
        ``SVI.step`` with a Pyro optimiser. Same loss and gradients; see
        :mod:`pyro_vae.steps`.
    :param clip_norm: clip each parameter's gradient norm (default optimiser only).
    :param seed: seeds Pyro, torch, numpy and python, and the batch order.
    :param device: where ``data`` lives (``"auto"``, ``"cpu"``, ``"cuda"``); the
        networks of ``model`` and ``guide`` must already be there.
    :param transform: ``transform(x_batch, generator)`` applied to the first tensor of
        every batch, e.g. a fresh binarisation each epoch.
    :param evaluate: ``evaluate() -> dict`` of extra metrics merged in each epoch.
    :param run_dir: folder for ``metrics.jsonl`` and checkpoints; none if ``None``.
    :param checkpoint_every: epochs between checkpoints (the last epoch always writes).
    :param checkpoint_steps: steps between checkpoints as well; 0 for none.
    :param keep_checkpoints: checkpoints kept, the newest as ``checkpoint.pt``.
    :param resume: continue from ``run_dir/checkpoint.pt`` when it exists.
    :param max_bad_steps: steps with a non-finite loss skipped before stopping.
    :param config: a JSON-able dict stored in each checkpoint.
    :param hooks: ``hook(metrics)`` called after each epoch's metrics are written.
    :param batches: ``batches(data, generator)`` -> the epoch's batches, a sequence of
        argument tuples; called once per epoch with ``data`` on ``device`` and the
        seeded batch-order generator (again from the same state when a run resumes
        mid-epoch). Default: the model's own policy
        (:meth:`~pyro_vae.models.Model.batching`, e.g. M2's labelled and unlabelled
        batches), else a shuffled order cut into ``batch_size`` slices.
    :param step_hooks: ``hook(progress)`` called before each step with the training
        progress in epochs once that step is done, ``epoch - 1 + (step + 1) / steps``
        (in ``(0, epochs]``), e.g. to anneal ``beta``
        (:class:`pyro_vae.schedules.KLWarmup`).
    :param progress: show a tqdm bar per epoch.
    :param distributed: train data-parallel over the initialised ``torch.distributed``
        process group (see :mod:`pyro_vae.distributed`): each rank steps on its
        shard of every epoch through DDP; rank 0 alone logs, evaluates and writes
        ``run_dir``. ``model`` and ``guide`` must be methods of one ``nn.Module``
        holding every parameter (as for every model of :mod:`pyro_vae.models`).
    :returns: the per-epoch metrics, one dict per epoch (earlier epochs included when
        resuming).
    """
    data, test_data = _check_data(model, guide, data, test_data)
    n = len(data[0])
    epochs = checks.integer("epochs", epochs, minimum=0)
    batch_size = checks.integer("batch_size", batch_size)
    checkpoint_every = checks.integer("checkpoint_every", checkpoint_every)
    checkpoint_steps = checks.integer("checkpoint_steps", checkpoint_steps, minimum=0)
    keep_checkpoints = checks.integer("keep_checkpoints", keep_checkpoints)
    max_bad_steps = checks.integer("max_bad_steps", max_bad_steps, minimum=0)
    owner_model = owner(model, guide)
    if owner_model is not None:  # what the model declares, unless told otherwise
        elbo = owner_model.elbo if elbo is None else elbo
        if batches is None and len(data) > 1:
            batches = owner_model.batching(batch_size)
    loss = make_elbo("Trace_ELBO" if elbo is None else elbo)
    if owner_model is not None:
        owner_model.check_elbo(loss)
    # The fused step needs the ELBO's differentiable_loss (RenyiELBO has none) and
    # its own optimiser; otherwise Pyro's SVI step does the work.
    fusable = optim is None and hasattr(loss, "differentiable_loss")
    step = step or ("fused" if fusable else "svi")
    checks.one_of("step", step, STEPS)
    if optim is not None and clip_norm:
        raise ValueError("clip_norm: applies to the default optimiser only; pass "
                         "clip_args to your own Pyro optimiser instead")
    if step == "fused" and not fusable:
        raise ValueError(
            "step: 'fused' needs fit's own optimiser and an ELBO with differentiable_loss; "
            f"got optim={type(optim).__name__}, elbo={type(loss).__name__} (use step='svi')"
        )
    if batch_size > n:
        logger.warning("batch_size %d exceeds the %d examples: one full batch per epoch",
                       batch_size, n)
    if device is not None:
        device = resolve_device(device)
        data = tuple(t.to(device) for t in data)
        if test_data is not None:
            test_data = tuple(t.to(device) for t in test_data)
    writer = True  # this process logs, evaluates and writes the run folder
    if distributed:
        if batches is not None:
            raise ValueError("batches: a custom batching policy cannot be sharded over ranks")
        module = _ddp_module(model, guide)
        writer = dist_rank() == 0
        progress = progress and writer
    store = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        if writer:
            check_writable(run_dir, "run_dir")
            remove_stale_temps(run_dir)
        store = Checkpoints(run_dir, keep_checkpoints)

    if seed is not None:
        pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    if distributed:
        if step != "fused":
            raise ValueError("distributed: runs with the fused step (DDP over the ELBO's loss)")
        stepper = ddp_step(module, model, guide, loss, lr=checks.positive_number("lr", lr),
                           clip_norm=clip_norm or None)
    elif step == "svi":
        stepper = SVIStep(model, guide, loss, optim or make_optim(lr, clip_norm))
    else:
        stepper = FusedStep(model, guide, loss, lr=checks.positive_number("lr", lr),
                            clip_norm=clip_norm and checks.positive_number("clip_norm", clip_norm))

    at, history = Progress(), []
    if resume and store is not None and store.latest.is_file():
        # one batch to run the model on, so that its parameters exist before loading
        probe = (tuple(t[:1] for t in data) if batches is None
                 else batches(data, torch.Generator().manual_seed(0))[0])
        at, history = _resume(store, model, guide, data, stepper, generator, batch_size, probe)
    elif store is not None and writer:
        store.clear()

    def save(at: Progress) -> None:
        if store is not None and writer:
            store.save(_snapshot(at, stepper, generator, history, config, batch_size))

    def stop_if_asked(at: Progress) -> None:
        signum = pending()
        if signum is None:
            return
        save(at)
        saved = f"checkpoint written to {store.latest}" if store else "nothing saved (no run_dir)"
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at {at.describe()}; {saved}", signum
        )

    with deferred_signals() as pending:
        for epoch in range(at.epoch + 1, epochs + 1):
            epoch_batches = _epoch_batches(at, data, batches, batch_size, generator,
                                           distributed)
            t0, seen0 = time.perf_counter(), at.seen
            # ``with``: the bar is cleared however the epoch ends, so a message printed
            # on an interrupt or an error starts on a clean line.
            num_steps = len(epoch_batches)
            with tqdm(total=num_steps, initial=at.step, desc=f"epoch {epoch}/{epochs}",
                      leave=False, disable=not progress) as bar:
                while at.step < num_steps:
                    batch = list(epoch_batches[at.step])
                    if transform is not None:
                        batch[0] = transform(batch[0], generator)
                    for hook in step_hooks:
                        hook(epoch - 1 + (at.step + 1) / num_steps)
                    try:
                        at.count(stepper(*batch), len(batch[0]))
                    except NonFiniteStep as err:
                        at.count_bad()
                        _bad_step(at, str(err), num_steps, max_bad_steps, store)
                    bar.update()
                    bar.set_postfix(loss=f"{at.loss / max(at.seen, 1):.2f}", refresh=False)
                    if checkpoint_steps and at.global_step % checkpoint_steps == 0:
                        save(at)
                    stop_if_asked(at)
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize()
            epoch_s = time.perf_counter() - t0
            loss_sum, seen, seen_now = at.loss, at.seen, at.seen - seen0
            if distributed:  # the whole epoch's figures, summed over ranks
                loss_sum, seen, seen_now = all_sum(
                    torch.tensor([at.loss, at.seen, seen_now], dtype=torch.float64)).tolist()
            metrics: Dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum / seen if seen else math.nan,
                "epoch_s": epoch_s,
                "images_per_s": seen_now / epoch_s,
            }
            if max_bad_steps:
                metrics["bad_steps"] = at.bad_steps
            if test_data is not None and writer:
                metrics.update(elbo_terms(model, guide, test_data, max(batch_size, 1000)))
            if evaluate is not None and writer:
                metrics.update(evaluate())
            history.append(metrics)
            if writer:
                logger.info(
                    "epoch %d  %s",
                    epoch,
                    "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch"),
                )
            at = Progress(epoch=epoch, global_step=at.global_step, bad_steps=at.bad_steps)
            if run_dir is not None and writer:
                lines = "".join(json.dumps(row) + "\n" for row in history)
                atomic_write(run_path(run_dir, METRICS), lambda f: f.write(lines.encode()))
                if epoch % checkpoint_every == 0 or epoch == epochs:
                    save(at)
            for hook in hooks:
                hook(metrics)
            stop_if_asked(at)
    return history


class _Slices(Sequence):
    """Batches sliced from ``data`` on demand, one index tensor each."""

    def __init__(self, data: Sequence[torch.Tensor], indices: Sequence[torch.Tensor]):
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, ...]:
        return tuple(t[self.indices[i]] for t in self.data)


def _epoch_batches(
    at: Progress,
    data: Sequence[torch.Tensor],
    batches: Optional[Batches],
    batch_size: int,
    generator: torch.Generator,
    distributed: bool,
) -> Sequence[Sequence[torch.Tensor]]:
    """The batches of epoch ``at.epoch + 1``, the same again when it is resumed part-way.

    By default a random order of the examples (kept in ``at.order``) cut into slices;
    with a policy ``batches``, what it draws from the generator state kept in
    ``at.batch_state``.
    """
    if batches is None:
        if at.order is None:  # a fresh epoch, not one resumed part-way through
            at.order = torch.randperm(len(data[0]), generator=generator)
        # indices live beside the data: no host-to-device copy per step
        order = at.order.to(data[0].device)
        if distributed:
            order = shard(order, dist_rank(), world_size())
        return _Slices(data, order.split(batch_size))
    resumed = at.batch_state is not None
    now = generator.get_state()
    if resumed:
        generator.set_state(at.batch_state)
    else:
        at.batch_state = now
    epoch_batches = batches(tuple(data), generator)
    if resumed:
        generator.set_state(now)
    if not len(epoch_batches):
        raise ValueError(f"batches: the batching policy gave no batches for epoch {at.epoch + 1}")
    return epoch_batches


def _bad_step(
    at: Progress, problem: str, num_steps: int, max_bad_steps: int, store: Optional[Checkpoints]
) -> None:
    """Warn of a skipped step, or stop once more than ``max_bad_steps`` were skipped."""
    where = f"epoch {at.epoch + 1}, step {at.step} of {num_steps}"
    if at.bad_steps <= max_bad_steps:
        logger.warning("%s at %s: step skipped (%d of at most %d)",
                       problem, where, at.bad_steps, max_bad_steps)
        return
    kept = (f"the last checkpoint, {store.latest}, is intact" if store and store.latest.is_file()
            else "no checkpoint was written")
    raise FloatingPointError(
        f"{problem} at {where}, the parameters were left as they were; {kept} "
        "(try a smaller lr, clip_norm, or max_bad_steps to skip such steps)"
    )


def _ddp_module(model: Callable, guide: Callable) -> nn.Module:
    """The ``nn.Module`` whose methods ``model`` and ``guide`` are, for DDP to wrap."""
    module = getattr(model, "__self__", None)
    if not isinstance(module, nn.Module) or getattr(guide, "__self__", None) is not module:
        raise ValueError(
            "distributed: model and guide must be methods of one nn.Module that holds "
            f"every parameter (as pyro_vae's models are), got {model!r} and {guide!r}"
        )
    if world_size() == 1 and not torch.distributed.is_initialized():
        raise ValueError(
            "distributed: no torch.distributed process group; launch with torchrun or "
            "call torch.distributed.init_process_group first"
        )
    return module
