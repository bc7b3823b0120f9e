"""The training loop: steps through epochs of batches and calls callbacks.

Everything else (checkpoints and resume, evaluation, metrics, progress, schedules,
early stopping, TensorBoard) is a :class:`~pyro_vae.training.callbacks.Callback`
with one signature per event; see :mod:`pyro_vae.training.callbacks`.
"""

import logging
import math
import signal
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..distributed import BatchShard, all_sum, rank as dist_rank, shard, world_size
from ..interrupt import Interrupted, deferred_signals
from ..steps import NonFiniteStep, owner
from . import averaging
from .callbacks import Callback
from .state import Probe, TrainState

logger = logging.getLogger(__name__)

# batches(data, generator) -> the epoch's argument tuples for one step each.
Batches = Callable[[Tuple[torch.Tensor, ...], torch.Generator], Sequence[Sequence[torch.Tensor]]]


class Trainer:
    """Stochastic variational inference, one ``step(*batch)`` at a time.

    Each epoch draws a random order of the examples (or asks ``batching`` for its
    batches), steps on each batch, and ends with the epoch's metrics. A first SIGINT
    or SIGTERM finishes the running step, lets callbacks save (``on_interrupt``) and
    raises :class:`~pyro_vae.interrupt.Interrupted`. A step that meets a NaN or inf
    leaves the parameters as they were; after more than ``max_bad_steps`` of them,
    ``FloatingPointError``.

    :param step: a step of :mod:`pyro_vae.steps` (``FusedStep``, ``SVIStep``, DDP).
    :param callbacks: called in order; on ranks other than 0 only those without
        ``rank_zero``.
    :param batching: ``batching(data, generator)`` -> the epoch's batches.
    :param transform: ``transform(x_batch, generator)`` on the first tensor of each batch.
    :param extra_steps: steps with their own optimisers taken after each SVI step
        (:meth:`~pyro_vae.models.base.Model.extra_steps`); ``<name>_loss`` is logged.
    :param distributed: shard each epoch's order over the ``torch.distributed`` ranks.
    """

    def __init__(self, model: Callable, guide: Callable, step, *, batch_size: int = 128,
                 callbacks: Sequence[Callback] = (), batching: Optional[Batches] = None,
                 transform: Optional[Callable] = None, seed: Optional[int] = 0,
                 extra_steps: Optional[Dict[str, Any]] = None,
                 max_bad_steps: int = 0, distributed: bool = False,
                 config: Optional[Dict[str, Any]] = None):
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        self.state = TrainState(model, guide, step, generator, module=owner(model, guide),
                                batch_size=batch_size, world_size=world_size(),
                                rank=dist_rank(), config=dict(config or {}),
                                extra_steps=dict(extra_steps or {}))
        self.callbacks = [c for c in callbacks if self.state.writer or not c.rank_zero]
        self.batching, self.transform = batching, transform
        self.max_bad_steps, self.distributed = max_bad_steps, distributed
        self._pending: Callable[[], Optional[int]] = lambda: None
        self._handlers: Dict[str, List[Callable]] = {}

    def emit(self, event: str, *args) -> List[Any]:
        """Call ``event(state, *args)`` on every callback that overrides it; their
        answers, in order. (:class:`Callback`'s own events do nothing: skipping them
        keeps the per-step events free when no callback listens.)"""
        handlers = self._handlers.get(event)
        if handlers is None:
            handlers = self._handlers[event] = [
                getattr(c, event) for c in self.callbacks
                if event in vars(c) or getattr(type(c), event) is not getattr(Callback, event)]
        return [handler(self.state, *args) for handler in handlers]

    def fit(self, data: Tuple[torch.Tensor, ...], epochs: int) -> List[Dict[str, Any]]:
        """Train until ``epochs`` epochs are done (from where a resumed state stands)."""
        self.state.epochs = epochs
        self._handlers = {}  # callbacks may have been added since
        try:
            self.emit("on_fit_start", Probe(data, self.batching))
            self.check_averaging()
            with deferred_signals() as self._pending:
                for epoch in range(self.state.progress.epoch + 1, epochs + 1):
                    self.run_epoch(data, epoch)
                    self.emit("on_epoch_end", self.end_epoch(epoch))
                    self.stop_if_asked()
                    if self.state.stop:
                        break
        finally:
            self.emit("on_fit_end")
        return self.state.history

    def check_averaging(self) -> None:
        """Refuse to go on from a checkpoint whose parameters are a weight average
        without the callback that puts the training weights back."""
        if "training" in self.state.extra.get(averaging.KEY, {}) and not any(
                isinstance(c, averaging.WeightAverage) for c in self.callbacks):
            raise ValueError(
                f"weight_average: the checkpoint resumed at {self.state.progress.describe()} "
                "holds a weight average in place of the training weights; resume it with "
                "its weight_average and average_start")

    def run_epoch(self, data: Tuple[torch.Tensor, ...], epoch: int) -> None:
        at = self.state.progress
        batches = self.epoch_batches(data)
        self.state.num_steps = len(batches)
        self.emit("on_epoch_start", epoch)
        self._t0, self._seen0 = time.perf_counter(), at.seen
        while at.step < len(batches):
            batch = list(batches[at.step])
            if self.transform is not None:
                batch[0] = self.transform(batch[0], self.state.generator)
            self.emit("on_step_start")
            self.emit("on_step_end", self.train_step(batch))
            self.stop_if_asked()

    def train_step(self, batch: List[torch.Tensor]) -> float:
        """One step; its loss, or NaN for a step skipped for a non-finite value."""
        at = self.state.progress
        try:
            loss = self.state.step(*batch)
        except NonFiniteStep as err:
            at.count_bad()
            self.bad_step(str(err))
            return math.nan
        at.count(loss, len(batch[0]))
        for name, extra in self.state.extra_steps.items():
            try:
                value = extra(*batch)
            except NonFiniteStep as err:
                at.bad_steps += 1
                self.bad_step(f"{name}: {err}")
                continue
            at.extra_loss[name] = at.extra_loss.get(name, 0.0) + value * len(batch[0])
        return loss

    def end_epoch(self, epoch: int) -> Dict[str, Any]:
        """The epoch's training metrics; the state moves on to the next epoch."""
        at = self.state.progress
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - self._t0
        loss_sum, seen, seen_now = at.loss, at.seen, at.seen - self._seen0
        if self.distributed:  # the whole epoch's figures, summed over ranks
            loss_sum, seen, seen_now = all_sum(
                torch.tensor([at.loss, at.seen, seen_now], dtype=torch.float64)).tolist()
        metrics: Dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / seen if seen else math.nan,
            "epoch_s": epoch_s,
            "images_per_s": seen_now / epoch_s,
        }
        for name, total in at.extra_loss.items():
            metrics[f"{name}_loss"] = total / seen if seen else math.nan
        if self.max_bad_steps:
            metrics["bad_steps"] = at.bad_steps
        self.state.history.append(metrics)  # callbacks add their figures to this row
        self.state.metrics = metrics
        self.state.progress = at.next_epoch(epoch)
        return metrics

    def epoch_batches(self, data: Tuple[torch.Tensor, ...]) -> Sequence[Sequence[torch.Tensor]]:
        """The batches of the next epoch, the same again when it is resumed part-way.

        By default a random order of the examples (kept in ``progress.order``) cut into
        slices; with a ``batching`` policy, what it draws from the generator state kept
        in ``progress.batch_state``.
        """
        at, generator = self.state.progress, self.state.generator
        if self.batching is None:
            if at.order is None:  # a fresh epoch, not one resumed part-way through
                at.order = torch.randperm(len(data[0]), generator=generator)
            order = at.order.to(data[0].device)  # indices beside the data: no copy per step
            if self.distributed:
                order = shard(order, dist_rank(), world_size())
            return Slices(data, order.split(self.state.batch_size))
        resumed, now = at.batch_state is not None, generator.get_state()
        if resumed:
            generator.set_state(at.batch_state)
        else:
            at.batch_state = now
        batches = self.batching(tuple(data), generator)
        if resumed:
            generator.set_state(now)
        if not len(batches):
            raise ValueError(
                f"batches: the batching policy gave no batches for epoch {at.epoch + 1}")
        return BatchShard(batches, dist_rank(), world_size()) if self.distributed else batches

    def stop_if_asked(self) -> None:
        """After a SIGINT/SIGTERM: let callbacks save, then raise ``Interrupted``."""
        signum = self._pending()
        if signum is None:
            return
        notes = [n for n in self.emit("on_interrupt", signum) if n]
        saved = "; ".join(notes) or "nothing saved (no run_dir)"
        raise Interrupted(f"stopped by {signal.Signals(signum).name} at "
                          f"{self.state.progress.describe()}; {saved}", signum)

    def bad_step(self, problem: str) -> None:
        """Warn of a skipped step, or stop once more than ``max_bad_steps`` were skipped."""
        at = self.state.progress
        where = f"epoch {at.epoch + 1}, step {at.step} of {self.state.num_steps}"
        if at.bad_steps <= self.max_bad_steps:
            logger.warning("%s at %s: step skipped (%d of at most %d)",
                           problem, where, at.bad_steps, self.max_bad_steps)
            return
        path = self.state.checkpoint_path
        kept = (f"the last checkpoint, {path}, is intact" if path and path.is_file()
                else "no checkpoint was written")
        raise FloatingPointError(
            f"{problem} at {where}, the parameters were left as they were; {kept} "
            "(try a smaller lr, clip_norm, or max_bad_steps to skip such steps)"
        )


class Slices(Sequence):
    """Batches sliced from ``data`` on demand, one index tensor each."""

    def __init__(self, data: Sequence[torch.Tensor], indices: Sequence[torch.Tensor]):
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, ...]:
        # index_select gathers the same rows as t[idx], without advanced indexing's
        # overhead (a third of the time on a CPU batch of 32 images)
        idx = self.indices[i]
        return tuple(t.index_select(0, idx) for t in self.data)
