"""From a :class:`~pyro_vae.config.TrainConfig` to a finished run folder, and back.

A run folder (:mod:`pyro_vae.runs`) holds ``config.json``, ``metrics.jsonl``,
checkpoints and the figures ``samples.png``, ``reconstructions.png`` and ``curves.png``
(and ``class_samples.png``, one row per class, for models of labelled data). A run of
a text model (``data_kind = "text"``) has ``vocab.txt``, ``samples.txt`` (sentences
decoded from the prior, and test sentences beside their reconstructions) and
``curves.png`` instead of the image figures.

What a model needs is read from its declarations
(:class:`~pyro_vae.models.base.Model`), never from its name: ``uses_labels`` (batches
are ``(x, y)``), ``semi_supervised`` (``labels`` keeps some labels, the model's
``batching`` mixes the rest in), ``elbo`` (``--elbo auto``) and ``classifies``
(``test_accuracy`` is logged each epoch).
"""

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from . import config as configs, plots, runs
from .checkpoint import CHECKPOINT, load_checkpoint
from .config import TrainConfig
from .data import ImageData, binarize, load_dataset, perturb, split_validation
from .distributed import leave, rank
from .evaluate import accuracy
from .infer import fit, resolve_device
from .models import model_class
from .schedules import SCHEDULES
from .semisupervised import keep_labels
from .stacking import encode_data
from .text import TextData, Vocabulary, load_text
from .text.report import write_samples
from .training import averaging, callbacks as cb

logger = logging.getLogger(__name__)
TEST_BINARIZE_SEED = 0  # the binarised test set is the same for every run
CONFIG = runs.CONFIG
FIGURES = runs.FIGURES
# Fields a resumed run may change: how long it runs, where its data lie, where and
# how often it saves, how many bad steps it tolerates, how it uses the machine. A
# change to any other field would make the continuation a different run: refused.
RESUMABLE_FIELDS = ("epochs", "data_dir", "device", "out", "checkpoint_every",
                    "checkpoint_steps", "keep_checkpoints", "max_bad_steps", "threads",
                    "tensorboard")
# Weight averaging does not change training: a run may add, drop or change it on resume
# as long as its average has not begun, in the checkpoint or in the new settings.
AVERAGING_FIELDS = ("weight_average", "average_start", "ema_decay")


