"""Evaluation of a trained model/guide pair on held-out data.

:func:`elbo_terms` splits the negative ELBO per image into its two parts,

    -ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || p(z))
             =        recon        +        kl

computed from one guide trace replayed through the model, with beta = 1 (site
``scale`` is ignored) and the closed-form KL wherever one is registered for the
pair of distributions (a Monte-Carlo estimate, log q - log p, elsewhere). Auxiliary
factors (``pyro.factor``, e.g. M2's classification term) belong to a training
objective, not to the ELBO, and are left out. An observed label site counts in
``recon``: for the conditional VAE the bound is on ``-log p(x, y)``.

:func:`accuracy` scores a classifier ``q(y | x)``, such as M2's.
"""

from typing import Callable, Dict, Sequence, Tuple, Union

import torch
from torch.distributions import kl_divergence

import pyro.poutine as poutine

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def as_tuple(data: Tensors) -> Tuple[torch.Tensor, ...]:
    """A data set as a tuple of tensors sharing their first dimension."""
    data = (data,) if torch.is_tensor(data) else tuple(data)
    if not data or any(not torch.is_tensor(t) for t in data):
        raise TypeError("data: expected a tensor or a tuple of tensors")
    if len({t.shape[0] for t in data}) != 1:
        raise ValueError(
            f"data: tensors differ in their first dimension: {[t.shape[0] for t in data]}"
        )
    return data


def _site_kl(q_site: dict, p_site: dict) -> torch.Tensor:
    try:
        return kl_divergence(q_site["fn"], p_site["fn"]).sum()
    except NotImplementedError:
        value = q_site["value"]
        return (q_site["fn"].log_prob(value) - p_site["fn"].log_prob(value)).sum()


@torch.no_grad()
def elbo_terms_batch(model: Callable, guide: Callable, *args) -> Dict[str, torch.Tensor]:
    """Summed ``recon`` and ``kl`` (nats) of one batch: see the module docstring."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    recon = kl = torch.zeros(())
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["infer"].get("is_auxiliary"):
            continue
        if site["is_observed"]:
            recon = recon - site["fn"].log_prob(site["value"]).sum()
        elif name in guide_trace.nodes:
            kl = kl + _site_kl(guide_trace.nodes[name], site)
    return {"recon": recon, "kl": kl}


@torch.no_grad()
def elbo_terms(
    model: Callable, guide: Callable, data: Tensors, batch_size: int = 1000
) -> Dict[str, float]:
    """Negative ELBO per item of ``data`` and its ``recon`` and ``kl`` parts (nats).

    Returns ``{"test_loss": recon + kl, "recon": ..., "kl": ...}``, each a mean over
    items. ``data`` is passed to ``model`` and ``guide`` batch by batch, as in ``fit``.
    """
    data = as_tuple(data)
    n = data[0].shape[0]
    total = {"recon": 0.0, "kl": 0.0}
    for idx in torch.arange(n).split(batch_size):
        terms = elbo_terms_batch(model, guide, *(t[idx.to(t.device)] for t in data))
        for key in total:
            total[key] += terms[key].item()
    out = {key: value / n for key, value in total.items()}
    return {"test_loss": out["recon"] + out["kl"], **out}


@torch.no_grad()
def accuracy(
    classify: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    """Fraction of ``x`` whose most probable class under ``classify(x) -> [B, K]`` is ``y``."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"accuracy: expected as many labels as images (> 0), got {len(y)} and {len(x)}")
    correct = sum(
        (classify(xb).argmax(-1) == yb.to(xb.device)).sum().item()
        for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    )
    return correct / len(x)
