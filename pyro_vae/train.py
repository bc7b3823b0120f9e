"""From a :class:`~pyro_vae.config.TrainConfig` to a finished run folder, and back.

A run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and the
figures ``samples.png``, ``reconstructions.png`` and ``curves.png`` (and
``class_samples.png``, one row per class, for models of labelled data).

Models declare what they need by class attributes, never by name: ``uses_labels``
(batches are ``(x, y)``), ``semi_supervised`` (labels may be missing: ``--labels``
keeps some, :class:`~pyro_vae.semisupervised.InterleavedBatches` batches them),
``elbo`` (the ELBO behind ``--elbo auto``) and a ``classify`` method
(``test_accuracy`` is logged each epoch).
"""

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import pyro

from . import checks, plots
from .checkpoint import (
    CHECKPOINT, Checkpoints, check_writable, load_checkpoint, remove_stale_temps, run_path,
    write_json,
)
from .config import TrainConfig
from .data import BINARIZE, DATASETS, ImageData, binarize, load_dataset
from .distributed import init_from_env, launched, rank
from .evaluate import accuracy
from .guides import GUIDES
from .infer import ELBOS, METRICS, fit, load_model_params, resolve_device
from .likelihoods import LIKELIHOODS
from .models import MODELS
from .models.m2 import ENUM_DISCRETE
from .nets import ACTIVATIONS
from .priors import PRIORS
from .schedules import SCHEDULES, KLWarmup
from .semisupervised import InterleavedBatches, keep_labels
from .stacking import encode_data
from .steps import STEPS

logger = logging.getLogger(__name__)
TEST_BINARIZE_SEED = 0  # the binarised test set is the same for every run
CONFIG = "config.json"
FIGURES = ("samples.png", "reconstructions.png", "curves.png")
# Fields a resumed run may change: how long it runs, where its data lie, where and
# how often it saves, how many bad steps it tolerates. A change to any other field
# would make the continuation a different run, so it is refused.
RESUMABLE_FIELDS = ("epochs", "data_dir", "device", "out", "checkpoint_every",
                    "checkpoint_steps", "keep_checkpoints", "max_bad_steps")


