"""Where training stands, and the checkpoint format that holds it.

:class:`TrainState` is what the :class:`~pyro_vae.training.Trainer` and every callback
share: progress counters, the per-epoch history, the step (parameters and optimiser),
the batch-order generator and the run's config. Callbacks receive it and never the
trainer itself. :meth:`TrainState.snapshot` turns it into a checkpoint, plain tensors
and containers only; :meth:`TrainState.restore` puts one back, so that a resumed run
continues bit for bit (on the CPU) where the snapshot was taken.
"""

import json
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

import pyro
import pyro.poutine as poutine

CHECKPOINT_FORMAT = 3


def rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """Every random state the next step depends on, as plain tensors and lists.

    Pyro draws its samples from torch's generator, so ``"torch"`` is Pyro's state
    too; ``"batches"`` is the trainer's own generator (data order and ``transform``).
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
    """Counters a checkpoint holds beside the parameters, optimiser and random states."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in epoch ``epoch + 1``
    global_step: int = 0  # steps completed in all
    order: Optional[torch.Tensor] = None  # data order of epoch ``epoch + 1``, once drawn
    # with a custom batching policy: the generator state its batches were drawn from
    batch_state: Optional[torch.Tensor] = None
    loss: float = 0.0  # summed loss of this epoch's finite steps so far
    seen: int = 0  # examples in those steps
    bad_steps: int = 0  # steps skipped for a NaN or inf, whole run
    # summed losses (times batch size) of a model's extra steps this epoch, by name
    extra_loss: Dict[str, float] = field(default_factory=dict)

    def count(self, loss: float, size: int) -> None:
        """One more step, of ``size`` examples and finite ``loss``."""
        self.step, self.global_step = self.step + 1, self.global_step + 1
        self.loss, self.seen = self.loss + loss, self.seen + size

    def count_bad(self) -> None:
        """One more step, skipped for a NaN or inf."""
        self.step, self.global_step = self.step + 1, self.global_step + 1
        self.bad_steps += 1

    def next_epoch(self, epoch: int) -> "Progress":
        """The counters at the start of the epoch after ``epoch``."""
        return Progress(epoch=epoch, global_step=self.global_step, bad_steps=self.bad_steps)

    def describe(self) -> str:
        if self.step == 0 and self.epoch > 0:
            return f"the end of epoch {self.epoch} (step {self.global_step})"
        return f"epoch {self.epoch + 1}, step {self.step} (step {self.global_step} in all)"


PROGRESS_FIELDS = tuple(f.name for f in fields(Progress))
_OPTIONAL = {"extra_loss": dict}  # progress fields a checkpoint may lack


@dataclass
class TrainState:
    """Everything a callback may read (and the few things it may set).

    ``stop`` asks the trainer to end after the current epoch (early stopping);
    ``metrics`` is the epoch's row while ``on_epoch_end`` runs, and callbacks add
    their figures to it in order (evaluation first, then logging and saving).
    """

    model: Callable
    guide: Callable
    step: Any  # a step of :mod:`pyro_vae.steps`: __call__(*batch), state_dict(), set_lr()
    generator: torch.Generator
    extra_steps: Dict[str, Any] = field(default_factory=dict)  # the model's own, by name
    module: Optional[nn.Module] = None  # the Model whose methods model and guide are
    epochs: int = 0
    batch_size: int = 0
    world_size: int = 1
    rank: int = 0
    config: Dict[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    history: List[Dict[str, Any]] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    stop: bool = False
    num_steps: int = 0  # steps in the current epoch
    extra: Dict[str, Any] = field(default_factory=dict)  # callbacks' own saved state
    checkpoint_path: Optional[Path] = None  # the newest checkpoint, once there is a run folder

    @property
    def writer(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    def params(self) -> Dict[str, torch.Tensor]:
        """What a checkpoint holds of the parameters: the model's ``state_dict()``
        (buffers included, names independent of its param-store scope), else the param
        store's unconstrained values for functions that are not a model's methods."""
        if self.module is not None:
            return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        return {k: v.detach().cpu() for k, v in pyro.get_param_store().named_parameters()}

    def snapshot(self) -> Dict[str, Any]:
        """Everything the next step depends on, as plain data (see ``docs/robustness.md``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            **vars(self.progress),
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "params": self.params(),
            "optim": self.step.state_dict(),
            "extra_optim": {k: s.state_dict() for k, s in self.extra_steps.items()},
            "rng": rng_state(self.generator),
            # A JSON round trip turns numpy scalars from callbacks into floats: the
            # safe loader refuses anything but plain types.
            "history": json.loads(json.dumps(self.history)),
            "config": json.loads(json.dumps(self.config)),
            "callbacks": self.extra,
        }

    def restore(self, saved: Dict[str, Any], source, probe: Sequence[torch.Tensor]) -> None:
        """Parameters, optimiser, random states, progress and history from ``saved``."""
        needed = ("params", "optim", "rng", "history", "batch_size",
                  *(k for k in PROGRESS_FIELDS if k not in _OPTIONAL))
        missing = [k for k in needed if k not in saved]
        if saved.get("format") != CHECKPOINT_FORMAT or missing:
            raise ValueError(
                f"checkpoint: {source} cannot be resumed: expected format "
                f"{CHECKPOINT_FORMAT} with {list(needed)}, got format {saved.get('format')} "
                f"without {missing}"
            )
        if self.module is not None:
            load_model_params(self.module, saved["params"], source)
        else:
            _create_params(self.model, self.guide, probe)
            _load_store(saved["params"], source)
        self.step.load_state_dict(saved["optim"])
        for name, step in self.extra_steps.items():
            step.load_state_dict(saved["extra_optim"][name])
        set_rng_state(saved["rng"], self.generator)
        self.progress = Progress(**{k: saved[k] if k in saved else _OPTIONAL[k]()
                                    for k in PROGRESS_FIELDS})
        self.history = list(saved["history"])
        self.extra = dict(saved.get("callbacks", {}))


class Probe:
    """The training data as ``data``; called, one batch of it, to run the model once."""

    def __init__(self, data: Sequence[torch.Tensor], batching: Optional[Callable] = None):
        self.data, self.batching = tuple(data), batching

    def __call__(self) -> Sequence[torch.Tensor]:
        if self.batching is None:
            return tuple(t[:1] for t in self.data)
        return self.batching(self.data, torch.Generator().manual_seed(0))[0]


def _create_params(model: Callable, guide: Callable, batch: Sequence[torch.Tensor]) -> None:
    """Run guide and model once so every ``pyro.param`` exists in the param store."""
    guide_trace = poutine.trace(guide).get_trace(*batch)
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)


def _load_store(saved: Dict[str, torch.Tensor], source) -> None:
    """Copy checkpointed (unconstrained) values into the param store in place."""
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


def load_model_params(module: nn.Module, saved: Dict[str, torch.Tensor], source) -> None:
    """Load a checkpoint's parameters and buffers into ``module``, in place.

    Checkpoints of formats 1 and 2 held param-store names (``"decoder$$$net.0.weight"``)
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
