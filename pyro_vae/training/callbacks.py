"""Callbacks: each concern of training in one small class, with one signature per event.

Every event is a method ``on_<event>(state, ...)`` receiving the shared
:class:`~pyro_vae.training.state.TrainState`:

======================================  ==============================================
``on_fit_start(state, probe)``          before the first epoch (:class:`.state.Probe`)
``on_epoch_start(state, epoch)``        before the epoch's first step
``on_step_start(state)``                before each step
``on_step_end(state, loss)``            after each step (``loss`` NaN if it was skipped)
``on_epoch_end(state, metrics)``        ``metrics`` is the epoch's row: add to it
``on_interrupt(state, signum)``         SIGINT/SIGTERM; return a note on what was saved
``on_fit_end(state)``                   always, also when training ends by an error
======================================  ==============================================

Callbacks run in the order given, so those that compute metrics come before those that
log or save them. A callback that keeps state across epochs stores it in
``state.extra[<its key>]`` (plain data), which checkpoints save and resume restores.
``rank_zero = True`` marks callbacks that only the first of several DDP processes runs.
"""

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from ..checkpoint import Checkpoints, atomic_write, run_path, save_checkpoint
from ..evaluate import elbo_terms

logger = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
BEST = "best.pt"


class Callback:
    """Does nothing at every event; subclasses override the events they need."""

    rank_zero = False

    def on_fit_start(self, state, probe: Callable) -> None:
        pass

    def on_epoch_start(self, state, epoch: int) -> None:
        pass

    def on_step_start(self, state) -> None:
        pass

    def on_step_end(self, state, loss: float) -> None:
        pass

    def on_epoch_end(self, state, metrics: Dict[str, Any]) -> None:
        pass

    def on_interrupt(self, state, signum: int) -> Optional[str]:
        return None

    def on_fit_end(self, state) -> None:
        pass


def progress_in_epochs(state) -> float:
    """Training progress once the next step is done: ``epoch - 1 + (step + 1) / steps``."""
    at = state.progress
    return at.epoch + (at.step + 1) / max(state.num_steps, 1)


# ------------------------------------------------------------------ metrics
class Evaluation(Callback):
    """The negative ELBO and its terms on held-out data, each epoch (``test_loss``,
    ``recon``, ``kl``; with ``prefix="val"``: ``val_loss``, ``val_recon``, ``val_kl``)."""

    rank_zero = True

    def __init__(self, data, batch_size: int = 1000, prefix: str = "test"):
        self.data, self.batch_size, self.prefix = data, batch_size, prefix

    def on_epoch_end(self, state, metrics):
        terms = elbo_terms(state.model, state.guide, self.data, self.batch_size)
        if self.prefix != "test":
            terms = {f"{self.prefix}_{'loss' if k == 'test_loss' else k}": v
                     for k, v in terms.items()}
        metrics.update(terms)


class Metrics(Callback):
    """``fn() -> dict`` of extra figures merged into each epoch's row."""

    rank_zero = True

    def __init__(self, fn: Callable[[], Dict[str, float]]):
        self.fn = fn

    def on_epoch_end(self, state, metrics):
        metrics.update(self.fn())


# --------------------------------------------------------------- schedules
class StepHook(Callback):
    """``hook(t)`` before each step, ``t`` the progress in epochs once it is done."""

    def __init__(self, hook: Callable[[float], None]):
        self.hook = hook

    def on_step_start(self, state):
        self.hook(progress_in_epochs(state))


class KLWarmup(StepHook):
    """``model.beta = w(t) * beta`` before each step (:mod:`pyro_vae.schedules`);
    ``beta`` is logged each epoch."""

    def __init__(self, model, schedule: Callable[[float], float], beta: Optional[float] = None):
        from ..schedules import KLWarmup as warmup

        self.model = model
        super().__init__(warmup(model, schedule, beta))

    def on_epoch_end(self, state, metrics):
        metrics["beta"] = self.model.beta


def _cosine(t: float, epochs: int, **_) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(t / max(epochs, 1), 1.0)))


def _step(t: float, epochs: int, every: float = 10, gamma: float = 0.5, **_) -> float:
    return gamma ** math.floor(max(t - 1e-9, 0) / every)


def _exponential(t: float, epochs: int, gamma: float = 0.95, **_) -> float:
    return gamma ** t


# name -> w(t, epochs, ...): the learning rate is lr * w; "plateau" reacts to a metric.
LR_SCHEDULES = {
    "none": lambda t, epochs, **_: 1.0,
    "cosine": _cosine,
    "step": _step,
    "exponential": _exponential,
    "plateau": lambda t, epochs, **_: 1.0,
}


