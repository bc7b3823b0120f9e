r"""Per-example anomaly scores of a trained model; higher means more anomalous.

For each item ``x`` (nats unless stated; ``N_bits = nll / log 2``):

==============  =====================================================================
``elbo``        ``-ELBO(x) = recon + kl``
``iwae``        ``-log p(x)`` estimated with K importance samples (Burda et al. 2015)
``recon``       ``E_q[-log p(x | z)]``, the expected reconstruction error
``kl``          ``KL(q(z | x) || p(z))``
``complexity``  ``N_bits(x) - L(x)``: the model's code length minus a lossless
                compressor's (Serra et al. 2020); simple images are cheap for both
``ratio``       ``nll(x) - nll_bg(x)``: minus the log-likelihood ratio against a
                background model trained on perturbed inputs (Ren et al. 2019)
``latent``      ``(mu(x) - m)^T S^{-1} (mu(x) - m)``: the Mahalanobis distance of the
                posterior mean from the normal data's codes (mean ``m``, covariance ``S``)
``classifier``  ``H[p(c | mu(x))]``: the entropy of the class of the posterior mean under a
                small classifier fitted on the normal data's codes and class labels (the
                baseline of Hendrycks & Gimpel 2017, in the latent space); needs labels
                of the normal classes, never of the anomalies
``dose``        ``-sum_j log k_j(t_j(x))``: the density of the summary statistics
                ``t = (recon, kl, nll, latent)`` under one-dimensional Gaussian kernel
                density estimates ``k_j`` fitted on normal data (Morningstar et al. 2021);
                atypically *good* likelihoods score high too
``combined``    ``-2 sum_j log p_j(x)``: Fisher's combination of the p-values of
                ``complexity``, ``classifier`` (for labelled data) and ``latent``, each
                ``p_j = (1 + #{normal items scoring >= s_j(x)}) / (1 + n)`` on held-out
                normal data (the ``calibration`` of :meth:`Scorer.fit`)
``llr``         ``L(x) - L^{>k}(x)``, a hierarchical model's (``sites``, top first)
                likelihood ratio of Havtorn et al. (2021, eq. 6-7): ``L^{>k}`` is the
                bound with the ``k`` lowest levels drawn from the model's conditional
                prior ``p(z_<=k | z_>k)`` instead of the guide, so it scores ``x`` by what
                the upper, semantic levels say of it (:func:`level_bound`)
==============  =====================================================================

``nll`` is the ``iwae`` estimate when ``iw_samples > 0``, else ``-ELBO``. Grey-level data
is scored under the run's own likelihood, as it is. ``latent``, ``classifier`` and ``dose``
need a :class:`Reference` fitted on normal data (:meth:`Scorer.fit`).
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Optional, Sequence

import torch
from torch import nn

import pyro.poutine as poutine

from ..evaluate import elbo_terms_per_item, iw_log_likelihood, posterior_mean
from .compress import compressed_bits


@dataclass(frozen=True)
class Score:
    """A score: the per-item statistics it reads, and how it combines them."""

    needs: FrozenSet[str]
    compute: Callable[[Dict[str, torch.Tensor], "Reference"], torch.Tensor]
    needs_reference: bool = False


def _need_reference(reference):
    if reference is None:
        raise ValueError("score: 'latent', 'classifier' and 'dose' compare with normal data; "
                         "call Scorer.fit(x_normal) first")
    return reference


SCORES: Dict[str, Score] = {
    "elbo": Score(frozenset({"recon", "kl"}), lambda s, r: s["recon"] + s["kl"]),
    "iwae": Score(frozenset({"iwae"}), lambda s, r: s["iwae"]),
    "recon": Score(frozenset({"recon"}), lambda s, r: s["recon"]),
    "kl": Score(frozenset({"kl"}), lambda s, r: s["kl"]),
    "complexity": Score(frozenset({"nll", "compressed_bits"}),
                        lambda s, r: s["nll"] / math.log(2) - s["compressed_bits"]),
    "ratio": Score(frozenset({"nll", "background_nll"}),
                   lambda s, r: s["nll"] - s["background_nll"]),
    "latent": Score(frozenset({"mean"}), lambda s, r: _need_reference(r).mahalanobis(s["mean"]),
                    needs_reference=True),
    "classifier": Score(frozenset({"mean"}),
                        lambda s, r: _need_reference(r).class_entropy(s["mean"]),
                        needs_reference=True),
    "dose": Score(frozenset({"recon", "kl", "nll", "mean"}),
                  lambda s, r: _need_reference(r).dose(s), needs_reference=True),
    "combined": Score(frozenset({"nll", "compressed_bits", "mean"}),
                      lambda s, r: _need_reference(r).fisher(
                          {name: SCORES[name].compute(s, r) for name in r.null}),
                      needs_reference=True),
    "llr": Score(frozenset({"llr"}), lambda s, r: s["llr"]),
}
COMBINED = ("complexity", "classifier", "latent")
"""The scores ``combined`` joins, where they apply."""


def _kde_log_density(reference: torch.Tensor, values: torch.Tensor,
                     chunk: int = 2048) -> torch.Tensor:
    """``log k(v)`` of a Gaussian kernel density estimate on ``reference: [M]`` with
    Scott's bandwidth ``h = 1.06 sd M^{-1/5}``, at ``values: [N]``."""
    reference = reference.double()
    h = 1.06 * reference.std().clamp_min(1e-6) * len(reference) ** -0.2
    kernel = torch.distributions.Normal(reference, h)
    return torch.cat([kernel.log_prob(v[:, None]).logsumexp(1) - math.log(len(reference))
                      for v in values.double().split(chunk)])


