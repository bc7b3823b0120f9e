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

from . import plots
from .checkpoint import CHECKPOINT, load_checkpoint, write_json
from .config import TrainConfig
from .data import BINARIZE, DATASETS, ImageData, binarize, load_dataset
from .evaluate import accuracy
from .infer import ELBOS, fit, resolve_device
from .models import MODELS
from .models.m2 import ENUM_DISCRETE
from .schedules import SCHEDULES, KLWarmup
from .semisupervised import InterleavedBatches, keep_labels
from .stacking import encode_data

logger = logging.getLogger(__name__)
TEST_BINARIZE_SEED = 0  # the binarised test set is the same for every run


def check_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` naming the first field that cannot work."""
    choices = {
        "dataset": DATASETS,
        "model": sorted(MODELS),
        "elbo": ["auto", *sorted(ELBOS)],
        "binarize": BINARIZE,
        "warmup": sorted(SCHEDULES),
        "enum_discrete": ENUM_DISCRETE,
    }
    for name, valid in choices.items():
        if getattr(config, name) not in valid:
            raise ValueError(f"{name}: expected one of {list(valid)}, got {getattr(config, name)!r}")
    positive_ints = ("z_dim", "batch_size", "num_particles", "checkpoint_every")
    for name in positive_ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(config.epochs, int) or config.epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {config.epochs!r}")
    for name in ("lr", "beta", "warmup_epochs"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name}: expected a positive number, got {getattr(config, name)!r}")
    if not config.alpha >= 0:
        raise ValueError(f"alpha: expected a non-negative weight, got {config.alpha!r}")
    if config.labels is not None:
        semi = sorted(k for k, cls in MODELS.items() if getattr(cls, "semi_supervised", False))
        if config.model not in semi:
            raise ValueError(
                f"labels: model {config.model!r} does not learn from unlabelled images; "
                f"--labels needs one of {semi}"
            )
        if isinstance(config.labels, bool) or not isinstance(config.labels, int) or config.labels < 0:
            raise ValueError(f"labels: expected a non-negative integer, got {config.labels!r}")
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
    params = inspect.signature(cls).parameters
    values = {**config.to_dict(), "x_shape": tuple(x_shape), "num_classes": num_classes}
    return cls(**{k: v for k, v in values.items() if k in params})


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


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder")
    if (out / "config.json").exists() and not (resume or overwrite):
        raise ValueError(
            f"out: {out} already holds a run; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"out: cannot write to {out} ({err.strerror})") from None


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> Tuple[nn.Module, List[Dict[str, Any]]]:
    """Train the configured model; write its run folder; return the model and metrics."""
    check_config(config)
    out = Path(config.out)
    _check_out(out, resume, overwrite)
    data = prepare_data(config)
    device = resolve_device(config.device)

    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    model = build_model(config, data.x_shape, data.num_classes)
    model.check_data(data.x_train, "train data")
    model.check_data(data.x_test, "test data")
    uses_labels = getattr(model, "uses_labels", False)
    semi_supervised = getattr(model, "semi_supervised", False)
    y_train = data.y_train
    if config.labels is not None:
        y_train = keep_labels(y_train, config.labels, data.num_classes, seed=config.seed)
    if uses_labels:
        model.check_labels(y_train, len(data.x_train), "train labels", allow_missing=semi_supervised)
        model.check_labels(data.y_test, len(data.x_test), "test labels")
    model.to(device)

    write_json(out / "config.json", config.to_dict())
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
        seed=config.seed,
        device=device,
        transform=binarize if config.binarize == "dynamic" else None,
        evaluate=_evaluate(model, data, config),
        run_dir=out,
        checkpoint_every=config.checkpoint_every,
        resume=resume,
        config={**config.to_dict(), "x_shape": list(data.x_shape), "num_classes": data.num_classes},
        batches=InterleavedBatches(config.batch_size) if semi_supervised else None,
        step_hooks=step_hooks,
        progress=progress,
    )
    if history:
        write_figures(model, data, history, out, decode=image_decoder(config, device))
    return model, history


def _elbo(config: TrainConfig, model: nn.Module):
    name = getattr(model, "elbo", "Trace_ELBO") if config.elbo == "auto" else config.elbo
    return ELBOS[name](num_particles=config.num_particles)


def _evaluate(model: nn.Module, data: ImageData, config: TrainConfig):
    """Extra metrics per epoch: ``beta`` under a warm-up, ``test_accuracy`` of a classifier."""
    if config.warmup == "none" and not hasattr(model, "classify"):
        return None

    def evaluate() -> Dict[str, float]:
        metrics = {"beta": model.beta} if config.warmup != "none" else {}
        if hasattr(model, "classify"):
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
    uses_labels = getattr(model, "uses_labels", False)
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
    plots.save(plots.image_grid(samples, 8, title="samples from the prior"), out / "samples.png")
    plots.save(plots.reconstructions(decode(x), decode(x_hat)), out / "reconstructions.png")
    plots.save(plots.training_curves(history), out / "curves.png")
    if uses_labels:
        plots.save(plots.labelled_rows(torch.stack(rows), list(range(model.num_classes)),
                                       title="samples, one row per class"),
                   out / "class_samples.png")
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
    load_params(model, state["params"], run_dir / CHECKPOINT)
    return model.to(resolve_device(device)).eval(), config


def load_params(model: nn.Module, params: Dict[str, torch.Tensor], source) -> None:
    """Load param-store values (``"decoder$$$net.0.weight"``) into ``model``'s modules."""
    state = {name.replace("$$$", "."): value for name, value in params.items()}
    expected = {name for name, _ in model.named_parameters()}
    if set(state) != expected:
        diff = sorted(set(state) ^ expected)[:4]
        raise ValueError(f"checkpoint: {source} does not match the model (parameters {diff})")
    model.load_state_dict(state, strict=False)