class LRSchedule(Callback):
    """The learning rate ``lr * w(t)`` before each step (:data:`LR_SCHEDULES`).

    ``cosine`` anneals to 0 over the run's epochs, ``step`` multiplies by ``gamma``
    every ``every`` epochs, ``exponential`` by ``gamma`` per epoch; ``plateau``
    multiplies by ``gamma`` when ``monitor`` has not improved for ``patience`` epochs.
    ``lr`` is logged each epoch.
    """

    def __init__(self, kind: str, lr: float, gamma: float = 0.5, every: float = 10,
                 monitor: str = "val_loss", patience: int = 3):
        from ..checks import one_of

        one_of("lr_schedule", kind, LR_SCHEDULES)
        self.kind, self.lr, self.gamma, self.every = kind, lr, gamma, every
        self.monitor, self.patience = monitor, patience

    def current(self, state) -> float:
        factor = state.extra.get("lr_plateau", {}).get("factor", 1.0)
        w = LR_SCHEDULES[self.kind](progress_in_epochs(state), state.epochs,
                                    gamma=self.gamma, every=self.every)
        return self.lr * w * factor

    def on_step_start(self, state):
        state.step.set_lr(self.current(state))

    def on_epoch_end(self, state, metrics):
        metrics["lr"] = state.step.lr
        if self.kind != "plateau" or self.monitor not in metrics:
            return
        mine = state.extra.setdefault("lr_plateau", {"best": math.inf, "bad": 0, "factor": 1.0})
        if metrics[self.monitor] < mine["best"]:
            mine["best"], mine["bad"] = float(metrics[self.monitor]), 0
        else:
            mine["bad"] += 1
            if mine["bad"] >= self.patience:
                mine["factor"], mine["bad"] = mine["factor"] * self.gamma, 0


# ------------------------------------------------ early stopping, best model
class EarlyStopping(Callback):
    """Stop once ``monitor`` (default ``val_loss``, lower is better) has not improved by
    ``min_delta`` for ``patience`` epochs; with ``run_dir``, keep the best parameters
    as ``best.pt`` (a checkpoint holding ``params``, ``epoch`` and the metric).

    ``patience=0`` never stops: the callback then only keeps the best checkpoint.
    """

    rank_zero = True

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 run_dir=None):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.run_dir = None if run_dir is None else Path(run_dir)

    def on_epoch_end(self, state, metrics):
        if self.monitor not in metrics:
            raise ValueError(f"monitor: early stopping watches {self.monitor!r}, which no "
                             f"callback computes (metrics: {sorted(metrics)})")
        mine = state.extra.setdefault("early_stopping", {"best": math.inf, "best_epoch": 0,
                                                         "bad": 0})
        value = float(metrics[self.monitor])
        if value < mine["best"] - self.min_delta:
            mine.update(best=value, best_epoch=metrics["epoch"], bad=0)
            if self.run_dir is not None:
                save_checkpoint(run_path(self.run_dir, BEST), {
                    "params": state.params(), "epoch": metrics["epoch"],
                    "monitor": self.monitor, "value": value,
                    "config": json.loads(json.dumps(state.config))})
        else:
            mine["bad"] += 1
        metrics["best_epoch"] = mine["best_epoch"]
        if self.patience and mine["bad"] >= self.patience:
            logger.info("early stopping: %s has not improved for %d epochs (best %.4g at "
                        "epoch %d)", self.monitor, mine["bad"], mine["best"], mine["best_epoch"])
            state.stop = True


