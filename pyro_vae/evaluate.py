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

:func:`iw_log_likelihood` estimates log p(x) itself by importance sampling with the
guide as proposal (Burda et al. 2015, eq. 8),

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k | x),    z_k ~ q(z | x),

the K-sample bound L_K: a lower bound in expectation, non-decreasing in K, equal
to the ELBO at K = 1 and to log p(x) as K -> infinity. Each weight is read off a
guide trace replayed through the model, so any model/guide pair works whose sample
sites all sit inside the ``"data"`` plate; no closed-form KL is used.

:func:`latent_statistics` reports per-dimension KL and the active units of
Burda et al. (2015, section 5.2), and :func:`kl_per_site` the KL term of each latent
site of a model with several.  See ``docs/priors_guides.md``.

:func:`accuracy` scores a classifier ``q(y | x)``, such as M2's.
"""

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.distributions import kl_divergence
from tqdm.auto import tqdm

import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def as_tuple(data: Tensors) -> Tuple[torch.Tensor, ...]:
    """A data set as a tuple of tensors sharing their first dimension (numpy arrays
    are taken as tensors)."""
    if torch.is_tensor(data) or isinstance(data, np.ndarray):
        data = (data,)
    data = tuple(torch.from_numpy(t) if isinstance(t, np.ndarray) else t for t in data)
    if not data or any(not torch.is_tensor(t) for t in data):
        raise TypeError("data: expected a tensor or a tuple of tensors (or numpy arrays)")
    if len({t.shape[0] for t in data}) != 1:
        raise ValueError(
            "data: expected tensors with one first dimension (one row per example), got "
            f"first dimensions {[t.shape[0] for t in data]}"
        )
    return data


def _elbo_site_terms(model: Callable, guide: Callable, *args):
    """``(part, value, site)`` for each ELBO term of one batch: ``part`` is ``"recon"``
    (``-log p(x | z)`` of an observed site) or ``"kl"`` (closed form where one is
    registered, else ``log q(z) - log p(z)`` at the guide's draw); ``value`` is shaped
    like the site's batch."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["infer"].get("is_auxiliary"):
            continue
        if site["is_observed"]:
            yield "recon", -site["fn"].log_prob(site["value"]), site
        elif name in guide_trace.nodes and not site_is_subsample(site):
            q_site = guide_trace.nodes[name]
            try:
                yield "kl", kl_divergence(q_site["fn"], site["fn"]), site
            except NotImplementedError:
                yield "kl", q_site["fn"].log_prob(q_site["value"]) - site["fn"].log_prob(
                    site["value"]), site


@torch.no_grad()
def elbo_terms_batch(model: Callable, guide: Callable, *args) -> Dict[str, torch.Tensor]:
    """Summed ``recon`` and ``kl`` (nats) of one batch: see the module docstring."""
    total = {"recon": torch.zeros(()), "kl": torch.zeros(())}
    for part, value, _ in _elbo_site_terms(model, guide, *args):
        total[part] = total[part].to(value) + value.sum()
    return total


@torch.no_grad()
def elbo_terms_per_item(model: Callable, guide: Callable, *args) -> Dict[str, torch.Tensor]:
    """``recon`` and ``kl`` (nats) of each item of one batch, ``[N]`` each (every sample
    site inside the ``"data"`` plate). ``args`` go to ``model`` and ``guide``; their first
    tensor's first dimension is the plate."""
    n = args[0].shape[0]
    total = {"recon": torch.zeros(n), "kl": torch.zeros(n)}
    for part, value, site in _elbo_site_terms(model, guide, *args):
        total[part] = total[part].to(value) + per_item(value, site, n)
    return total


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
def kl_per_site(
    model: Callable, guide: Callable, data: Tensors, batch_size: int = 1000
) -> Dict[str, float]:
    """The ``kl`` of :func:`elbo_terms` split by latent site: site -> mean nats per item.

    Each site's term is computed as there (closed form where registered, else
    ``log q - log p`` at the guide's draw, beta = 1), so with the same random draws the
    values sum to ``elbo_terms(...)["kl"]``. For a hierarchical model the term of a
    lower level is its KL given the guide's draw of the levels above.
    """
    data = as_tuple(data)
    n = data[0].shape[0]
    total: Dict[str, float] = {}
    for idx in torch.arange(n).split(batch_size):
        batch = [t[idx.to(t.device)] for t in data]
        for part, value, site in _elbo_site_terms(model, guide, *batch):
            if part == "kl":
                total[site["name"]] = total.get(site["name"], 0.0) + value.sum().item()
    return {name: value / n for name, value in total.items()}


DATA_PLATE = "data"


def per_item(value: torch.Tensor, site: dict, n: int) -> torch.Tensor:
    """``value`` (a log-probability or KL of ``site``, shaped like its batch) summed to
    one number per item of the ``"data"`` plate: ``[n]``; the site's ``mask`` applies."""
    frame = next((f for f in site["cond_indep_stack"] if f.name == DATA_PLATE), None)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} is outside the {DATA_PLATE!r} plate: per-item terms "
            "and importance weights need every sample site inside it"
        )
    value = scale_and_mask(value, mask=site["mask"])
    value = value.expand(torch.broadcast_shapes(value.shape, site["fn"].batch_shape))
    dim = value.dim() + frame.dim
    if dim < 0 or value.shape[dim] != n:
        raise ValueError(
            f"site {site['name']!r}: expected {n} items along the {DATA_PLATE!r} plate's "
            f"dim {frame.dim}, got batch shape {tuple(value.shape)}"
        )
    # Other plates and batch dims belong to the same item: sum them.
    return value.movedim(dim, 0).reshape(n, -1).sum(-1)


