"""KL warm-up: schedules for the weight of the KL term, and the hook that applies one.

A schedule maps training progress ``t`` (in epochs, ``t > 0``, as passed to
:func:`pyro_vae.infer.fit`'s ``step_hooks``) to a weight ``w(t)`` in ``(0, 1]``;
:class:`KLWarmup` sets ``model.beta = w(t) * beta`` before every step, so a beta-VAE
anneals to its own ``beta`` and a plain VAE to 1. The weight never reaches 0 because
``poutine.scale`` needs a positive scale (and the first step already counts as
progress ``1 / steps``).

=============  ===============================================================
``none``       ``w(t) = 1``
``linear``     ``w(t) = min(1, t / E)``: a ramp over the first ``E`` epochs
               (Bowman et al. 2016; Sonderby et al. 2016)
``cyclical``   ``w(t) = min(1, tau / (R E))`` with ``tau`` the position in the
               current cycle of ``E`` epochs, ``tau in (0, E]``: a ramp over the
               first ``R = 1/2`` of each cycle, then 1 (Fu et al. 2019)
=============  ===============================================================
"""

import math


def _check_epochs(epochs) -> float:
    if isinstance(epochs, bool) or not epochs > 0:
        raise ValueError(f"warmup_epochs: expected a positive number of epochs, got {epochs!r}")
    return float(epochs)


class Constant:
    """``w(t) = 1``: no warm-up."""

    def __init__(self, epochs: float = 1.0):
        self.epochs = _check_epochs(epochs)

    def __call__(self, t: float) -> float:
        return 1.0


class Linear:
    """``w(t) = min(1, t / epochs)``."""

    def __init__(self, epochs: float):
        self.epochs = _check_epochs(epochs)

    def __call__(self, t: float) -> float:
        return min(1.0, t / self.epochs)


class Cyclical:
    """``w(t) = min(1, tau / (ratio * epochs))``, ``tau = t - epochs * ceil(t / epochs - 1)``.

    ``tau`` is the position within the current cycle, in ``(0, epochs]``, so the last
    step of a cycle has weight 1 and the first step of the next starts the ramp again.
    """

    def __init__(self, epochs: float, ratio: float = 0.5):
        self.epochs = _check_epochs(epochs)
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio: expected a fraction in (0, 1], got {ratio!r}")
        self.ratio = float(ratio)

    def __call__(self, t: float) -> float:
        tau = t - self.epochs * math.ceil(t / self.epochs - 1)
        return min(1.0, tau / (self.ratio * self.epochs))


SCHEDULES = {
    "none": Constant,
    "linear": Linear,
    "cyclical": Cyclical,
}


class KLWarmup:
    """A step hook for :func:`~pyro_vae.infer.fit`: ``model.beta = schedule(t) * beta``.

    :param model: any object with a ``beta`` attribute read by its model and guide
        (:class:`~pyro_vae.models.VAE` and its subclasses).
    :param schedule: a callable ``t -> w(t)`` with ``w(t) > 0``, e.g. ``Linear(10)``.
    :param beta: the weight reached when ``w = 1``; default the model's ``beta`` now.
    """

    def __init__(self, model, schedule, beta: float = None):
        self.model, self.schedule = model, schedule
        self.beta = float(model.beta if beta is None else beta)

    def __call__(self, t: float) -> None:
        self.model.beta = self.schedule(t) * self.beta