def check_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` (``TypeError``) naming the first field that cannot work."""
    configs.check(config)
    cls = model_class(config.model)
    if getattr(config, "features", None) and config.likelihood == "bernoulli":
        raise ValueError(
            "likelihood: the codes of --features are real-valued; use --likelihood normal"
        )
    if (cls.elbo == "TraceEnum_ELBO" and getattr(config, "enum_discrete", "none") != "none"
            and config.elbo not in ("auto", "TraceEnum_ELBO")):
        raise ValueError(
            f"elbo: model {config.model!r} enumerates its label and needs TraceEnum_ELBO "
            f"(or auto), got {config.elbo!r}; --enum-discrete none samples it instead"
        )
    resolve_device(config.device)


def build_model(config: TrainConfig, x_shape, num_classes: int = 10,
                vocab: Optional[Vocabulary] = None) -> nn.Module:
    """The model named by ``config.model``, given the config fields its constructor takes.

    A text model gets ``vocab``; else the vocabulary file of ``config.vocab``; else the
    vocabulary size ``x_shape[0]`` (sentences then print as indices)."""
    cls = model_class(config.model)
    values = {**config.to_dict(), "x_shape": tuple(x_shape), "num_classes": num_classes}
    if cls.data_kind == "text":
        values["vocab"] = vocab or _saved_vocab(config, int(x_shape[0]))
    return cls(**{k: v for k, v in values.items() if k in _arguments(cls)})


def _arguments(cls) -> set:
    """Keyword arguments of ``cls``, those it passes on to its base class by ``**`` included."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"self"}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        names |= _arguments(cls.__mro__[1])
    return names - {"name"}


def _saved_vocab(config: TrainConfig, size: int) -> Union[Vocabulary, int]:
    path = getattr(config, "vocab", None)
    if not path or not Path(path).is_file():
        return size
    vocab = Vocabulary.load(path)
    if len(vocab) != size:
        raise ValueError(f"vocab: {path} holds {len(vocab)} words, the run was trained "
                         f"with {size}")
    return vocab


def prepare_data(config: TrainConfig) -> Union[ImageData, TextData]:
    """The configured data set; with ``binarize="dynamic"`` its test set binarised once.

    With ``features`` (M1+M2), the codes of that run's VAE instead (:mod:`pyro_vae.stacking`).
    For a text model, sentences (:func:`pyro_vae.text.load_text`).
    """
    if model_class(config.model).data_kind == "text":
        return _prepare_text(config)
    features = getattr(config, "features", None)
    if features:
        m1 = runs.Run.load(features)
        if m1.config.data != config.data:
            raise ValueError(f"features: {features} was trained on {m1.config.data!r}, "
                             f"this run is on {config.data!r}")
        return encode_data(m1.model, prepare_data(m1.config))
    data = load_dataset(config.data, config.data_dir, image_size=config.image_size,
                        classes=config.classes, exclude_classes=config.exclude_class,
                        test_fraction=config.test_fraction, seed=config.seed)
    if config.train_size is not None:
        data = subset_training(data, config.train_size, config.seed)
    if config.binarize == "dynamic":
        generator = torch.Generator().manual_seed(TEST_BINARIZE_SEED)
        data.x_test = binarize(data.x_test, generator)
    return data


# Settings of image data that a text run refuses rather than ignores.
IMAGE_ONLY = {"image_size": None, "classes": None, "exclude_class": None, "binarize": "none",
              "perturb": 0.0, "data_dir": None}


def _prepare_text(config: TrainConfig) -> TextData:
    for name, unset in IMAGE_ONLY.items():
        if getattr(config, name) != unset:
            raise ValueError(f"{name}: applies to images; model {config.model!r} reads text")
    vocab = Vocabulary.load(config.vocab) if config.vocab else None
    return load_text(config.data, config.max_vocab, test_fraction=config.test_fraction,
                     seed=config.seed, train_size=config.train_size, vocab=vocab)


def subset_training(data: ImageData, size: int, seed: int) -> ImageData:
    """``data`` with ``size`` of its training images, drawn without replacement by
    ``seed`` (in their stored order); the test set is left whole."""
    if size > len(data.x_train):
        raise ValueError(f"train_size: {size} exceeds the {len(data.x_train)} training "
                         f"images of {data.name}")
    keep = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
    keep = keep[:size].sort().values
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])


def check_resumable(out: Path, config: TrainConfig, x_shape) -> int:
    """Refuse to resume ``out`` with a config that differs beyond :data:`RESUMABLE_FIELDS`;
    the epochs it has trained."""
    path = out / CHECKPOINT
    if not path.is_file():
        return 0
    state = load_checkpoint(path)
    saved = dict(state.get("config", {}))
    saved_shape = saved.pop("x_shape", None)
    try:
        before = TrainConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint: {path} holds a config this version cannot read ({err})")
    now = config.to_dict()
    done, step = int(state.get("epoch", 0)), int(state.get("step", 0))
    free = RESUMABLE_FIELDS + (AVERAGING_FIELDS if not _averaging_begun(before, done, step)
                               and not _averaging_begun(now, done, step) else ())
    changed = [f"{k} is {before.get(k)!r} there, {now[k]!r} here" for k in now
               if k not in free and before.get(k) != now[k]]
    if saved_shape is not None and tuple(saved_shape) != tuple(x_shape):
        changed.append(f"images are {list(saved_shape)} there, {list(x_shape)} here")
    if changed:
        raise ValueError(
            f"checkpoint: {path} was written by another configuration ({'; '.join(changed)}); "
            "resume with its own settings, or start a new run"
        )
    return done


def _averaging_begun(config: Dict[str, Any], done: int, step: int) -> bool:
    """Whether a run of ``config`` stopped ``step`` steps after ``done`` epochs holds an
    average."""
    return config.get("weight_average", "none") != "none" and averaging.begun(
        config.get("average_start", 0), done, step)


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> Tuple[nn.Module, List[Dict[str, Any]]]:
    """Train the configured model; write its run folder; return the model and metrics.

    Every check (config, data, run folder, checkpoint to resume) runs before anything
    is written; see :func:`pyro_vae.runs.prepare` for ``resume`` and ``overwrite``.
    """
    config = config.for_its_model()
    check_config(config)
    out = Path(config.out)
    data = prepare_data(config)
    text = isinstance(data, TextData)
    if text and not config.vocab:  # the run keeps the vocabulary it was trained with
        config = dataclasses.replace(config, vocab=str((out / runs.VOCAB).resolve()))
    device, distributed = runs.start_processes(config)
    model = build_model(config, data.x_shape, data.num_classes,
                        vocab=data.vocab if text else None)
    train_set, val_set, test_set = _splits(model, data, config)
    callbacks = [*_model_callbacks(model, data, config), *model.callbacks(config, train_set[0])]
    done = check_resumable(out, config, data.x_shape) if resume else 0
    if rank() == 0:  # the same rules as fit's, worded for the command line
        runs.prepare(out, resume, overwrite, name="out")
        if text and not Path(config.vocab).is_file():
            data.vocab.save(config.vocab)
    if done and done >= config.epochs:
        logger.warning("%s has trained %d epochs already; --epochs %d asks for no more, so "
                       "nothing is trained (pass --epochs above %d to continue)",
                       out, done, config.epochs, done)
    model.to(device)
    history = fit(
        model.model, model.guide, train_set, test_data=test_set, val_data=val_set,
        epochs=config.epochs, batch_size=config.batch_size, elbo=_elbo(config, model),
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        lr_schedule=config.lr_schedule, clip_norm=config.clip_norm or None,
        weight_average=config.weight_average, average_start=config.average_start,
        ema_decay=config.ema_decay,
        early_stopping=config.early_stopping,
        step=None if config.step == "auto" else config.step, seed=config.seed, device=device,
        transform=_transform(config),
        batches=model.batching(config.batch_size) if text else None,
        callbacks=callbacks, run_dir=out,
        checkpoint_every=config.checkpoint_every, checkpoint_steps=config.checkpoint_steps,
        keep_checkpoints=config.keep_checkpoints, max_bad_steps=config.max_bad_steps,
        resume=resume, tensorboard=config.tensorboard, progress=progress,
        config={**config.to_dict(), "x_shape": list(data.x_shape),
                "num_classes": data.num_classes},
        distributed=distributed,
    )
    if history and rank() == 0 and text:
        write_samples(model, data.x_test, out)
        plots.save(plots.training_curves(history), out / "curves.png")
    elif history and rank() == 0:
        runs.write_figures(model, data, history, out, decode=runs.image_decoder(config, device))
    if distributed:
        leave()
    return model, history


def _transform(config: TrainConfig) -> Optional[Callable]:
    """What each training batch goes through: perturbation, then binarisation."""
    if not config.perturb and config.binarize != "dynamic":
        return None

    def transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if config.perturb:
            x = perturb(x, config.perturb, generator)
        return binarize(x, generator) if config.binarize == "dynamic" else x
    return transform


def _splits(model: nn.Module, data: ImageData, config: TrainConfig):
    """Training, validation and test sets as the model takes them, checked."""
    x_train, y_train = data.x_train, data.y_train
    if getattr(config, "labels", None) is not None:
        y_train = keep_labels(y_train, config.labels, data.num_classes, seed=config.seed)
    x_val = y_val = None
    if config.val_fraction:
        x_train, y_train, x_val, y_val = split_validation(
            x_train, y_train, config.val_fraction, seed=config.seed, name="val_fraction")
    model.check_data(x_train, "train data")
    model.check_data(data.x_test, "test data")
    if model.uses_labels:
        model.check_labels(y_train, len(x_train), "train labels",
                           allow_missing=model.semi_supervised)
        model.check_labels(data.y_test, len(data.x_test), "test labels")
    # A semi-supervised model is scored on the bound of log p(x): held-out images unlabelled.
    paired = model.uses_labels and not model.semi_supervised
    pack = (lambda x, y: (x, y) if paired else (x,))
    return ((x_train, y_train) if model.uses_labels else (x_train,),
            None if x_val is None else pack(x_val, y_val), pack(data.x_test, data.y_test))


def _elbo(config: TrainConfig, model: nn.Module):
    from .infer import ELBOS

    name = model.elbo if config.elbo == "auto" else config.elbo
    return ELBOS[name](num_particles=config.num_particles)


def _model_callbacks(model: nn.Module, data: ImageData, config: TrainConfig) -> List[cb.Callback]:
    """KL warm-up for a model with ``beta``; the temperature schedule of a relaxed
    categorical code; ``test_accuracy`` for one that classifies."""
    out: List[cb.Callback] = []
    warmup = getattr(config, "warmup", "none")
    if warmup != "none":
        out.append(cb.KLWarmup(model, SCHEDULES[warmup](config.warmup_epochs)))
    if getattr(config, "temperature_rate", 0) and config.estimator != "score-function":
        out.append(cb.Temperature(model, model.temperature_at))
    if model.classifies:
        def test_accuracy() -> Dict[str, float]:
            device = next(model.parameters()).device
            return {"test_accuracy": accuracy(model.classify, data.x_test.to(device), data.y_test)}

        out.append(cb.Metrics(test_accuracy))
    return out


def load_run(run_dir, device: Optional[str] = "cpu") -> Tuple[nn.Module, TrainConfig]:
    """The trained model of a run folder and its config: the best checkpoint when early
    stopping kept one, else the newest (see :class:`pyro_vae.runs.Run`)."""
    run = runs.Run.load(run_dir, device)
    return run.model, run.config