def _log_prob_per_item(trace: poutine.Trace, n: int) -> torch.Tensor:
    """Sum of the sample sites' log-probabilities of ``trace``, one per item: ``[n]``.

    Site ``scale`` is ignored (beta = 1) and ``mask`` applied; ``pyro.factor`` terms
    (auxiliary sites) are training terms, not part of p or q, and are left out.
    """
    total = torch.zeros(n)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("is_auxiliary"):
            continue
        log_p = per_item(site["fn"].log_prob(site["value"]), site, n)
        total = total.to(log_p) + log_p
    return total


@torch.no_grad()
def log_weights(model: Callable, guide: Callable, *args) -> torch.Tensor:
    """``log p(x, z) - log q(z | x)`` per item at one ``z ~ q(z | x)`` each: ``[N]``.

    ``args`` are the model's and guide's arguments, their first tensor's first
    dimension the ``"data"`` plate (``N`` items).
    """
    n = args[0].shape[0]
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    check_guide_covers(model_trace, guide_trace)
    return _log_prob_per_item(model_trace, n) - _log_prob_per_item(guide_trace, n)


def check_guide_covers(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """``ValueError`` naming the first latent site of the model that the guide lacks:
    an importance weight ``p(x, z) / q(z | x)`` needs q for every latent site."""
    for name, site in model_trace.nodes.items():
        latent = site["type"] == "sample" and not site["is_observed"]
        if latent and not site_is_subsample(site) and name not in guide_trace.nodes:
            raise ValueError(
                f"site {name!r} is latent in the model but absent from the guide: "
                "the importance weights need q for every latent site"
            )


@torch.no_grad()
def iw_log_likelihood(
    model: Callable,
    guide: Callable,
    data: Tensors,
    num_samples: int = 1000,
    chunk_size: int = 10000,
    progress: bool = False,
) -> torch.Tensor:
    """The K-sample importance-weighted estimate of ``log p(x)`` per item: ``[N]`` nats.

    See the module docstring for the equation. Items are replicated ``K`` times
    along the ``"data"`` plate, at most ``chunk_size`` replicas per model
    evaluation, and the log-mean-exp is accumulated over chunks, so memory does
    not grow with ``K`` (at the default, K = 5000 on MNIST needs about 0.3 GB).
    Replicating the data (rather than adding a particle plate) works for any model
    whose sites are per item, whether or not its networks broadcast.

    :param data: a tensor or tuple of tensors, passed to ``model`` and ``guide``.
    :param num_samples: K.
    :param chunk_size: replicas per model evaluation.
    :param progress: a tqdm bar over the items on stderr.
    """
    for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    data = as_tuple(data)
    n = data[0].shape[0]
    items_per_pass = max(1, chunk_size // num_samples)
    estimates = []
    bar = tqdm(total=n, desc=f"log p(x), K={num_samples}", unit="item", leave=False,
               disable=not progress)
    for idx in torch.arange(n).split(items_per_pass):
        bar.update(len(idx))
        batch = [t[idx.to(t.device)] for t in data]
        b = len(idx)
        samples_per_pass = max(1, chunk_size // b)
        chunks, done = [], 0
        while done < num_samples:
            s = min(samples_per_pass, num_samples - done)
            # Sample-major replicas: row i * b + j is item j, so the view is [s, b].
            rep = torch.arange(b, device=batch[0].device).repeat(s)
            lw = log_weights(model, guide, *(t[rep.to(t.device)] for t in batch))
            chunks.append(lw.view(s, b).logsumexp(0))
            done += s
        estimates.append(torch.stack(chunks).logsumexp(0) - math.log(num_samples))
    bar.close()
    return torch.cat(estimates)


def _draws(guide: Callable, site: str, batch: List[torch.Tensor], num: int) -> torch.Tensor:
    """``num`` guide draws of ``site`` for each item of ``batch``: ``[num, B, D]``."""
    b = batch[0].shape[0]
    rep = torch.arange(b).repeat(num)
    trace = poutine.trace(guide).get_trace(*(t[rep.to(t.device)] for t in batch))
    return trace.nodes[site]["value"].reshape(num, b, -1)


def posterior_mean(guide: Callable, *batch: torch.Tensor, site: str = "z",
                   draws: int = 32) -> torch.Tensor:
    """``E_q[z | x]`` per item, ``[B, D]``: the guide's ``mean`` where it has one, else
    the mean of ``draws`` draws (flows)."""
    trace = poutine.trace(guide).get_trace(*batch)
    if site not in trace.nodes:
        raise ValueError(f"site: the guide has no sample site {site!r}")
    try:
        return trace.nodes[site]["fn"].mean.reshape(batch[0].shape[0], -1)
    except NotImplementedError:
        return _draws(guide, site, list(batch), draws).mean(0)


def _factorised_normal(d: dist.Distribution) -> Optional[dist.Normal]:
    """The elementwise Normal of an ``Independent(Normal)`` with one event dim, else None."""
    if isinstance(d, torch.distributions.Independent) and d.reinterpreted_batch_ndims == 1:
        if isinstance(d.base_dist, torch.distributions.Normal):
            return d.base_dist
    return None


@torch.no_grad()
def latent_statistics(
    model: Callable,
    guide: Callable,
    data: Tensors,
    site: str = "z",
    batch_size: int = 1000,
    num_samples: int = 100,
    threshold: float = 0.01,
) -> Dict[str, Any]:
    r"""How the latent site ``site`` (values ``[N, D]``) is used on ``data``.

    - ``active_units``: the number of dimensions u with
      ``A_u = Cov_x(E_{q(z|x)}[z_u]) > threshold`` (Burda et al. 2015, eq. 18).
      ``E_q[z_u]`` is the guide's ``mean`` where it has one; otherwise (flows) the
      mean of ``num_samples`` draws, and ``A_u`` is debiased by the Monte-Carlo
      variance ``E_x[Var_q(z_u)] / num_samples`` the sample means add.
    - ``activity``: ``A_u`` for each dimension.
    - ``kl_per_dim``: ``E_x KL(q(z_u | x) || p(z_u))`` for each dimension when both
      q and p are diagonal Normals (the KL then sums over dimensions); ``None``
      otherwise, where the KL has no per-dimension split.
    - ``mutual_information``: I(x; z) under q, ``E_x[KL(q(z | x) || q(z))]``, with the
      aggregate posterior ``q(z)`` the mixture of the guide over each batch of ``B``
      items (Hoffman & Johnson 2016; He et al. 2019, eq. 5): with ``z_i ~ q(z | x_i)``,

          I ~= mean_i [log q(z_i | x_i) - log (1/B) sum_j q(z_i | x_j)]  <=  log B.

      A guide without a closed-form density at other items' codes (a flow, which would
      have to be inverted B^2 times) uses the mixture over the first 64 items of each
      batch. Other latent sites of the guide (M2's label) keep their sampled values.
    """
    data = as_tuple(data)
    n = data[0].shape[0]
    means, noise, kls, gaps = [], [], [], []
    for idx in torch.arange(n).split(batch_size):
        batch = [t[idx.to(t.device)] for t in data]
        guide_trace = poutine.trace(guide).get_trace(*batch)
        if site not in guide_trace.nodes:
            raise ValueError(f"site: the guide has no sample site {site!r}")
        q = guide_trace.nodes[site]["fn"]
        mix = (poutine.trace(guide).get_trace(*(t[:64] for t in batch))  # a flow: 64 items
               if isinstance(q, torch.distributions.TransformedDistribution) else guide_trace)
        z = mix.nodes[site]["value"]  # [B, B] below: (i, j) is log q(z_i | x_j), rows chunked
        log_q = torch.cat([mix.nodes[site]["fn"].log_prob(rows.unsqueeze(1).expand(-1, *z.shape))
                           for rows in z.split(128)])
        gaps.append(log_q.diagonal() - log_q.logsumexp(1) + math.log(len(z)))
        try:
            means.append(q.mean.reshape(len(idx), -1))
        except NotImplementedError:
            z = torch.cat([_draws(guide, site, [t[sub] for t in batch], num_samples)
                           for sub in torch.arange(len(idx)).split(max(1, 10000 // num_samples))],
                          dim=1)
            means.append(z.mean(0))
            noise.append(z.var(0) / num_samples)
        if kls is not None:
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)
            q_n, p_n = _factorised_normal(q), _factorised_normal(model_trace.nodes[site]["fn"])
            kls = None if q_n is None or p_n is None else kls + [kl_divergence(q_n, p_n).sum(0)]
    mean = torch.cat(means)
    activity = mean.var(0) if n > 1 else torch.zeros(mean.shape[1])
    if noise:
        activity = activity - torch.cat(noise).mean(0)
    return {
        "active_units": int((activity > threshold).sum()),
        "activity": activity.tolist(),
        "kl_per_dim": None if kls is None else (torch.stack(kls).sum(0) / n).tolist(),
        "mutual_information": torch.cat(gaps).mean().item(),
    }


@torch.no_grad()
def evaluation_report(
    model: Callable,
    guide: Callable,
    data: Tensors,
    iw_samples: int = 0,
    batch_size: int = 1000,
    chunk_size: int = 10000,
    progress: bool = False,
) -> Dict[str, Any]:
    """Everything ``pyro-vae evaluate`` reports, in nats per item unless stated.

    The keys of :func:`elbo_terms` and :func:`latent_statistics` (site ``"z"``),
    and with ``iw_samples = K > 0``: ``nll`` (mean of ``-log p(x)`` estimated by
    :func:`iw_log_likelihood`), ``nll_stderr`` (its standard error over items),
    ``iw_samples`` and ``bits_per_dim`` (``nll / (D log 2)``, D values per item).
    """
    data = as_tuple(data)
    out: Dict[str, Any] = dict(elbo_terms(model, guide, data, batch_size=batch_size))
    out.update(latent_statistics(model, guide, data, batch_size=batch_size))
    if iw_samples:
        nll = -iw_log_likelihood(model, guide, data, iw_samples, chunk_size, progress)
        out["nll"] = nll.mean().item()
        out["nll_stderr"] = (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0
        out["iw_samples"] = int(iw_samples)
        out["bits_per_dim"] = out["nll"] / (data[0][0].numel() * math.log(2))
    return out


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
