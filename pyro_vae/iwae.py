r"""The importance-weighted bound of Burda et al. (2015) as a Pyro ELBO, its K draws in one pass.

For each item ``x`` of the ``"data"`` plate, with ``K = num_particles``::

    L_K(x) = E[ log (1/K) sum_k w_k ],   w_k = p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)

``L_1`` is the ELBO and ``L_K`` rises to ``log p(x)`` as ``K`` grows. :class:`IWAE`
replicates every item of the batch ``K`` times along the ``"data"`` plate (row ``k B + j``
is item ``j``'s ``k``-th draw), runs the guide and the replayed model once on the ``K B``
rows, and takes the log-mean-exp of each item's ``K`` log-weights. So any model whose
sample sites are per item trains on the bound in one vectorised pass, whether or not
its networks broadcast over a particle dimension; a batch norm sees each image ``K``
times and so the same batch statistics. The gradient is the reparameterised one, so
every latent site of the guide must have ``rsample``; for others (an enumerated or
sampled label), Pyro's ``RenyiELBO`` at ``alpha = 0`` adds score-function terms.
"""

import math
from typing import Callable

import torch

import pyro.poutine as poutine
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample

from .evaluate import check_guide_covers, per_item


class IWAE(ELBO):
    """``-sum_batch L_K(x)``: the negated importance-weighted bound of ``K = num_particles``
    draws per item, summed over the batch as Pyro's ELBOs sum theirs.

    Each site's log-density carries its ``scale`` (``beta`` of a warm-up scales the
    latent sites in both ``p`` and ``q``, as ``RenyiELBO`` has it) and ``mask``;
    ``pyro.factor`` terms of the model are part of ``log p``.
    """

    def __init__(self, num_particles: int = 5):
        if isinstance(num_particles, bool) or int(num_particles) != num_particles \
                or num_particles < 1:
            raise ValueError(f"num_particles: expected a positive integer, got {num_particles!r}")
        super().__init__(num_particles=int(num_particles))

    def _get_trace(self, model: Callable, guide: Callable, args, kwargs):
        """The model's and the guide's traces on the batch replicated ``K`` times
        (``K B`` items, row ``k B + j`` item ``j``)."""
        rows = torch.arange(args[0].shape[0], device=args[0].device).repeat(self.num_particles)
        replicas = [a[rows.to(a.device)] if torch.is_tensor(a) else a for a in args]
        guide_trace = poutine.trace(guide).get_trace(*replicas, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *replicas, **kwargs)
        return model_trace, guide_trace

    def log_weights(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` for each draw and item: ``[K, B]``."""
        k, b = self.num_particles, args[0].shape[0]
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        check_guide_covers(model_trace, guide_trace)
        log_w = _scaled_log_density(model_trace, k * b)
        log_w = log_w - _scaled_log_density(guide_trace, k * b, reparameterised=True)
        return log_w.view(k, b)

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """``-sum_j [logsumexp_k log w_kj - log K]``, differentiable in every parameter."""
        log_w = self.log_weights(model, guide, *args, **kwargs)
        return -(log_w.logsumexp(0) - math.log(self.num_particles)).sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return loss.item()


def _scaled_log_density(trace: poutine.Trace, n: int, reparameterised: bool = False):
    """Sum over ``trace``'s sample sites of ``scale * log_prob``, per item: ``[n]``.
    With ``reparameterised`` (the guide's trace), every latent site must have ``rsample``."""
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if reparameterised and not site["is_observed"] and not site["fn"].has_rsample:
            raise ValueError(
                f"site {name!r}: {type(site['fn']).__name__} has no reparameterised "
                "sample, so the IWAE gradient would be biased; use RenyiELBO (alpha = 0), "
                "whose score-function terms cover it")
        total = total + per_item(site["fn"].log_prob(site["value"]) * site["scale"], site, n)
    return total