def fit_code_classifier(codes: torch.Tensor, labels: torch.Tensor, epochs: int = 60,
                        seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A classifier of ``labels: [N]`` (``K`` classes) from ``codes: [N, D]``: standardised
    codes, one hidden layer of 256 ReLUs, cross-entropy by Adam (lr 1e-3, weight decay
    1e-4, batches of 256, seeded). Returns ``codes -> p(c | code): [M, K]``."""
    generator = torch.Generator().manual_seed(seed)
    codes = codes.double().cpu()
    loc, scale = codes.mean(0), codes.std(0).clamp_min(1e-6)
    classes, targets = labels.cpu().unique(return_inverse=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(codes.shape[1], 256), nn.ReLU(),
                            nn.Linear(256, len(classes))).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    z = (codes - loc) / scale
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in torch.randperm(len(z), generator=generator).split(256):
                loss = nn.functional.cross_entropy(net(z[idx]), targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    net.requires_grad_(False)
    return lambda q: torch.softmax(net((q.double().cpu() - loc) / scale), -1)


class Reference:
    """What normal data looks like to a model: its codes' mean ``m`` and covariance ``S``
    (shrunk by ``1e-3 tr(S) / D``), a classifier of its classes from the codes (when
    ``labels`` name two or more), and its summary statistics for ``dose``."""

    DOSE_STATISTICS = ("recon", "kl", "nll", "latent")

    def __init__(self, stats: Dict[str, torch.Tensor], labels: Optional[torch.Tensor] = None):
        codes = stats["mean"].double()
        self.loc = codes.mean(0)
        cov = torch.atleast_2d(torch.cov(codes.T))
        ridge = 1e-3 * cov.diagonal().mean().clamp_min(1e-12)
        self.precision = torch.linalg.inv(cov + ridge * torch.eye(len(cov), dtype=cov.dtype))
        self.statistics = {k: stats[k].double() for k in ("recon", "kl", "nll")}
        self.statistics["latent"] = self.mahalanobis(stats["mean"])
        known = labels is not None and bool((labels >= 0).all()) and len(labels.unique()) > 1
        self.classify = fit_code_classifier(stats["mean"], labels) if known else None
        self.null: Dict[str, torch.Tensor] = {}

    def calibrate(self, scores: Dict[str, torch.Tensor]) -> None:
        """Keep each score of held-out normal items, ``{name: [n]}``, for :meth:`fisher`."""
        self.null = {name: s.double().cpu().sort().values for name, s in scores.items()}

    def fisher(self, scores: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``-2 sum_j log p_j`` with the upper-tail p-values of ``scores`` against the
        calibration scores: ``[N]``."""
        if not self.null:
            raise ValueError("score: 'combined' needs held-out normal data: "
                             "Scorer.fit(x, y, calibration=(x_val, y_val)), or a run "
                             "trained with --val-fraction")
        total = 0.0
        for name, null in self.null.items():
            at_least = len(null) - torch.searchsorted(null, scores[name].double().cpu())
            total = total - 2 * torch.log((1 + at_least) / (1 + len(null)))
        return total

    def class_entropy(self, codes: torch.Tensor) -> torch.Tensor:
        """``H[p(c | code)] = -sum_c p log p`` of ``codes: [N, D]``: ``[N]`` nats."""
        if self.classify is None:
            raise ValueError("score: 'classifier' needs the class labels of the normal data "
                             "(two classes or more); this data set has none")
        p = self.classify(codes)
        return -(p * p.clamp_min(1e-30).log()).sum(-1)

    def mahalanobis(self, codes: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of ``codes: [N, D]`` from ``m``: ``[N]``."""
        d = codes.double().to(self.loc.device) - self.loc
        return ((d @ self.precision) * d).sum(-1)

    def dose(self, stats: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``-sum_j log k_j(t_j)`` over :data:`DOSE_STATISTICS`: ``[N]``."""
        values = dict(stats, latent=self.mahalanobis(stats["mean"]))
        return -sum(_kde_log_density(self.statistics[k], values[k].double().cpu())
                    for k in self.DOSE_STATISTICS)


def level_bound(model, *batch: torch.Tensor, prior_levels: int = 0) -> torch.Tensor:
    r"""One draw of the bound ``L^{>k}(x)`` per item, ``[B]``, ``k = prior_levels``:

    .. math::

        L^{>k}(x) = \mathbb E_{q(z_{>k} \mid x)\, p(z_{\le k} \mid z_{>k})}
        \Big[\log p(x \mid z_1) + \log \frac{p(z_{>k})}{q(z_{>k} \mid x)}\Big]

    (Havtorn et al. 2021, eq. 6): the levels of ``model.sites`` (top first) above the
    ``k`` lowest are drawn from the guide, the ``k`` lowest from the model given them, so
    their prior and proposal cancel. ``k = 0`` is the ELBO.
    """
    sites = tuple(model.sites)
    if not 0 <= prior_levels < len(sites):
        raise ValueError(f"prior_levels: expected 0 to {len(sites) - 1} (the model has "
                         f"{len(sites)} latent levels), got {prior_levels}")
    kept = sites[:len(sites) - prior_levels]
    guide = poutine.trace(model.guide).get_trace(*batch)
    drawn = {site: guide.nodes[site]["value"] for site in kept}
    joint = poutine.trace(poutine.condition(model.model, data=drawn)).get_trace(*batch)
    x = joint.nodes["x"]
    bound = x["fn"].log_prob(x["value"])
    for site in kept:
        p, q = joint.nodes[site], guide.nodes[site]
        bound = bound + p["fn"].log_prob(p["value"]) - q["fn"].log_prob(q["value"])
    return bound


class Scorer:
    """Per-item anomaly scores of a trained ``model`` (a :class:`~pyro_vae.models.Model`).

    :param iw_samples: K of the ``iwae`` score, and of ``nll`` wherever it is used;
        0 uses ``-ELBO`` as ``nll`` (``iwae`` then takes K = 100).
    :param elbo_samples: draws of ``z`` averaged in ``recon`` (``kl`` is in closed form
        wherever one is registered).
    :param background: a model trained on perturbed inputs, for ``ratio``.
    :param compressor: ``"png"`` or ``"zlib"``, for ``complexity``.
    :param prior_levels: ``k`` of ``llr``, the lowest levels drawn from the prior.
    """

    def __init__(self, model, iw_samples: int = 0, elbo_samples: int = 1, background=None,
                 compressor: str = "png", batch_size: int = 500, chunk_size: int = 10000,
                 prior_levels: int = 1):
        for name, value in (("iw_samples", iw_samples), ("elbo_samples", elbo_samples - 1),
                            ("batch_size", batch_size - 1)):
            if int(value) != value or value < 0:
                raise ValueError(f"{name}: expected a {'non-negative' if name == 'iw_samples' else 'positive'} integer, got {value!r}")
        self.model, self.background = model, background
        self.iw_samples, self.elbo_samples = iw_samples, elbo_samples
        self.compressor, self.batch_size, self.chunk_size = compressor, batch_size, chunk_size
        self.prior_levels = prior_levels
        self.reference: Optional[Reference] = None

    def _inputs(self, x: torch.Tensor, y: Optional[torch.Tensor]):
        device = next(self.model.parameters()).device
        x = self.model.prepare_data(torch.as_tensor(x), "data").to(device)
        if not (self.model.uses_labels and not self.model.semi_supervised):
            return (x,)
        if y is None:
            raise ValueError(f"labels: {type(self.model).__name__} scores (x, y) pairs; "
                             "give the labels of the data")
        return (x, self.model.prepare_labels(torch.as_tensor(y), len(x)).to(device))

    def _elbo_parts(self, data) -> Dict[str, torch.Tensor]:
        parts = {"recon": [], "kl": []}
        s = self.elbo_samples
        for idx in torch.arange(len(data[0])).split(max(1, self.batch_size // s)):
            rep = idx.repeat(s).to(data[0].device)  # sample-major: [s, b] after view
            terms = elbo_terms_per_item(self.model.model, self.model.guide, *(t[rep] for t in data))
            for key in parts:
                parts[key].append(terms[key].view(s, len(idx)).mean(0).double().cpu())
        return {key: torch.cat(v) for key, v in parts.items()}

    def _llr(self, data) -> torch.Tensor:
        """``L(x) - L^{>k}(x)``, each bound the mean of ``elbo_samples`` draws."""
        if len(getattr(self.model, "sites", ())) < 2:
            raise ValueError(f"score: 'llr' compares a hierarchical model's levels; "
                             f"{type(self.model).__name__} has one (train --model hvae "
                             f"--levels 2 or more)")
        s, out = self.elbo_samples, []
        for idx in torch.arange(len(data[0])).split(max(1, self.batch_size // s)):
            batch = [t[idx.repeat(s).to(t.device)] for t in data]  # sample-major: [s, b]
            full = level_bound(self.model, *batch)
            upper = level_bound(self.model, *batch, prior_levels=self.prior_levels)
            out.append((full - upper).view(s, len(idx)).mean(0).double().cpu())
        return torch.cat(out)

    def _nll(self, data) -> torch.Tensor:
        k = self.iw_samples or 100
        return -iw_log_likelihood(self.model.model, self.model.guide, data, k,
                                  self.chunk_size).double().cpu()

    @torch.no_grad()
    def statistics(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
                   needs: Sequence[str] = ("recon", "kl", "nll", "mean")) -> Dict[str, torch.Tensor]:
        """The per-item statistics the scores read, ``[N]`` each (``mean``: ``[N, D]``)."""
        data, needs, out = self._inputs(x, y), set(needs), {}
        if needs & {"recon", "kl"} or (needs & {"nll"} and not self.iw_samples):
            out.update(self._elbo_parts(data))
        if "iwae" in needs or ("nll" in needs and self.iw_samples):
            out["iwae"] = self._nll(data)
        if "nll" in needs:
            out["nll"] = out["iwae"] if self.iw_samples else out["recon"] + out["kl"]
        if "mean" in needs:
            out["mean"] = torch.cat([posterior_mean(self.model.guide, *(t[idx.to(t.device)] for t in data)).double().cpu()
                                     for idx in torch.arange(len(data[0])).split(self.batch_size)])
        if "llr" in needs:
            out["llr"] = self._llr(data)
        if "compressed_bits" in needs:
            out["compressed_bits"] = compressed_bits(data[0], self.compressor)
        if "background_nll" in needs:
            if self.background is None:
                raise ValueError("score: 'ratio' needs a background model (--background RUN)")
            twin = Scorer(self.background, self.iw_samples, self.elbo_samples,
                          batch_size=self.batch_size, chunk_size=self.chunk_size)
            out["background_nll"] = twin.statistics(x, y, ("nll",))["nll"]
        return out

    def fit(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
            calibration: Optional[Sequence] = None) -> "Scorer":
        """Fit the :class:`Reference` of ``latent``, ``classifier`` and ``dose`` on normal
        items ``x`` (with their class labels ``y`` for ``classifier``), and with
        ``calibration = (x_val, y_val)``, other normal items, the null of ``combined``."""
        self.reference = Reference(self.statistics(x, y, ("recon", "kl", "nll", "mean")),
                                   None if y is None else torch.as_tensor(y))
        if calibration is not None:
            names = [n for n in COMBINED if n != "classifier" or self.reference.classify]
            self.reference.calibrate(self.score(*calibration, scores=names))
        return self

    def score(self, x: torch.Tensor, y: Optional[torch.Tensor] = None,
              scores: Sequence[str] = ("elbo",)) -> Dict[str, torch.Tensor]:
        """``{name: [N]}`` for each of ``scores`` (names of :data:`SCORES`)."""
        for name in scores:
            if name not in SCORES:
                raise ValueError(f"score: expected one of {sorted(SCORES)}, got {name!r}")
        needs = set().union(*(SCORES[name].needs for name in scores))
        stats = self.statistics(x, y, sorted(needs))
        return {name: SCORES[name].compute(stats, self.reference) for name in scores}