# ------------------------------------------------------------ logging, files
class EpochLog(Callback):
    """One line per epoch through ``logging``: ``epoch 3  train_loss 140.2  ...``."""

    rank_zero = True

    def on_epoch_end(self, state, metrics):
        logger.info("epoch %d  %s", metrics["epoch"], "  ".join(
            f"{k} {v:.4g}" for k, v in metrics.items()
            if k != "epoch" and isinstance(v, (int, float))))


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss; cleared however the epoch ends."""

    rank_zero = True

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, state, epoch):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.num_steps, initial=state.progress.step, leave=False,
                        desc=f"epoch {epoch}/{state.epochs}")

    def on_step_end(self, state, loss):
        at = state.progress
        self.bar.update()
        self.bar.set_postfix(loss=f"{at.loss / max(at.seen, 1):.2f}", refresh=False)

    def on_epoch_end(self, state, metrics):
        self.on_fit_end(state)

    def on_fit_end(self, state):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsFile(Callback):
    """``metrics.jsonl`` in the run folder, one JSON row per epoch, rewritten atomically."""

    rank_zero = True

    def __init__(self, run_dir):
        self.path = run_path(run_dir, METRICS)

    def on_epoch_end(self, state, metrics):
        lines = "".join(json.dumps(row) + "\n" for row in state.history)
        atomic_write(self.path, lambda f: f.write(lines.encode()))


class TensorBoard(Callback):
    """Every numeric metric of each epoch as a TensorBoard scalar, in ``log_dir``.

    Needs the ``tensorboard`` package (``pip install pyro-vae[tensorboard]``).
    """

    rank_zero = True

    def __init__(self, log_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard: the tensorboard package is not installed "
                             "(pip install 'pyro-vae[tensorboard]')") from None
        self.log_dir, self.make, self.writer = str(log_dir), SummaryWriter, None

    def on_fit_start(self, state, probe):
        self.writer = self.make(self.log_dir)

    def on_epoch_end(self, state, metrics):
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def on_fit_end(self, state):
        if self.writer is not None:
            self.writer.close()


class EpochHooks(Callback):
    """``hook(metrics)`` for each hook after each epoch, once everything is saved."""

    def __init__(self, hooks: Sequence[Callable[[Dict[str, Any]], None]]):
        self.hooks = list(hooks)

    def on_epoch_end(self, state, metrics):
        for hook in self.hooks:
            hook(metrics)


# ---------------------------------------------------------------- checkpoints
class Checkpointing(Callback):
    """Atomic checkpoints in ``run_dir`` and exact resume from the newest one.

    Saves every ``every`` epochs (and the last, and an early stop), every ``steps``
    steps when ``steps > 0``, and on SIGINT/SIGTERM; keeps ``keep`` checkpoints. With
    ``resume`` it restores the newest at the start (parameters, optimiser, random
    states, progress, history, callbacks' state); otherwise it deletes old ones. Every
    rank restores; only rank 0 writes. Place it after the callbacks whose figures it
    should save.
    """

    def __init__(self, run_dir, every: int = 1, steps: int = 0, keep: int = 2,
                 resume: bool = False):
        self.store = Checkpoints(run_dir, keep)
        self.every, self.steps, self.resume = every, steps, resume

    def on_fit_start(self, state, probe):
        state.checkpoint_path = self.store.latest
        if self.resume and self.store.latest.is_file():
            saved = self.store.load()
            check_resumable(saved, state, self.store.latest, probe)
            state.restore(saved, self.store.latest, probe())
            logger.info("resumed from %s at %s", self.store.latest, state.progress.describe())
        elif state.writer:
            self.store.clear()

    def save(self, state) -> None:
        if state.writer:
            self.store.save(state.snapshot())

    def on_step_end(self, state, loss):
        if self.steps and state.progress.global_step % self.steps == 0:
            self.save(state)

    def on_epoch_end(self, state, metrics):
        epoch = metrics["epoch"]
        if epoch % self.every == 0 or epoch == state.epochs or state.stop:
            self.save(state)

    def on_interrupt(self, state, signum):
        self.save(state)
        return f"checkpoint written to {self.store.latest}"


def check_resumable(saved: Dict[str, Any], state, source, probe: Callable) -> None:
    """Refuse a checkpoint that cannot continue this run exactly: another number of
    processes (the effective batch would change), or a mid-epoch position over other
    data or batch size."""
    before = saved.get("world_size", 1)
    if before != state.world_size:
        raise ValueError(
            f"checkpoint: {source} was written by {before} process(es), so each step saw "
            f"{before} x {saved.get('batch_size')} examples; this run has "
            f"{state.world_size}. Resume it with torchrun --nproc_per_node {before} "
            "(or start a new run) so that it continues exactly"
        )
    order, n = saved.get("order"), len(probe.data[0])
    if order is not None and (
            len(order) != n or saved["batch_size"] != state.batch_size):
        raise ValueError(
            f"checkpoint: {source} stopped mid-epoch over {len(order)} examples in "
            f"batches of {saved['batch_size']}; got {n} examples in batches "
            f"of {state.batch_size}"
        )


def load_best(run_dir) -> Optional[Dict[str, Any]]:
    """The ``best.pt`` of a run folder, or ``None`` when none was kept."""
    from ..checkpoint import load_checkpoint

    path = Path(run_dir) / BEST
    return load_checkpoint(path) if path.is_file() else None



# ------------------------------------------------------------ temperature
class Temperature(StepHook):
    """``model.temperature = schedule(t)`` before each step, ``t`` the progress in epochs
    (e.g. :meth:`~pyro_vae.models.categorical.CategoricalVAE.temperature_at`). Derived
    from the step count, so a resumed run continues the schedule exactly;
    ``temperature`` is logged each epoch."""

    def __init__(self, model, schedule: Callable[[float], float]):
        self.model = model
        super().__init__(lambda t: setattr(model, "temperature", schedule(t)))

    def on_epoch_end(self, state, metrics):
        metrics["temperature"] = self.model.temperature
