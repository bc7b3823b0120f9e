r"""Free bits (Kingma et al. 2016, eq. 15): a KL term below ``lambda`` nats costs ``lambda``.

The latent dimensions are split into groups ``g``, and the ELBO's KL terms replaced by

.. math::

    \sum_g \max\big(\lambda, \overline{\mathrm{KL}}_g\big), \qquad
    \overline{\mathrm{KL}}_g = \tfrac1B \textstyle\sum_n \mathrm{KL}_{ng},

the batch mean of group ``g``'s KL. A group below ``lambda`` then gets no KL gradient:
the encoder may put information there for free, which keeps a strong decoder from
collapsing the code. :data:`GROUPS` names the two groupings of ``--free-bits-per``:

- ``"level"``: each latent site is one group (the whole code of a one-level model, each
  level of a hierarchical one; ``lambda`` in nats per item and level);
- ``"dimension"``: each dimension of each site (``lambda`` in nats per item and
  dimension), which needs a guide and prior that factorise over dimensions.

A model adds ``-shortfall(kl, lambda)`` to its log-density as a ``pyro.factor`` (or
``+shortfall`` in its guide, whose factors are subtracted): summed over the batch,
``-sum_n KL_n`` becomes ``-B sum_g max(lambda, KL_g)``, value and gradient, when the
KL is the one the ELBO charges (``TraceMeanField_ELBO``'s closed form).
"""

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

import pyro
import pyro.distributions as dist

GROUPS = ("level", "dimension")


def check_free_bits(nats: float, per: str) -> None:
    """``ValueError`` naming the argument unless ``nats >= 0`` is finite and ``per`` is known."""
    if isinstance(nats, bool) or not (float(nats) >= 0 and float(nats) < float("inf")):
        raise ValueError(f"free_bits: expected a non-negative number of nats, got {nats!r}")
    if per not in GROUPS:
        raise ValueError(f"free_bits_per: expected one of {list(GROUPS)}, got {per!r}")


def check_elbo(nats: float, elbo) -> None:
    """Free bits correct the KL term of ``Trace_ELBO`` and ``TraceMeanField_ELBO``; other
    bounds (the importance-weighted one) have none: ``ValueError`` for them."""
    if nats and not isinstance(elbo, (pyro.infer.Trace_ELBO, pyro.infer.TraceMeanField_ELBO)):
        raise ValueError(f"free_bits: needs TraceMeanField_ELBO (the default) or "
                         f"Trace_ELBO, got {type(elbo).__name__}")


def site_kl(q: dist.Distribution, p: dist.Distribution, z: torch.Tensor) -> torch.Tensor:
    """``KL(q || p)`` per item where a closed form is registered, else the one-sample
    estimate ``log q(z) - log p(z)`` at ``z`` drawn from ``q``: what
    ``TraceMeanField_ELBO`` charges for a latent site. ``[B]``."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


def dimension_kl(q: dist.Distribution, p: dist.Distribution) -> torch.Tensor:
    """``KL(q_d || p_d)`` per item and dimension, ``[B, D]``, for a diagonal Normal ``q``
    and ``p`` (``Normal(...).to_event(1)``); ``ValueError`` for any other pair."""
    pair = []
    for name, d in (("guide", q), ("prior", p)):
        base = d.base_dist if isinstance(d, Independent) else None
        if not isinstance(base, Normal) or d.reinterpreted_batch_ndims != 1:
            raise ValueError(f"free_bits_per: 'dimension' needs a {name} that factorises "
                             f"over dimensions (a diagonal Normal), got "
                             f"{type(d).__name__}; use --free-bits-per level")
        pair.append(base)
    return kl_divergence(*pair)


@torch.no_grad()
def check_factorised(q: dist.Distribution, p: dist.Distribution) -> None:
    """``ValueError`` unless guide ``q`` and prior ``p`` (of a dummy item, when a model is
    built) allow free bits per dimension."""
    dimension_kl(q, p)


def latent_kl(q: dist.Distribution, p: dist.Distribution, z: torch.Tensor,
              per: str = "level") -> torch.Tensor:
    """The KL term of one latent site per item, ``[B]`` (``per="level"``), or per item
    and dimension, ``[B, D]`` (``per="dimension"``)."""
    return dimension_kl(q, p) if per == "dimension" else site_kl(q, p, z)


def shortfall(kl: torch.Tensor, nats: float) -> torch.Tensor:
    """``sum_g relu(nats - mean_n KL_ng)`` for each item: ``[B]`` from ``kl: [B]`` (one
    group) or ``[B, G]``. What free bits add to the loss, per item."""
    groups = kl if kl.dim() > 1 else kl.unsqueeze(-1)
    below = F.relu(nats - groups.mean(-2, keepdim=True)).sum(-1)
    return below.expand(groups.shape[:-1])


def guide_factor(q: dist.Distribution, p: dist.Distribution, z: torch.Tensor, nats: float,
                 per: str = "level", name: str = "free_bits") -> None:
    """Free bits from inside a guide, for the latent site drawn ``z ~ q`` with prior ``p``:
    the factor ``shortfall``, which Pyro subtracts from the ELBO as it does every factor
    of a guide (marked reparameterised: its gradient is a pathwise one)."""
    pyro.factor(name, shortfall(latent_kl(q, p, z, per), nats), has_rsample=True)
