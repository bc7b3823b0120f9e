"""The configuration of a training run, saved as ``config.json`` in its run folder.

:class:`TrainConfig` holds what every run has: data, the model's name, optimisation,
the run folder. Each model family adds its own options in a subclass declared beside
the model (:class:`pyro_vae.models.vae.VAEConfig`: ``z_dim``, ``prior``, ...; the
CVAE's and M2's inherit it and add or change only what differs), as pythae does.
``TrainConfig.from_dict`` and :meth:`TrainConfig.for_model` build the class of the
model named in ``model``.

Every field carries its help text, its group and how it is checked (``choices``,
``minimum``, ``positive``), so :func:`check` validates any config and ``pyro-vae
train`` has one flag per field (``z_dim`` -> ``--z-dim``); a run is reproduced from
its ``config.json`` alone.
"""

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Type

from . import checks

GROUPS = ("data", "model", "optimisation", "run")


def option(default, help: str, group: str = "model", choices: Optional[Callable] = None,
           minimum: Optional[int] = None, positive: bool = False, flags: Tuple[str, ...] = ()):
    """A config field: its help, ``--help`` group and checks. ``choices`` is a function
    returning the valid names (a registry), read when checked, so registering a part
    later extends them; ``flags`` are extra command-line spellings (aliases)."""
    return field(default=default, metadata={
        "help": help, "group": group, "choices": choices, "minimum": minimum,
        "positive": positive, "flags": flags})


def _datasets():
    from .data import DATASETS

    return DATASETS


def _elbos():
    from .infer import ELBOS

    return ["auto", *sorted(ELBOS)]


def _steps():
    from .steps import STEPS

    return ["auto", *STEPS]


def _optimizers():
    from .steps import OPTIMIZERS

    return OPTIMIZERS


def _lr_schedules():
    from .training.callbacks import LR_SCHEDULES

    return LR_SCHEDULES


def _averages():
    from .training.averaging import KINDS

    return KINDS


def _models():
    from .models import MODELS

    return MODELS


@dataclass
class TrainConfig:
    """Everything a run shares whatever its model; see the module docstring."""

    # data
    data: str = option("mnist-10k", "a registered data set (mnist-10k, coloured-mnist-10k, "
                       "mnist, fashion-mnist, kmnist) or a path: a folder of images (one subfolder per class), a "
                       ".npy/.npz array, or a folder of IDX files", "data", flags=("--dataset",))
    data_dir: str = option(None, "folder holding a registered data set's IDX files", "data")
    image_size: int = option(None, "resize every image to this many pixels a side", "data",
                             minimum=1)
    classes: Tuple[int, ...] = option(None, "train on these classes only, e.g. 0,1,2 "
                                      "(the test set keeps all)", "data")
    exclude_class: Tuple[int, ...] = option(None, "leave these classes out of training, "
                                            "e.g. 7 (the test set keeps all)", "data")
    test_fraction: float = option(0.2, "share held out as the test set when the data "
                                  "has none", "data", positive=True)
    train_size: int = option(None, "train on this many training images, a seeded random "
                             "subset (the test set keeps all); default: all", "data", minimum=1)
    val_fraction: float = option(0.0, "share of the training set held out (seeded) to "
                                 "validate each epoch, keep the best checkpoint and stop "
                                 "early; 0: none", "data")
    binarize: str = option("none", "'none': intensities in [0, 1]; 'dynamic': a fresh "
                           "Bernoulli sample per epoch, the test set binarised once", "data",
                           choices=lambda: ("none", "dynamic"))
    perturb: float = option(0.0, "share of pixels replaced by uniform noise in every training "
                            "batch (Ren et al. 2019: the background model of the 'ratio' "
                            "anomaly score); 0: none", "data")
    # model
    model: str = option("vae", "model name, or package.module:Class to import one", "model",
                        choices=_models)
    # optimisation
    epochs: int = option(10, "training epochs", "optimisation", minimum=0)
    batch_size: int = option(128, "examples per SVI step", "optimisation", minimum=1)
    optimizer: str = option("adam", "optimiser", "optimisation", choices=_optimizers)
    lr: float = option(1e-3, "learning rate", "optimisation", positive=True)
    weight_decay: float = option(0.0, "weight decay (L2 for adam and sgd, decoupled for "
                                 "adamw)", "optimisation")
    lr_schedule: str = option("none", "learning-rate schedule: cosine (to 0 over the run), "
                              "step (x0.5 every 10 epochs), exponential (x0.95 per epoch), "
                              "plateau (x0.5 after 3 epochs without a better val_loss)",
                              "optimisation", choices=_lr_schedules)
    clip_norm: float = option(0.0, "clip each parameter's gradient to this norm (0: off)",
                              "optimisation")
    early_stopping: int = option(0, "stop after this many epochs without a better "
                                 "val_loss (needs --val-fraction); 0: off", "optimisation",
                                 minimum=0)
    weight_average: str = option("none", "evaluate, save and keep an average of the weights "
                                 "over the steps after epoch --average-start: swa (equal "
                                 "weights) or ema (exponential, --ema-decay); none: the last "
                                 "weights", "optimisation", choices=_averages)
    average_start: int = option(0, "epochs trained before --weight-average begins",
                                "optimisation", minimum=0)
    ema_decay: float = option(0.999, "decay d of --weight-average ema, in (0, 1): "
                              "average = d * average + (1 - d) * weights", "optimisation")
    max_bad_steps: int = option(0, "steps with a NaN or inf loss skipped before stopping",
                                "optimisation", minimum=0)
    elbo: str = option("auto", "Pyro ELBO; auto: the model's own (TraceEnum_ELBO for m2, "
                       "else Trace_ELBO); IWAE trains on the importance-weighted bound of "
                       "--num-particles samples, drawn in one pass (RenyiELBO: the same "
                       "bound, one draw at a time, for guides that cannot reparameterise)",
                       "optimisation", choices=_elbos)
    num_particles: int = option(1, "samples of z per example in the ELBO estimate",
                                "optimisation", minimum=1)
    step: str = option("auto", "SVI step: compiled (the loss captured once per batch shape "
                       "as a graph, then the fused step), fused (the ELBO's differentiable_loss, "
                       "one fused optimiser), svi (Pyro's SVI.step), or auto (compiled where "
                       "the model is capturable, else fused where it applies, else svi)",
                       "optimisation", choices=_steps)
    seed: int = option(0, "random seed", "optimisation", minimum=0)
    device: str = option("auto", "auto, cpu or cuda", "optimisation")
    threads: int = option(None, "CPU threads for torch (default: half the cores, shared "
                          "among the processes of a torchrun run)", "optimisation", minimum=1)
    # run folder
    out: str = option("runs/vae", "run folder for config, metrics, checkpoints, figures",
                      "run")
    checkpoint_every: int = option(1, "epochs between checkpoints", "run", minimum=1)
    checkpoint_steps: int = option(0, "SVI steps between checkpoints as well (0: none)",
                                   "run", minimum=0)
    keep_checkpoints: int = option(2, "checkpoints kept; the newest is checkpoint.pt", "run",
                                   minimum=1)
    tensorboard: bool = option(False, "log every metric to OUT/tensorboard (needs the "
                               "tensorboard package)", "run")

    # ---------------------------------------------------------------- building
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def for_model(cls, model: str = "vae", **values) -> "TrainConfig":
        """The config of ``model``'s own class, with ``values`` set."""
        return cls.from_dict({**values, "model": model})

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """A config of the class of the model named by ``values["model"]``."""
        values = dict(values)
        for fact in ("run", "x_shape", "num_classes"):  # descriptions of a run, not settings
            values.pop(fact, None)
        if "dataset" in values:  # config.json of earlier versions
            values.setdefault("data", values.pop("dataset"))
        target = config_class(values.get("model", "vae"))
        names = {f.name for f in dataclasses.fields(target)}
        unknown = sorted(set(values) - names)
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config: unknown fields {unknown} for model "
                             f"{values.get('model', 'vae')!r}{hint}")
        for f in dataclasses.fields(target):
            if f.name in values and values[f.name] is not None:
                values[f.name] = parse_value(f, values[f.name])
        return target(**values)

    def for_its_model(self) -> "TrainConfig":
        """This config as its model's own config class (its defaults filled in)."""
        return self if type(self) is config_class(self.model) else \
            type(self).from_dict(self.to_dict())

    @classmethod
    def load(cls, path) -> "TrainConfig":
        from .checkpoint import read_json

        return cls.from_dict(read_json(path))


