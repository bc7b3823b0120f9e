"""The SVI runner: :func:`fit` trains any Pyro model/guide pair on in-memory tensors.

A thin facade over :class:`~pyro_vae.training.Trainer`: it checks its arguments and
data, builds the step (:mod:`pyro_vae.steps`) and the callbacks its keyword arguments
ask for (:mod:`pyro_vae.training.callbacks`), and runs the loop. See
``docs/training.md`` and ``docs/robustness.md``.
"""

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

import pyro
import pyro.optim
from pyro.infer import (
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from . import checks, runs
from .compiled import why_not_captured
from .distributed import ddp_step, rank as dist_rank, world_size
from .evaluate import Tensors, as_tuple
from .iwae import IWAE
from .steps import STEPS, FusedStep, NonFiniteStep, SafeSVI, SVIStep, make_optim, owner  # noqa: F401
from .steps import torch_optimizer
from .training import callbacks as cb
from .training.averaging import KINDS as AVERAGES, WeightAverage
from .training.state import CHECKPOINT_FORMAT, PROGRESS_FIELDS, Progress  # noqa: F401
from .training.trainer import Batches, Slices, Trainer

logger = logging.getLogger(__name__)

ELBOS = {
    "Trace_ELBO": Trace_ELBO,
    "TraceMeanField_ELBO": TraceMeanField_ELBO,
    "TraceGraph_ELBO": TraceGraph_ELBO,
    # max_plate_nesting=1: every model here has the single plate "data".
    "TraceEnum_ELBO": lambda **kw: TraceEnum_ELBO(max_plate_nesting=1, **kw),
    "RenyiELBO": RenyiELBO,  # alpha = 0 by default: the IW bound, its K draws one by one
    # The importance-weighted bound of Burda et al. (2015), num_particles = K draws per
    # item in one pass over the batch replicated K times (reparameterised guides).
    "IWAE": IWAE,
}
METRICS = cb.METRICS


def shuffled_batches(batch_size: int) -> Batches:
    """:func:`fit`'s own batching as a policy: a random order cut into ``batch_size``
    slices of every tensor (``(x[idx], y[idx])`` for ``data = (x, y)``); the last
    batch is smaller when ``batch_size`` does not divide ``N``."""

    def batches(data: Tuple[torch.Tensor, ...], generator: torch.Generator):
        order = torch.randperm(len(data[0]), generator=generator).to(data[0].device)
        return Slices(data, order.split(batch_size))

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


def fit(
    model: Callable,
    guide: Callable,
    data: Tensors,
    *,
    test_data: Optional[Tensors] = None,
    val_data: Optional[Tensors] = None,
    epochs: int = 10,
    batch_size: int = 128,
    elbo: Union[str, ELBO, None] = None,
    optim: Optional[pyro.optim.PyroOptim] = None,
    step: Optional[str] = None,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_schedule: str = "none",
    clip_norm: Optional[float] = None,
    weight_average: str = "none",
    average_start: int = 0,
    ema_decay: float = 0.999,
    early_stopping: int = 0,
    seed: Optional[int] = 0,
    device: Union[str, torch.device, None] = None,
    transform: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    evaluate: Optional[Callable[[], Dict[str, float]]] = None,
    run_dir: Union[str, Path, None] = None,
    checkpoint_every: int = 1,
    checkpoint_steps: int = 0,
    keep_checkpoints: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    max_bad_steps: int = 0,
    config: Optional[Dict[str, Any]] = None,
    callbacks: Sequence[cb.Callback] = (),
    hooks: Sequence[Callable[[Dict[str, Any]], None]] = (),
    batches: Optional[Batches] = None,
    step_hooks: Sequence[Callable[[float], None]] = (),
    tensorboard: bool = False,
    progress: Optional[bool] = None,
    distributed: bool = False,
) -> List[Dict[str, Any]]:
    """Train ``model``/``guide`` with stochastic variational inference; the per-epoch metrics.

    Each epoch draws a random order of the ``N`` examples; each step slices every
    tensor of ``data`` with the next ``batch_size`` indices of that order and calls
    one SVI step on it (``step(*batch)``), so the model and guide receive the same
    positional arguments (``model(x)``, or ``model(x, y)`` when ``data = (x, y)``).
    A ``batch_size`` larger than ``N`` means one full batch per epoch (a warning says
    so). ``batches`` replaces that policy.

    Parameters live in Pyro's param store, as for any ``SVI``. Each model of
    :mod:`pyro_vae.models` registers its networks under its own name there, so
    several models train in one process; its checkpoints hold its ``state_dict()``.
    When ``model`` and ``guide`` are methods of such a model, its declarations apply:
    its own ELBO and batching policy (M2's) unless others are given, and its checks
    and casts of the data before the first step.

    With ``run_dir``, the folder gets ``config.json``, ``metrics.jsonl`` and atomic
    checkpoints every ``checkpoint_every`` epochs (and the last) and every
    ``checkpoint_steps`` steps; a folder that already holds a run is refused unless
    ``resume`` (continue exactly where the newest checkpoint was written: with the
    same arguments the final parameters equal those of an uninterrupted run, bit for
    bit on the CPU) or ``overwrite``. A first SIGINT or SIGTERM lets the current step
    finish, writes a checkpoint and raises :class:`pyro_vae.interrupt.Interrupted`.
    A step that meets a NaN or inf leaves the parameters untouched; after more than
    ``max_bad_steps`` such steps ``FloatingPointError`` names the epoch and the step.

    :param data: a tensor (or numpy array) or a tuple of them with a shared first
        dimension ``N``; moved to ``device`` once and batched by index; checked first.
    :param test_data: held-out data, evaluated after each epoch (``test_loss``,
        ``recon``, ``kl``).
    :param val_data: a validation split (never the test set), evaluated after each
        epoch (``val_loss``, ...); with ``run_dir`` its best epoch is kept as
        ``best.pt``, and ``early_stopping = P > 0`` stops after ``P`` epochs without
        improvement.
    :param elbo: a name in :data:`ELBOS` or any Pyro ``ELBO``; default the model's own.
    :param optim: a Pyro optimiser (implies ``step="svi"``); default ``optimizer``.
    :param step: ``"compiled"`` (default for models that declare ``capturable`` with a
        single-particle ``Trace_ELBO`` or ``TraceMeanField_ELBO``: the loss captured
        once per shape as a graph, :mod:`pyro_vae.compiled`), ``"fused"`` (default
        otherwise where it applies: the ELBO's ``differentiable_loss`` and one fused
        torch optimiser) or ``"svi"`` (Pyro's ``SVI.step``). Same loss and gradients;
        see :mod:`pyro_vae.steps`.
    :param optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``, with ``lr`` and ``weight_decay``.
    :param lr_schedule: a key of :data:`pyro_vae.training.callbacks.LR_SCHEDULES`.
    :param clip_norm: clip each parameter's gradient norm (not with ``optim``).
    :param weight_average: ``"swa"`` or ``"ema"``: from the end of epoch
        ``average_start`` on, the model evaluated at the end of each epoch, checkpointed
        and left at the end is the equal (SWA) or exponential (``ema_decay``) average of
        the weights after each step (:mod:`pyro_vae.training.averaging`).
    :param seed: seeds Pyro, torch, numpy and python, and the batch order.
    :param device: where ``data`` lives; the networks must already be there.
    :param transform: ``transform(x_batch, generator)`` on the first tensor of every
        batch, e.g. a fresh binarisation each epoch.
    :param evaluate: ``evaluate() -> dict`` of extra metrics merged in each epoch.
    :param config: a JSON-able dict saved as ``config.json`` and in each checkpoint.
    :param callbacks: your own :class:`~pyro_vae.training.callbacks.Callback` s, run
        after evaluation and before logging and saving.
    :param hooks: ``hook(metrics)`` after each epoch, once everything is saved.
    :param step_hooks: ``hook(t)`` before each step, ``t`` the progress in epochs.
    :param tensorboard: log every metric to ``run_dir/tensorboard``.
    :param progress: a progress bar and one log line per epoch on stderr; default:
        when stderr is a terminal.
    :param distributed: data-parallel over the initialised ``torch.distributed``
        process group (:mod:`pyro_vae.distributed`); rank 0 alone evaluates and writes.
    """
    data, test_data = _check_data(model, guide, data, test_data)
    val_data = None if val_data is None else _check_data(model, guide, val_data, None)[0]
    args = _checked(epochs=epochs, batch_size=batch_size, checkpoint_every=checkpoint_every,
                    checkpoint_steps=checkpoint_steps, keep_checkpoints=keep_checkpoints,
                    max_bad_steps=max_bad_steps, early_stopping=early_stopping)
    checks.one_of("weight_average", weight_average, AVERAGES)  # before anything is written
    averaging = ([] if weight_average == "none"
                 else [WeightAverage(weight_average, average_start, ema_decay)])
    if args["early_stopping"] and val_data is None:
        raise ValueError("early_stopping: needs val_data, a validation split to watch "
                         "(never the test set)")
    module = owner(model, guide)
    loss, batches = _declared(module, elbo, batches, batch_size, len(data))
    if batch_size > len(data[0]):
        logger.warning("batch_size %d exceeds the %d examples: one full batch per epoch",
                       batch_size, len(data[0]))
    if device is not None:
        device = resolve_device(device)
        data, test_data, val_data = (None if d is None else tuple(t.to(device) for t in d)
                                     for d in (data, test_data, val_data))
    stepper = _make_step(model, guide, loss, optim, step, optimizer, lr, weight_decay,
                         clip_norm, distributed)
    extra = _extra_steps(module, torch_optimizer(optimizer, lr, weight_decay), distributed)
    if run_dir is not None and dist_rank() == 0:
        _start_run(run_dir, resume, overwrite, config or {"fit": _describe(locals())})
    if seed is not None:
        pyro.set_rng_seed(seed)
    show = sys.stderr.isatty() if progress is None else progress
    trainer = Trainer(model, guide, stepper, batch_size=batch_size, batching=batches,
                      extra_steps=extra,
                      transform=transform, seed=seed, max_bad_steps=args["max_bad_steps"],
                      distributed=distributed, config=config, callbacks=[
                          *averaging,
                          *_metric_callbacks(test_data, val_data, batch_size, evaluate,
                                             step_hooks, lr_schedule, lr),
                          *callbacks, *_run_callbacks(run_dir, args, resume, show, tensorboard,
                                                      val_data is not None),
                          cb.EpochHooks(hooks)])
    return trainer.fit(data, args["epochs"])


def _declared(module, elbo, batches, batch_size: int, num_tensors: int):
    """The ELBO and batching policy: those given, else what the model declares."""
    if module is not None:
        elbo = module.elbo if elbo is None else elbo
        if batches is None and num_tensors > 1:
            batches = module.batching(batch_size)
    loss = make_elbo("Trace_ELBO" if elbo is None else elbo)
    if module is not None:
        module.check_elbo(loss)
    return loss, batches


def _extra_steps(module, make_optimizer, distributed: bool) -> Dict[str, Any]:
    """The model's own extra steps (a discriminator's), each with its optimiser."""
    extra = {} if module is None else module.extra_steps(make_optimizer)
    if extra and distributed:
        raise ValueError(f"distributed: a model with extra steps ({', '.join(extra)}) "
                         "trains in one process")
    return extra


def _start_run(run_dir, resume: bool, overwrite: bool, config: Dict[str, Any]) -> None:
    """The run folder's rules (:func:`pyro_vae.runs.prepare`), then its ``config.json``,
    rewritten on resume when the settings changed (more epochs, weight averaging added)."""
    runs.prepare(run_dir, resume, overwrite)
    if (not resume or not (Path(run_dir) / runs.CONFIG).exists()
            or runs.read_config(run_dir) != json.loads(json.dumps(config))):
        runs.write_config(run_dir, config, world_size())


def _checked(**values) -> Dict[str, int]:
    least = {"epochs": 0, "checkpoint_steps": 0, "max_bad_steps": 0, "early_stopping": 0}
    return {k: checks.integer(k, v, minimum=least.get(k, 1)) for k, v in values.items()}


def _describe(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """fit's JSON-able arguments, for the ``config.json`` of a run started from Python."""
    plain = (str, int, float, bool, type(None))
    return {k: (v if isinstance(v, plain) else repr(v)) for k, v in arguments.items()
            if k not in ("data", "test_data", "val_data", "module", "stepper", "loss")
            and isinstance(v, (*plain, Path, torch.device))}


def _make_step(model, guide, loss: ELBO, optim, step: Optional[str], optimizer: str, lr: float,
               weight_decay: float, clip_norm: Optional[float], distributed: bool):
    """The step: compiled or fused where they apply, Pyro's SVI.step otherwise, DDP when
    distributed."""
    # The fused step needs the ELBO's differentiable_loss (RenyiELBO has none) and
    # its own optimiser; otherwise Pyro's SVI step does the work. The compiled step is
    # the fused step on a captured loss, for the models and ELBOs it applies to.
    fusable = optim is None and hasattr(loss, "differentiable_loss")
    if step is None:
        module = owner(model, guide)
        capturable = (module is not None and not distributed
                      and why_not_captured(module, loss) is None)
        step = ("compiled" if capturable else "fused") if fusable else "svi"
    checks.one_of("step", step, STEPS)
    if optim is not None and clip_norm:
        raise ValueError("clip_norm: applies to the default optimiser only; pass "
                         "clip_args to your own Pyro optimiser instead")
    if step in ("fused", "compiled") and not fusable:
        raise ValueError(
            f"step: {step!r} needs fit's own optimiser and an ELBO with differentiable_loss; "
            f"got optim={type(optim).__name__}, elbo={type(loss).__name__} (use step='svi')")
    clip = clip_norm and checks.positive_number("clip_norm", clip_norm)
    make = torch_optimizer(optimizer, lr, weight_decay)
    if distributed:
        if step != "fused":
            raise ValueError("distributed: runs with the fused step (DDP over the ELBO's loss)")
        return ddp_step(_ddp_module(model, guide), model, guide, loss, lr=lr,
                        clip_norm=clip or None, optimizer=make)
    if step == "svi":
        return SVIStep(model, guide, loss,
                       optim or make_optim(lr, clip_norm, optimizer, weight_decay))
    return STEPS[step](model, guide, loss, lr=lr, clip_norm=clip, optimizer=make)


def _metric_callbacks(test_data, val_data, batch_size: int, evaluate, step_hooks,
                      lr_schedule: str, lr: float) -> List[cb.Callback]:
    """Callbacks that compute figures or change the model before each step."""
    out: List[cb.Callback] = [cb.StepHook(hook) for hook in step_hooks]
    if lr_schedule != "none":
        out.append(cb.LRSchedule(lr_schedule, lr))
    size = max(batch_size, 1000)
    if test_data is not None:
        out.append(cb.Evaluation(test_data, size))
    if val_data is not None:
        out.append(cb.Evaluation(val_data, size, prefix="val"))
    if evaluate is not None:
        out.append(cb.Metrics(evaluate))
    return out


def _run_callbacks(run_dir, args: Dict[str, int], resume: bool, progress: bool,
                   tensorboard: bool, validated: bool) -> List[cb.Callback]:
    """Callbacks that report, keep the best model, and write the run folder (last)."""
    out: List[cb.Callback] = []
    if validated:
        out.append(cb.EarlyStopping("val_loss", args["early_stopping"], run_dir=run_dir))
    if progress:
        out += [cb.ProgressBar(), _EpochLine()]
    out.append(cb.EpochLog())
    if run_dir is None:
        return out
    if tensorboard:
        out.append(cb.TensorBoard(Path(run_dir) / "tensorboard"))
    return out + [cb.MetricsFile(run_dir), cb.Checkpointing(
        run_dir, every=args["checkpoint_every"], steps=args["checkpoint_steps"],
        keep=args["keep_checkpoints"], resume=resume)]


class _EpochLine(cb.Callback):
    """One line per epoch on stderr, for a user at a terminal."""

    rank_zero = True

    def on_epoch_end(self, state, metrics):
        shown = ("train_loss", "test_loss", "val_loss", "test_accuracy", "epoch_s")
        print(f"epoch {metrics['epoch']}/{state.epochs}  " + "  ".join(
            f"{k} {metrics[k]:.4g}" for k in shown if k in metrics), file=sys.stderr)


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
