"""From a :class:`~pyro_vae.config.TrainConfig` to a finished run folder, and back.

A run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and the
figures ``samples.png``, ``reconstructions.png`` and ``curves.png``.
"""

import inspect
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

import pyro

from . import plots
from .checkpoint import CHECKPOINT, load_checkpoint, write_json
from .config import TrainConfig
from .data import BINARIZE, DATASETS, ImageData, binarize, load_dataset
from .guides import GUIDES
from .infer import ELBOS, fit, resolve_device
from .likelihoods import LIKELIHOODS
from .models import MODELS
from .priors import PRIORS

logger = logging.getLogger(__name__)
TEST_BINARIZE_SEED = 0  # the binarised test set is the same for every run


def check_config(config: TrainConfig) -> None:
    """Raise ``ValueError`` naming the first field that cannot work."""
    choices = {
        "dataset": DATASETS,
        "model": sorted(MODELS),
        "elbo": sorted(ELBOS),
        "binarize": BINARIZE,
        "prior": sorted(PRIORS),
        "guide": sorted(GUIDES),
        "likelihood": sorted(LIKELIHOODS),
    }
    for name, valid in choices.items():
        if getattr(config, name) not in valid:
            raise ValueError(f"{name}: expected one of {list(valid)}, got {getattr(config, name)!r}")
    positive_ints = ("z_dim", "batch_size", "num_particles", "checkpoint_every",
                     "mixture_components", "pseudo_inputs", "flow_layers", "guide_rank")
    for name in positive_ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(config.epochs, int) or config.epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {config.epochs!r}")
    for name in ("lr", "beta", "normal_scale"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name}: expected a positive number, got {getattr(config, name)!r}")
    resolve_device(config.device)


def build_model(config: TrainConfig, x_shape, num_classes: int = 10) -> nn.Module:
    """The model named by ``config.model``, given the config fields its constructor takes."""
    cls = MODELS[config.model]
    params = inspect.signature(cls).parameters
    values = {**config.to_dict(), "x_shape": tuple(x_shape), "num_classes": num_classes}
    return cls(**{k: v for k, v in values.items() if k in params})


def prepare_data(config: TrainConfig) -> ImageData:
    """The configured data set; with ``binarize="dynamic"`` its test set binarised once."""
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
    model.to(device)

    write_json(out / "config.json", config.to_dict())
    uses_labels = getattr(model, "uses_labels", False)
    train_set = (data.x_train, data.y_train) if uses_labels else (data.x_train,)
    test_set = (data.x_test, data.y_test) if uses_labels else (data.x_test,)
    history = fit(
        model.model,
        model.guide,
        train_set,
        test_data=test_set,
        epochs=config.epochs,
        batch_size=config.batch_size,
        elbo=_elbo(config),
        lr=config.lr,
        seed=config.seed,
        device=device,
        transform=binarize if config.binarize == "dynamic" else None,
        run_dir=out,
        checkpoint_every=config.checkpoint_every,
        resume=resume,
        config={**config.to_dict(), "x_shape": list(data.x_shape), "num_classes": data.num_classes},
        progress=progress,
    )
    if history:
        write_figures(model, data, history, out)
    return model, history


def _elbo(config: TrainConfig):
    return ELBOS[config.elbo](num_particles=config.num_particles)


def write_figures(model: nn.Module, data: ImageData, history, out: Path, seed: int = 0) -> None:
    """``samples.png``, ``reconstructions.png`` and ``curves.png`` in ``out``."""
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = model.generate(64)
    x = data.x_test[:32].to(device)
    plots.save(plots.image_grid(samples, 8, title="samples from the prior"), out / "samples.png")
    plots.save(plots.reconstructions(x, model.reconstruct(x)), out / "reconstructions.png")
    plots.save(plots.training_curves(history), out / "curves.png")
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
