"""Weight averaging: the model that is evaluated and kept is an average of its iterates.

With a constant learning rate, stochastic gradients keep the weights moving around a
region of good solutions; a classifier's accuracy then moves by a point or so from one
epoch to the next. An average of the iterates sits nearer the middle of that region.
From epoch ``start`` on, after each step :math:`n = 1, 2, \\dots` with weights
:math:`w_n`, :class:`WeightAverage` keeps

- ``"swa"``, the equal average (stochastic weight averaging, Izmailov et al. 2018):
  :math:`\\bar w_n = \\bar w_{n-1} + (w_n - \\bar w_{n-1}) / n`;
- ``"ema"``, the exponential moving average (Polyak & Juditsky 1992):
  :math:`\\bar w_n = d\\, \\bar w_{n-1} + (1 - d)\\, w_n`, :math:`\\bar w_1 = w_1`.

Training itself never sees the average: at the end of each epoch the average is put in
the model's place, so that the epoch's evaluation, its metrics and its checkpoint's
parameters are those of :math:`\\bar w` (``pyro-vae evaluate``, ``sample`` and
``Run.load`` read the average), and the training weights go back before the next step.
Floating-point buffers (batch-norm statistics) are averaged like the weights, an
approximation to recomputing the statistics under :math:`\\bar w`. The average, its
count and the training weights are part of the checkpoint (``state.extra``), so a run
resumes exactly.
"""

from typing import Dict, Iterable, Tuple

import torch

import pyro

from .. import checks
from .callbacks import Callback

KINDS = ("none", "swa", "ema")
KEY = "weight_average"


class WeightAverage(Callback):
    """Keep the ``kind`` average of the weights over the steps after epoch ``start``.

    :param kind: ``"swa"`` (equal weights) or ``"ema"`` (exponential, ``decay``).
    :param start: epochs trained before averaging begins (0: from the first step).
    :param decay: the EMA's ``d`` in (0, 1).

    Adds ``averaged_steps`` to each epoch's metrics. Place it before every callback
    that evaluates (:func:`~pyro_vae.fit` does, given ``weight_average``).
    """

    def __init__(self, kind: str = "swa", start: int = 0, decay: float = 0.999):
        checks.one_of("weight_average", kind, KINDS[1:])
        self.kind = kind
        self.start = checks.integer("average_start", start, minimum=0)
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay: expected a number in (0, 1), got {decay!r}")
        self.decay = decay

    def on_epoch_start(self, state, epoch):
        self.live = live = _live(state)  # the same tensors all epoch: looked up once
        mine = state.extra.get(KEY)
        if mine is None:
            at = state.progress
            if begun(self.start, at.epoch, at.step):
                raise ValueError(
                    f"average_start: this run resumes at {state.progress.describe()}, after "
                    f"averaging should have begun (at the end of epoch {self.start}), from "
                    "a checkpoint without an average; set average_start to at least "
                    f"{state.progress.epoch}, or start a new run")
            return
        if "training" in mine:  # the model holds the average since the last epoch ended
            _copy(live, mine.pop("training"))
        mine["average"] = {k: v.to(live[k].device) for k, v in mine["average"].items()}

    def on_step_end(self, state, loss):
        if loss != loss or state.progress.epoch < self.start:  # a skipped step, or too early
            return
        live = self.live
        mine = state.extra.get(KEY)
        if mine is None:
            state.extra[KEY] = {"count": 1, "average": {k: v.detach().clone()
                                                        for k, v in live.items()}}
            return
        mine["count"] += 1
        weight = 1.0 / mine["count"] if self.kind == "swa" else 1.0 - self.decay
        with torch.no_grad():
            for name, average in mine["average"].items():
                average.lerp_(live[name], weight)

    def on_epoch_end(self, state, metrics):
        mine = state.extra.get(KEY)
        metrics["averaged_steps"] = 0 if mine is None else mine["count"]
        if mine is None:
            return
        live = _live(state)
        mine["training"] = {k: v.detach().clone() for k, v in live.items()}
        _copy(live, mine["average"])


def begun(start: int, epoch: int, step: int) -> bool:
    """Whether an average from the end of epoch ``start`` holds steps, ``step`` steps into
    the epoch after ``epoch`` completed ones."""
    return epoch > start or (epoch == start and step > 0)


def _live(state) -> Dict[str, torch.Tensor]:
    """The floating-point tensors that are averaged, by name: the model's parameters and
    buffers, or the param store's (unconstrained) parameters for plain functions."""
    items: Iterable[Tuple[str, torch.Tensor]] = (
        state.module.state_dict(keep_vars=True).items() if state.module is not None
        else pyro.get_param_store().named_parameters())
    return {k: v for k, v in items if v.is_floating_point()}


def _copy(live: Dict[str, torch.Tensor], values: Dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in values.items():
            live[name].copy_(value)