def config_class(model: str) -> Type[TrainConfig]:
    """The config class the model called ``model`` declares."""
    from .models import model_class

    return model_class(model).config_class


def check(config: TrainConfig) -> None:
    """Raise ``ValueError`` (``TypeError``) naming the first field that cannot work."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if value is None:
            continue
        if meta.get("choices") is not None:
            checks.one_of(f.name, value, meta["choices"]())
        if meta.get("minimum") is not None:
            checks.integer(f.name, value, meta["minimum"])
        if meta.get("positive"):
            checks.positive_number(f.name, value)
    for name in ("clip_norm", "weight_decay"):
        if getattr(config, name) != 0:
            checks.positive_number(name, getattr(config, name))
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"val_fraction: expected a share in [0, 1), got {config.val_fraction!r}")
    if not 0 < config.ema_decay < 1:
        raise ValueError(f"ema_decay: expected a number in (0, 1), got {config.ema_decay!r}")
    if not 0 <= config.perturb < 1:
        raise ValueError(f"perturb: expected a share in [0, 1), got {config.perturb!r}")
    if config.early_stopping and not config.val_fraction:
        raise ValueError("early_stopping: needs a validation split; pass --val-fraction "
                         "(e.g. 0.1); the test set is never used to choose a model")


def parse_value(f: dataclasses.Field, value):
    """A field's value from JSON or the command line: tuples of ints from ``"1,2"``."""
    kind = f.type
    if kind == Tuple[int, ...]:
        return parse_ints(f.name, value)
    if kind is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{f.name}: expected true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    return value


def parse_ints(name: str, value) -> Tuple[int, ...]:
    """``"200,200"``, ``400`` or ``[200, 200]`` -> ``(200, 200)``; ``""`` -> ``()``."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{name}: expected comma-separated integers, got {value!r}") from None
    elif isinstance(value, int):
        value = [value]
    return tuple(int(v) for v in value)


def parse_hidden(value) -> Tuple[int, ...]:
    """``"200,200"``, ``400`` or ``[200, 200]`` -> ``(200, 200)``; ``""`` -> ``()``."""
    widths = parse_ints("hidden", value)
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden: expected positive widths, got {widths}")
    return widths