def check_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` (``TypeError``) naming the first field that cannot work."""
    choices = {
        "dataset": DATASETS,
        "model": MODELS,
        "prior": PRIORS,
        "guide": GUIDES,
        "likelihood": LIKELIHOODS,
        "activation": ACTIVATIONS,
        "elbo": ["auto", *sorted(ELBOS)],
        "binarize": BINARIZE,
        "step": ("auto", *STEPS),
        "warmup": SCHEDULES,
        "enum_discrete": ENUM_DISCRETE,
    }
    for name, valid in choices.items():
        checks.one_of(name, getattr(config, name), valid)
    minimum = {"z_dim": 1, "batch_size": 1, "num_particles": 1, "checkpoint_every": 1,
               "keep_checkpoints": 1, "epochs": 0, "checkpoint_steps": 0, "max_bad_steps": 0,
               "mixture_components": 1, "pseudo_inputs": 1, "flow_layers": 1, "guide_rank": 1}
    for name, least in minimum.items():
        checks.integer(name, getattr(config, name), least)
    for name in ("lr", "beta", "normal_scale", "warmup_epochs"):
        checks.positive_number(name, getattr(config, name))
    if config.clip_norm != 0:
        checks.positive_number("clip_norm", config.clip_norm)
    if not config.alpha >= 0:
        raise ValueError(f"alpha: expected a non-negative weight, got {config.alpha!r}")
    if config.labels is not None:
        semi = sorted(k for k, cls in MODELS.items() if getattr(cls, "semi_supervised", False))
        if config.model not in semi:
            raise ValueError(
                f"labels: model {config.model!r} does not learn from unlabelled images; "
                f"--labels needs one of {semi}"
            )
        checks.integer("labels", config.labels, 0)
    if config.features and config.likelihood == "bernoulli":
        raise ValueError(
            "likelihood: the codes of --features are real-valued; use --likelihood normal"
        )
    if (getattr(MODELS[config.model], "elbo", None) == "TraceEnum_ELBO"
            and config.enum_discrete != "none" and config.elbo not in ("auto", "TraceEnum_ELBO")):
        raise ValueError(
            f"elbo: model {config.model!r} enumerates its label and needs TraceEnum_ELBO "
            f"(or auto), got {config.elbo!r}; --enum-discrete none samples it instead"
        )
    resolve_device(config.device)


def build_model(config: TrainConfig, x_shape, num_classes: int = 10) -> nn.Module:
    """The model named by ``config.model``, given the config fields its constructor takes."""
    cls = MODELS[config.model]
    values = {**config.to_dict(), "x_shape": tuple(x_shape), "num_classes": num_classes}
    return cls(**{k: v for k, v in values.items() if k in _arguments(cls)})


def _arguments(cls) -> set:
    """Keyword arguments of ``cls``, those it passes on to its base class by ``**`` included."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"self"}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        names |= _arguments(cls.__mro__[1])
    return names


def prepare_data(config: TrainConfig) -> ImageData:
    """The configured data set; with ``binarize="dynamic"`` its test set binarised once.

    With ``features``, the codes of that run's VAE instead (:mod:`pyro_vae.stacking`).
    """
    if config.features:
        m1, m1_config = load_run(config.features)
        if m1_config.dataset != config.dataset:
            raise ValueError(
                f"features: {config.features} was trained on {m1_config.dataset!r}, "
                f"this run is on {config.dataset!r}"
            )
        return encode_data(m1, prepare_data(m1_config))
    data = load_dataset(config.dataset, config.data_dir)
    if config.binarize == "dynamic":
        generator = torch.Generator().manual_seed(TEST_BINARIZE_SEED)
        data.x_test = binarize(data.x_test, generator)
    return data


def prepare_out(out: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Make ``out`` ready for a run: writable, and holding no other run unless asked.

    A folder that already holds a run (a ``config.json``) is continued with
    ``resume`` or emptied of that run's files with ``overwrite``; with neither it is
    refused, so a finished run is never overwritten by accident.
    """
    if resume and overwrite:
        raise ValueError("overwrite: cannot be combined with resume (resume continues the "
                         "run in out, overwrite replaces it)")
    check_writable(out, "out")
    if (out / CONFIG).exists() and not (resume or overwrite):
        raise ValueError(
            f"out: {out} already holds a run; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    if overwrite:
        Checkpoints(out).clear()
        for name in (CONFIG, METRICS, *FIGURES):
            run_path(out, name).unlink(missing_ok=True)
    remove_stale_temps(out)


def check_resumable(out: Path, config: TrainConfig, x_shape) -> None:
    """Refuse to resume ``out`` with a config that differs beyond :data:`RESUMABLE_FIELDS`."""
    path = out / CHECKPOINT
    if not path.is_file():
        return
    saved = dict(load_checkpoint(path).get("config", {}))
    saved_shape = saved.pop("x_shape", None)
    saved.pop("num_classes", None)
    try:
        before = TrainConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint: {path} holds a config this version cannot read ({err})")
    now = config.to_dict()
    changed = [f"{k} is {before[k]!r} there, {now[k]!r} here" for k in now
               if k not in RESUMABLE_FIELDS and before[k] != now[k]]
    if saved_shape is not None and tuple(saved_shape) != tuple(x_shape):
        changed.append(f"images are {list(saved_shape)} there, {list(x_shape)} here")
    if changed:
        raise ValueError(
            f"checkpoint: {path} was written by another configuration ({'; '.join(changed)}); "
            "resume with its own settings, or start a new run"
        )


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> Tuple[nn.Module, List[Dict[str, Any]]]:
    """Train the configured model; write its run folder; return the model and metrics.

    Every check (config, data, run folder, checkpoint to resume) runs before anything
    is written; see :func:`prepare_out` for ``resume`` and ``overwrite``.
    """
    check_config(config)
    out = Path(config.out)
    data = prepare_data(config)
    device = resolve_device(config.device)
    distributed = launched()  # started by torchrun with several processes
    if distributed:
        device = init_from_env(device)
    writer = rank() == 0  # rank 0 alone writes the run folder

    pyro.set_rng_seed(config.seed)
    model = build_model(config, data.x_shape, data.num_classes)
    model.check_data(data.x_train, "train data")
    model.check_data(data.x_test, "test data")
    uses_labels = model.uses_labels
    semi_supervised = model.semi_supervised
    y_train = data.y_train
    if config.labels is not None:
        y_train = keep_labels(y_train, config.labels, data.num_classes, seed=config.seed)
    if uses_labels:
        model.check_labels(y_train, len(data.x_train), "train labels", allow_missing=semi_supervised)
        model.check_labels(data.y_test, len(data.x_test), "test labels")
    if resume:
        check_resumable(out, config, data.x_shape)
    if writer:
        prepare_out(out, resume, overwrite)
        write_json(run_path(out, CONFIG), config.to_dict())
    if distributed:
        torch.distributed.barrier()  # the run folder is ready before any rank reads it
    model.to(device)

    train_set = (data.x_train, y_train) if uses_labels else (data.x_train,)
    # A semi-supervised model is scored on the bound of log p(x): its test images are unlabelled.
    test_set = (data.x_test, data.y_test) if uses_labels and not semi_supervised else (data.x_test,)
    step_hooks = []
    if config.warmup != "none":
        step_hooks.append(KLWarmup(model, SCHEDULES[config.warmup](config.warmup_epochs)))
    history = fit(
        model.model,
        model.guide,
        train_set,
        test_data=test_set,
        epochs=config.epochs,
        batch_size=config.batch_size,
        elbo=_elbo(config, model),
        lr=config.lr,
        step=None if config.step == "auto" else config.step,
        clip_norm=config.clip_norm or None,
        seed=config.seed,
        device=device,
        transform=binarize if config.binarize == "dynamic" else None,
        evaluate=_evaluate(model, data, config),
        run_dir=out,
        checkpoint_every=config.checkpoint_every,
        checkpoint_steps=config.checkpoint_steps,
        keep_checkpoints=config.keep_checkpoints,
        max_bad_steps=config.max_bad_steps,
        resume=resume,
        config={**config.to_dict(), "x_shape": list(data.x_shape), "num_classes": data.num_classes},
        batches=InterleavedBatches(config.batch_size) if semi_supervised else None,
        step_hooks=step_hooks,
        progress=progress,
        distributed=distributed,
    )
    if history and writer:
        write_figures(model, data, history, out, decode=image_decoder(config, device))
    return model, history


def _elbo(config: TrainConfig, model: nn.Module):
    name = getattr(model, "elbo", "Trace_ELBO") if config.elbo == "auto" else config.elbo
    return ELBOS[name](num_particles=config.num_particles)


def _evaluate(model: nn.Module, data: ImageData, config: TrainConfig):
    """Extra metrics per epoch: ``beta`` under a warm-up, ``test_accuracy`` of a classifier."""
    if config.warmup == "none" and not model.classifies:
        return None

    def evaluate() -> Dict[str, float]:
        metrics = {"beta": model.beta} if config.warmup != "none" else {}
        if model.classifies:
            device = next(model.parameters()).device
            metrics["test_accuracy"] = accuracy(model.classify, data.x_test.to(device), data.y_test)
        return metrics

    return evaluate


def image_decoder(config: TrainConfig, device=None) -> Optional[Callable]:
    """For a run on a VAE's codes (``features``): codes ``[N, 1, 1, D]`` -> that VAE's
    mean images; ``None`` for a run on images."""
    if not config.features:
        return None
    m1, _ = load_run(config.features, device=device or "cpu")
    return lambda codes: m1.decode(codes.flatten(1))


def write_figures(model: nn.Module, data: ImageData, history, out: Path, seed: int = 0,
                  decode: Optional[Callable] = None) -> None:
    """``samples.png``, ``reconstructions.png``, ``curves.png`` (and ``class_samples.png``
    for a model of labelled data) in ``out``. ``decode`` maps model outputs to images
    (a stacked model's codes through its VAE)."""
    decode = decode or (lambda x: x)
    uses_labels = model.uses_labels
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = decode(model.generate(64))
        if uses_labels:
            per_class = 10
            rows = [decode(model.generate(per_class, y=k)) for k in range(model.num_classes)]
    x, y = data.x_test[:32].to(device), data.y_test[:32].to(device)
    x_hat = model.reconstruct(x, y) if uses_labels else model.reconstruct(x)
    plots.save(plots.image_grid(samples, 8, title="samples from the prior"), run_path(out, "samples.png"))
    plots.save(plots.reconstructions(decode(x), decode(x_hat)), run_path(out, "reconstructions.png"))
    plots.save(plots.training_curves(history), run_path(out, "curves.png"))
    if uses_labels:
        plots.save(plots.labelled_rows(torch.stack(rows), list(range(model.num_classes)),
                                       title="samples, one row per class"),
                   run_path(out, "class_samples.png"))
    model.train()


def load_run(run_dir, device: Optional[str] = "cpu") -> Tuple[nn.Module, TrainConfig]:
    """The trained model of a run folder (its last checkpoint) and its config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir: {run_dir} is not a folder")
    state = load_checkpoint(run_dir / CHECKPOINT)
    saved = dict(state["config"])
    x_shape, num_classes = saved.pop("x_shape"), saved.pop("num_classes")
    config = TrainConfig.from_dict(saved)
    model = build_model(config, x_shape, num_classes)
    load_model_params(model, state["params"], run_dir / CHECKPOINT)
    return model.to(resolve_device(device)).eval(), config
