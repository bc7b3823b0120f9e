r"""The six figures of the VAE story, each drawn from a trained model and real numbers.

Each figure function computes its numbers, draws them, and returns ``(numbers, figure)``:
``numbers`` a JSON-able dict of everything the figure shows, ``figure`` a matplotlib
Figure (save it with :func:`pyro_vae.plots.save`).

=============================  =====================================================
:func:`kl_divergence_2d`       prior and posterior of one image of a 2-D model;
                               KL(q || p) in closed form and by Monte Carlo
:func:`reparameterization`     z = mu + sigma * eps; the reparameterised and the
                               score-function gradient of the ELBO, their variances
:func:`elbo_decomposition`     log p(x) = ELBO + KL(q(z|x) || p(z|x)) per image, for
                               two guides (a diagonal one and a flow)
:func:`latent_interpolation`   images decoded along a path between two codes
:func:`beta_vae_tradeoff`      reconstruction against KL over a beta sweep
:func:`training_curves`        reconstruction and KL per epoch, the warm-up weight
=============================  =====================================================

:func:`write_all` draws all six into a folder, training small seeded runs (cached under
``out/runs/``) for whatever the runs it is given do not cover. See ``docs/figures.md``.
"""

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import torch
from torch.distributions import kl_divergence

import pyro.distributions as dist
import pyro.poutine as poutine

from . import plots, runs
from .evaluate import elbo_terms
from .guides import DiagonalNormal
from .models import VAE
from .schedules import SCHEDULES

logger = logging.getLogger(__name__)
Numbers = Dict[str, Any]
SIGMAS = (1, 2, 3)  # contours drawn at 1, 2 and 3 standard deviations of a Gaussian


# ------------------------------------------------------------------ shared pieces
def gaussian_kl(q_loc: torch.Tensor, q_scale: torch.Tensor, p_loc: torch.Tensor,
                p_scale: torch.Tensor) -> torch.Tensor:
    r"""KL(N(m_q, diag s_q^2) || N(m_p, diag s_p^2)), summed over the last dim: ``[...]``.

        KL = sum_d log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2

    which for the prior N(0, I) is ``1/2 sum_d (s_q^2 + m_q^2 - 1 - log s_q^2)``.
    """
    ratio = (q_scale / p_scale) ** 2
    return 0.5 * (ratio + ((q_loc - p_loc) / p_scale) ** 2 - 1 - ratio.log()).sum(-1)


def _diagonal_posterior(model: VAE, x: torch.Tensor) -> dist.Normal:
    """The elementwise Normal of q(z | x) for ``x: [B, C, H, W]``: loc, scale ``[B, D]``."""
    if not isinstance(model.posterior, DiagonalNormal):
        raise ValueError(f"model: expected a VAE with the diagonal guide, got "
                         f"{type(model.posterior).__name__}")
    with torch.no_grad():
        return model.posterior(model.encoder(x)).base_dist


def _joint_terms(model: VAE, x: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x | z), log p(z))`` per item of ``x: [N, C, H, W]``, ``z: [N, D]``: two
    ``[N]``, from the model's own sites ``"x"`` and ``"z"`` (differentiable in ``z``)."""
    trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(x)
    sites = trace.nodes
    return (sites["x"]["fn"].log_prob(sites["x"]["value"]),
            sites["z"]["fn"].log_prob(sites["z"]["value"]))


def _grid(lo: Sequence[float], hi: Sequence[float], n: int = 160):
    """A ``[n * n, 2]`` grid over the box ``lo``..``hi`` and its two ``[n, n]`` meshes."""
    xs, ys = (torch.linspace(float(a), float(b), n) for a, b in zip(lo, hi))
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], -1), gx, gy


def _density_contours(ax, log_density, mode: torch.Tensor, lo, hi, color: str,
                      label: str) -> None:
    """Contours of ``log_density: [M, 2] -> [M]`` where a Gaussian of mode ``mode: [2]``
    would be at 1, 2 and 3 standard deviations: ``log_density(mode) - r^2 / 2`` for ``r``
    in :data:`SIGMAS` (the mode may lie outside the plotted box)."""
    points, gx, gy = _grid(lo, hi)
    with torch.no_grad():
        values = log_density(points).reshape(gx.shape)
        top = log_density(mode.reshape(1, 2).to(points)).item()
    levels = sorted(top - r * r / 2 for r in SIGMAS)
    ax.contour(gx.numpy(), gy.numpy(), values.numpy(), levels=levels, colors=color,
               linewidths=1.0, linestyles="solid")
    ax.plot([], [], color=color, label=label)  # contour sets have no legend entry


def _show_image(ax, x: torch.Tensor, title: str) -> None:
    ax.imshow(x.detach().cpu().reshape(x.shape[-2:]).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_axis_off()


def _two_d(model: VAE, name: str = "model") -> None:
    if model.z_dim != 2:
        raise ValueError(f"{name}: expected a model with a 2-D latent, got z_dim {model.z_dim}")


def _tolist(values: Dict[str, Any]) -> Numbers:
    """Tensors as (lists of) floats, so the numbers are JSON."""
    return {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in values.items()}


# ------------------------------------------------------- 1. KL divergence in 2-D
@torch.no_grad()
def kl_divergence_2d(model: VAE, x: torch.Tensor, num_samples: int = 10000
                     ) -> Tuple[Numbers, plt.Figure]:
    r"""The prior p(z) and the posterior q(z | x) of one image ``x: [1, C, H, W]`` of a
    2-D model with the diagonal guide, and KL(q || p) two ways:

        closed form   :func:`gaussian_kl`, equal to torch's ``kl_divergence(q, p)``
        Monte Carlo   (1/S) sum_s [log q(z_s | x) - log p(z_s)],  z_s ~ q(z | x),

    with the Monte-Carlo estimate's standard error ``std / sqrt(S)``, ``S = num_samples``.
    """
    _two_d(model)
    q = _diagonal_posterior(model, x)
    p = model.prior()
    prior = getattr(p, "base_dist", None)  # the Normal of Independent(Normal), if it is one
    if not isinstance(prior, dist.Normal):
        raise ValueError(f"model: expected a Gaussian prior, got {type(p).__name__}")
    closed = gaussian_kl(q.loc[0], q.scale[0], prior.loc, prior.scale).item()
    z = q.sample((num_samples,))[:, 0]  # [S, 2]
    terms = q.log_prob(z).sum(-1) - p.log_prob(z)  # [S]
    numbers = {
        "mu": q.loc[0], "sigma": q.scale[0], "kl_closed_form": closed,
        "kl_torch": kl_divergence(q, prior).sum().item(),
        "kl_monte_carlo": terms.mean().item(),
        "kl_monte_carlo_stderr": (terms.std() / math.sqrt(num_samples)).item(),
        "num_samples": num_samples,
    }
    return _tolist(numbers), _draw_kl(model, x, q, z, terms, numbers)


def _draw_kl(model: VAE, x, q: dist.Normal, z, terms, numbers: Numbers) -> plt.Figure:
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2),
                             gridspec_kw={"width_ratios": [0.7, 1, 1, 1.3]})
    _show_image(axes[0], x[0], "test image x")
    mu, sigma = q.loc[0], q.scale[0]
    posterior = lambda v: q.log_prob(v).sum(-1)  # noqa: E731  [M, 2] -> [M]
    for ax, lo, hi in ((axes[1], (-3.5, -3.5), (3.5, 3.5)),
                       (axes[2], mu - 4 * sigma, mu + 4 * sigma)):
        _density_contours(ax, model.prior().log_prob, model.prior().mean.detach(), lo, hi,
                          "C0", "prior p(z)")
        _density_contours(ax, posterior, mu.detach(), lo, hi, "C3", "posterior q(z|x)")
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
    axes[2].scatter(z[:300, 0], z[:300, 1], s=3, color="C3", alpha=0.4, label="z_s ~ q(z|x)")
    axes[1].set_title("contours at 1, 2, 3 sd")
    axes[2].set_title("zoom on q(z|x)")
    axes[1].legend(fontsize=8, loc="lower left")
    axes[2].legend(fontsize=8, loc="lower left")
    count = torch.arange(1, len(terms) + 1)
    running = terms.cumsum(0) / count
    band = 2 * terms.std() / count.sqrt()
    ax = axes[3]
    ax.plot(count, running, color="C3", label="Monte Carlo, running mean")
    ax.fill_between(count.numpy(), (running - band).numpy(), (running + band).numpy(),
                    color="C3", alpha=0.2, label="± 2 standard errors")
    ax.axhline(numbers["kl_closed_form"], color="k", ls="--", label="closed form")
    ax.set_xscale("log")
    ax.set_xlabel("samples S")
    ax.set_ylabel("KL(q || p)  [nats]")
    ax.set_title(f"closed form {numbers['kl_closed_form']:.3f}, MC {numbers['kl_monte_carlo']:.3f}"
                 f" ± {numbers['kl_monte_carlo_stderr']:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------- 2. the reparameterisation trick
def gradient_estimates(model: VAE, x: torch.Tensor, num_draws: int = 2000
                       ) -> Dict[str, torch.Tensor]:
    r"""``num_draws`` single-sample estimates of the gradient of the ELBO of one image
    ``x: [1, C, H, W]`` with respect to q's parameters ``lambda = (mu, log sigma)``
    (the decoder fixed), by two estimators, each ``[S, 2 D]`` (``mu`` first):

        reparameterised  grad_lambda [log p(x, z) - log q(z)] at z = mu + sigma * eps
        score function   grad_lambda log q(z; lambda) * [log p(x, z) - log q(z)], z ~ q

    Both are unbiased (E_q[grad log q] = 0); the draws share ``eps ~ N(0, I)``. Also
    returns ``eps`` and ``z``, ``[S, D]``.
    """
    q = _diagonal_posterior(model, x)
    loc = q.loc.expand(num_draws, -1).clone().requires_grad_()
    log_scale = q.scale.log().expand(num_draws, -1).clone().requires_grad_()
    eps = torch.randn(num_draws, model.z_dim)
    xs = x.expand(num_draws, *x.shape[1:])

    def elbo_integrand(z):  # log p(x, z) - log q(z | x), [S]
        log_q = dist.Normal(loc, log_scale.exp()).log_prob(z).sum(-1)
        return sum(_joint_terms(model, xs, z)) - log_q

    z = loc + log_scale.exp() * eps
    reparam = torch.autograd.grad(elbo_integrand(z).sum(), [loc, log_scale])
    z = z.detach()
    log_q = dist.Normal(loc, log_scale.exp()).log_prob(z).sum(-1)
    weight = elbo_integrand(z).detach()
    score = torch.autograd.grad((weight * log_q).sum(), [loc, log_scale])
    return {"reparameterised": torch.cat(reparam, -1), "score_function": torch.cat(score, -1),
            "eps": eps, "z": z}


def reparameterization(model: VAE, x: torch.Tensor, num_draws: int = 2000
                       ) -> Tuple[Numbers, plt.Figure]:
    """z = mu + sigma * eps for the posterior of ``x: [1, C, H, W]`` (2-D model), and the
    mean and variance over ``num_draws`` draws of each estimator of
    :func:`gradient_estimates`, per parameter (``mu_1, mu_2, log sigma_1, log sigma_2``)."""
    _two_d(model)
    draws = gradient_estimates(model, x, num_draws)
    numbers: Numbers = {"parameters": ["mu_1", "mu_2", "log_sigma_1", "log_sigma_2"],
                        "num_draws": num_draws}
    for name in ("reparameterised", "score_function"):
        g = draws[name]
        numbers[name] = {"mean": g.mean(0).tolist(),
                         "stderr": (g.std(0) / math.sqrt(num_draws)).tolist(),
                         "variance": g.var(0).tolist()}
    numbers["variance_ratio"] = (draws["score_function"].var(0)
                                 / draws["reparameterised"].var(0)).tolist()
    return numbers, _draw_gradients(draws, numbers)


def _draw_gradients(draws: Dict[str, torch.Tensor], numbers: Numbers) -> plt.Figure:
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    eps, z, shown = draws["eps"], draws["z"], slice(0, 400)
    for ax, points, title in ((axes[0], eps, "eps ~ N(0, I)"),
                              (axes[1], z, "z = mu + sigma * eps  ~ q(z|x)")):
        ax.scatter(points[shown, 0], points[shown, 1], c=eps[shown, 0], cmap="coolwarm", s=6)
        ax.set_title(title)
        ax.set_xlabel("1st coordinate")
        ax.set_ylabel("2nd coordinate")
    estimates = {k: draws[k][:, 0] for k in ("reparameterised", "score_function")}
    lo, hi = torch.quantile(estimates["score_function"], torch.tensor([0.02, 0.98])).tolist()
    for k, colour in zip(estimates, ("C0", "C1")):
        axes[2].hist(estimates[k].clamp(lo, hi).numpy(), bins=60, range=(lo, hi), density=True,
                     alpha=0.6, color=colour, label=k.replace("_", " "))
    axes[2].set_title("estimates of dELBO / d mu_1")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    offsets, width = torch.arange(4), 0.38
    for i, (k, colour) in enumerate(zip(estimates, ("C0", "C1"))):
        axes[3].bar(offsets + (i - 0.5) * width, numbers[k]["variance"], width, color=colour,
                    label=k.replace("_", " "))
    axes[3].set_xticks(offsets.tolist(), ["mu_1", "mu_2", "log s_1", "log s_2"])
    axes[3].set_yscale("log")
    axes[3].set_title(f"variance over {numbers['num_draws']} draws")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------ 3. the ELBO decomposition
@torch.no_grad()
def bound_terms(model: VAE, x: torch.Tensor, num_samples: int = 1000) -> Numbers:
    r"""For one image ``x: [1, C, H, W]``, from ``2 K`` independent draws ``z ~ q(z | x)``
    (``K = num_samples``) and log-weights ``w = log p(x, z) - log q(z | x)``::

        log p(x) ~= log (1/K) sum_k exp(w_k)        first K draws (IWAE, Burda et al. eq. 8)
        ELBO     ~= (1/K) sum_k w_k                 last K draws
                  = -recon - KL,  recon = E_q[-log p(x|z)],  KL = E_q[log q(z|x) - log p(z)]
        gap       = log p(x) - ELBO = KL(q(z|x) || p(z|x))  >= 0

    Standard errors: ``std(w) / sqrt(K)`` for the ELBO; the delta method
    ``std(e^w) / (sqrt(K) mean(e^w))`` for log p(x); the two added in quadrature for the gap.
    The importance-weighted estimate is itself a lower bound, so the gap is if anything
    underestimated. Returns floats, in nats.
    """
    xs = x.expand(2 * num_samples, *x.shape[1:])
    guide_trace = poutine.trace(model.guide).get_trace(xs)
    site = guide_trace.nodes["z"]
    log_q = site["fn"].log_prob(site["value"])  # a flow's sample keeps its inverse cached
    log_lik, log_prior = _joint_terms(model, xs, site["value"])
    w_iw, w = (log_lik + log_prior - log_q).split(num_samples)
    scaled = (w_iw - w_iw.max()).exp()
    log_px = (w_iw.logsumexp(0) - math.log(num_samples)).item()
    out = {"log_px": log_px, "log_px_stderr": (scaled.std() / scaled.mean()).item()
           / math.sqrt(num_samples), "elbo": w.mean().item(),
           "elbo_stderr": w.std().item() / math.sqrt(num_samples),
           "recon": -log_lik[num_samples:].mean().item(),
           "kl": (log_q - log_prior)[num_samples:].mean().item()}
    out["gap"] = out["log_px"] - out["elbo"]
    out["gap_stderr"] = math.hypot(out["log_px_stderr"], out["elbo_stderr"])
    return out


def elbo_decomposition(models: Dict[str, VAE], x: torch.Tensor, num_samples: int = 1000,
                       shown: int = 20) -> Tuple[Numbers, plt.Figure]:
    """:func:`bound_terms` for each image of ``x: [N, C, H, W]`` under each of ``models``
    (name -> model, e.g. a diagonal and a flow guide trained on the same data), the first
    ``shown`` images drawn. Numbers: per model, the per-image lists and the means over
    the ``N`` images (``mean_gap`` with its standard error over images)."""
    numbers: Numbers = {"num_samples": num_samples, "num_images": len(x)}
    for name, model in models.items():
        rows = [bound_terms(model, x[i: i + 1], num_samples) for i in range(len(x))]
        per_image = {k: [r[k] for r in rows] for k in rows[0]}
        numbers[name] = {**per_image, **_mean("gap", per_image["gap"], per_image["gap_stderr"]),
                         "mean_log_px": sum(per_image["log_px"]) / len(x),
                         "mean_elbo": sum(per_image["elbo"]) / len(x)}
    first, *others = models
    for name in others:  # paired over the same images, so image-to-image spread cancels
        difference = [a - b for a, b in zip(numbers[first]["gap"], numbers[name]["gap"])]
        numbers[f"gap {first} - {name}"] = _mean("difference", difference,
                                                 numbers[name]["gap_stderr"])
    return numbers, _draw_decomposition(numbers, list(models), min(shown, len(x)))


def _mean(key: str, values: List[float], stderrs: List[float]) -> Dict[str, float]:
    """``mean_<key>`` of ``values`` and its standard error over them (one value: its own)."""
    v = torch.tensor(values)
    spread = (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else stderrs[0]
    return {f"mean_{key}": v.mean().item(), f"mean_{key}_stderr": spread}


def _draw_decomposition(numbers: Numbers, names: List[str], shown: int) -> plt.Figure:
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(5.5 * (len(names) + 1), 4.2))
    index = torch.arange(shown).numpy()
    for ax, name in zip(axes, names):
        terms = {k: v[:shown] if isinstance(v, list) else v for k, v in numbers[name].items()}
        ax.bar(index, terms["recon"], color="C2", label="recon  E_q[-log p(x|z)]")
        ax.bar(index, terms["kl"], bottom=terms["recon"], color="C3",
               label="KL(q(z|x) || p(z))")
        ax.errorbar(index, [-v for v in terms["log_px"]],
                    yerr=[2 * s for s in terms["log_px_stderr"]], fmt="_", color="k",
                    markersize=12, label=f"-log p(x), IWAE K={numbers['num_samples']}")
        # The axis starts near the smallest bar, so the KL and the gap stay visible.
        ax.set_ylim(0.85 * min(terms["recon"]),
                    1.15 * max(r + k for r, k in zip(terms["recon"], terms["kl"])))
        ax.set_title(f"{name} guide: -ELBO = recon + KL, and -log p(x)")
        ax.set_xlabel("test image")
        ax.set_ylabel("nats  (bar = -ELBO)")
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax, width = axes[-1], 0.8 / len(names)
    for i, name in enumerate(names):
        terms = numbers[name]
        ax.bar(index + (i - (len(names) - 1) / 2) * width, terms["gap"][:shown], width,
               yerr=[2 * s for s in terms["gap_stderr"][:shown]], color=f"C{i}",
               label=f"{name}: mean over {numbers['num_images']} images "
                     f"{terms['mean_gap']:.2f} ± {terms['mean_gap_stderr']:.2f}")
    ax.axhline(0, color="k", lw=0.8)
    paired = [f"{k}: {v['mean_difference']:.2f} ± {v['mean_difference_stderr']:.2f}"
              for k, v in numbers.items() if isinstance(v, dict) and "mean_difference" in v]
    ax.set_title("\n".join(["gap log p(x) - ELBO = KL(q(z|x) || p(z|x))", *paired]), fontsize=10)
    ax.set_xlabel("test image")
    ax.set_ylabel("nats (± 2 standard errors)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------- 4. latent interpolation
@torch.no_grad()
def latent_interpolation(model: VAE, x_from: torch.Tensor, x_to: torch.Tensor, steps: int = 10,
                         codes: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None
                         ) -> Tuple[Numbers, plt.Figure]:
    """Decode along the linear and the spherical path (:func:`pyro_vae.explore.latent_path`)
    between the posterior locations of two images ``[1, C, H, W]`` of a 2-D model, drawn
    over the prior's contours (and ``codes: [M, 2]`` of other images, coloured by
    ``labels: [M]``) beside the decoded rows. Numbers: the endpoints, and per path its
    ``steps`` codes and their log prior density log p(z)."""
    from .explore import PATHS, latent_path

    _two_d(model)
    z_from, z_to = model.encode(x_from)[0], model.encode(x_to)[0]
    paths = {name: latent_path(z_from, z_to, steps, path=name) for name in PATHS}
    prior = model.prior()
    numbers: Numbers = {"z_from": z_from.tolist(), "z_to": z_to.tolist(), "steps": steps}
    for name, path in paths.items():
        numbers[name] = {"codes": path.tolist(), "log_prior": prior.log_prob(path).tolist()}
    images = torch.stack([model.decode(path) for path in paths.values()])  # [P, steps, C, H, W]
    fig = plt.figure(figsize=(15, 5))
    ax = fig.add_axes([0.04, 0.1, 0.3, 0.8])
    box = torch.cat([*paths.values()] + ([] if codes is None else [codes])).abs().max().item()
    box = max(3.5, 1.05 * box)
    _density_contours(ax, prior.log_prob, prior.mean.detach(), (-box, -box), (box, box), "0.5",
                      "prior p(z)")
    if codes is not None:
        scatter = ax.scatter(codes[:, 0], codes[:, 1], s=2, alpha=0.5, cmap="tab10",
                             c=None if labels is None else labels.cpu().numpy())
        if labels is not None:
            fig.colorbar(scatter, ax=ax, label="digit", fraction=0.04)
    for i, (name, path) in enumerate(paths.items()):
        ax.plot(path[:, 0], path[:, 1], "o-", color=f"C{i + 3}", ms=4, label=name)
    ax.set_title("codes of test images; the two paths")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.legend(fontsize=8, loc="lower left")
    row_axes = [fig.add_axes([0.4, 0.55 - 0.45 * i, 0.58, 0.4]) for i in range(len(paths))]
    for row_ax, row, name in zip(row_axes, images, paths):
        plots.show_images(row_ax, row, steps)
        row_ax.set_title(f"decoded along the {name} path")
    return numbers, fig


# --------------------------------------------------------- 5. the beta trade-off
def beta_vae_tradeoff(models: Dict[float, VAE], x: torch.Tensor) -> Tuple[Numbers, plt.Figure]:
    """Test reconstruction E_q[-log p(x|z)] against KL(q(z|x) || p(z)) on ``x: [N, C, H, W]``
    for models trained with each beta (beta -> model), both terms at beta = 1
    (:func:`pyro_vae.evaluate.elbo_terms`), drawn by :func:`pyro_vae.plots.rate_distortion`
    with the beta = 1 point (the plain ELBO) marked."""
    points = []
    for beta, model in sorted(models.items()):
        terms = elbo_terms(model.model, model.guide, x)
        points.append({"beta": float(beta), **terms})
    fig = plots.rate_distortion(points, "beta-VAE: rate against distortion (test set)")
    ax = fig.axes[0]
    for p in points:
        if p["beta"] == 1:
            ax.plot(p["kl"], p["recon"], "*", ms=16, color="C3", label="β = 1: the ELBO")
            ax.legend(fontsize=8)
    return {"points": points}, fig


# ------------------------------------------------------------ 6. training curves
def training_curves(histories: Dict[str, List[Dict[str, float]]], configs: Dict[str, Any]
                    ) -> Tuple[Numbers, plt.Figure]:
    """Test reconstruction and KL per epoch of each run (name -> its ``metrics.jsonl`` rows,
    :func:`pyro_vae.runs.read_metrics`), the KL weight ``beta * w(t)`` of a run's warm-up
    schedule (:mod:`pyro_vae.schedules`, from its config) where it used one, and
    ``test_accuracy`` where a labelled model logged it."""
    accuracy = any("test_accuracy" in row for rows in histories.values() for row in rows)
    fig, axes = plt.subplots(1, 3 + accuracy, figsize=(4.6 * (3 + accuracy), 3.8))
    numbers: Numbers = {}
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [row["epoch"] for row in rows]
        numbers[name] = {k: [row.get(k) for row in rows]
                         for k in ("epoch", "recon", "kl", "test_loss", "test_accuracy", "beta")
                         if any(k in row for row in rows)}
        for ax, key in zip(axes, ("recon", "kl")):
            ax.plot(epochs, numbers[name].get(key, [None] * len(rows)), "o-", ms=3,
                    color=f"C{i}", label=name)
        weight = _kl_weights(configs[name], max(epochs, default=0))
        if weight is not None:
            schedule = configs[name].warmup
            axes[2].plot(*weight, color=f"C{i}", label=f"{name}: warm-up {schedule}")
            if schedule != "none":
                numbers[name]["warmup"] = {"schedule": schedule,
                                           "epochs": configs[name].warmup_epochs}
        if accuracy and "test_accuracy" in numbers[name]:
            axes[3].plot(epochs, numbers[name]["test_accuracy"], "o-", ms=3, color=f"C{i}",
                         label=name)
    titles = ("reconstruction E_q[-log p(x|z)] (test)", "KL(q(z|x) || p(z)) (test)",
              "KL weight beta * w(t) (warm-up)", "test accuracy")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("nats per image")
    fig.tight_layout()
    return numbers, fig


def _kl_weights(config, epochs: int) -> Optional[Tuple[List[float], List[float]]]:
    """``(t, beta * w(t))`` over ``(0, epochs]``, ``w`` the run's warm-up schedule
    (``w = 1`` without one); None for a model with no KL weight."""
    if not epochs or not hasattr(config, "warmup"):  # only the VAE family's configs have one
        return None
    w = SCHEDULES[config.warmup](config.warmup_epochs)
    t = torch.linspace(0, epochs, 400)[1:].tolist()
    return t, [config.beta * w(v) for v in t]


# ------------------------------------------------------ all six, from runs
FILES = {"kl_divergence_2d": "kl_divergence_2d.png", "reparameterization": "reparameterization.png",
         "elbo_decomposition": "elbo_decomposition.png",
         "latent_interpolation": "latent_interpolation.png",
         "beta_vae_tradeoff": "beta_vae_tradeoff.png", "training_curves": "training_curves.png"}
BETAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# The small seeded runs trained where none is given, 10-30 s each on one core. The flow
# run is the beta = 1 run but for its guide: in 20 dimensions and with 4 flow layers its
# gap is measurably smaller over seeds (in 2, the diagonal guide is already close).
RECIPES: Dict[str, Dict[str, Any]] = {
    "vae-2d": {"z_dim": 2, "epochs": 20},
    "iaf": {"z_dim": 20, "epochs": 15, "guide": "iaf", "flow_layers": 4},
    "warmup": {"z_dim": 20, "epochs": 15, "warmup": "linear", "warmup_epochs": 5.0},
    **{f"beta-{b:g}": {"z_dim": 20, "epochs": 15, "beta": b} for b in BETAS},
}
# Fields that do not change what a run learns, ignored when a cached run is compared.
UNLEARNT = ("out", "device", "threads", "tensorboard", "checkpoint_every", "checkpoint_steps",
            "keep_checkpoints")


def cached_run(folder, device: str = "cpu", **fields) -> runs.Run:
    """The VAE run configured by ``fields`` (on mnist-10k, seed 0 unless they say
    otherwise) in ``folder``: read back when ``folder`` already holds it, finished with
    the same settings; trained there (replacing anything else) otherwise."""
    from .config import TrainConfig
    from .train import train

    config = TrainConfig.for_model(**{"model": "vae", **fields, "out": str(folder)})
    if not _holds(Path(folder), config):
        logger.info("training %s", folder)
        train(config, overwrite=True)
    return runs.Run.load(folder, device)


def _holds(folder: Path, config) -> bool:
    """Whether ``folder`` holds a finished run of ``config`` (up to :data:`UNLEARNT`)."""
    from .checkpoint import CHECKPOINT
    from .config import TrainConfig

    if not (folder / runs.CONFIG).is_file() or not (folder / CHECKPOINT).is_file():
        return False
    saved = TrainConfig.from_dict(runs.read_config(folder)).to_dict()
    wanted = config.to_dict()
    same = all(saved.get(k) == v for k, v in wanted.items() if k not in UNLEARNT)
    return same and len(runs.read_metrics(folder)) >= config.epochs


def _first(candidates: Sequence[runs.Run], **fields) -> Optional[runs.Run]:
    """The first run whose config has every one of ``fields``."""
    return next((r for r in candidates
                 if all(getattr(r.config, k, None) == v for k, v in fields.items())), None)


def _sweep(candidates: Sequence[runs.Run]) -> Dict[float, runs.Run]:
    """The largest set of runs alike but for ``beta`` (beta -> run); empty without two betas."""
    groups: Dict[str, Dict[float, runs.Run]] = {}
    for r in candidates:
        rest = {k: v for k, v in r.config.to_dict().items() if k not in (*UNLEARNT, "beta")}
        groups.setdefault(json.dumps(rest, sort_keys=True), {})[r.config.beta] = r
    best = max(groups.values(), key=len, default={})
    return best if len(best) > 1 else {}


def choose_runs(given: Sequence[runs.Run], cache, device: str = "cpu") -> Dict[str, Any]:
    """Which run draws which figure: a given run where one fits, else a run of
    :data:`RECIPES` trained (or found) in ``cache``. Returns ``{"2d": run, "flow": run,
    "diagonal": run, "sweep": {beta: run}, "curves": [run, ...]}``: a 2-D diagonal VAE
    (figures 1, 2, 4), a beta sweep (5), an iaf-guide VAE and a diagonal one like it (3),
    and the runs whose curves are drawn (6: every given run, else two)."""
    cache = Path(cache)
    vaes = [r for r in given if isinstance(r.model, VAE) and not r.model.uses_labels]
    made = lambda name: cached_run(cache / name, device, **RECIPES[name])  # noqa: E731
    two_d = _first(vaes, z_dim=2, guide="diagonal", prior="normal") or made("vae-2d")
    sweep = _sweep(vaes) or {b: made(f"beta-{b:g}") for b in BETAS}
    flow = _first(vaes, guide="iaf") or made("iaf")
    # A diagonal run like the flow's: every field alike but the guide's own.
    own = ("flow_layers", "guide_rank") if flow.config.prior != "flow" else ("guide_rank",)
    alike = {k: v for k, v in flow.config.to_dict().items() if k not in (*UNLEARNT, *own)}
    diagonal = (_first([*vaes, two_d, *sweep.values()], **{**alike, "guide": "diagonal"})
                or cached_run(cache / f"{flow.folder.name}-diagonal", device,
                              **{**alike, "guide": "diagonal"}))
    curves = list(given) or [made("beta-1"), made("warmup")]
    return {"2d": two_d, "flow": flow, "diagonal": diagonal, "sweep": sweep, "curves": curves}


def _test_set(run: runs.Run) -> Tuple[torch.Tensor, torch.Tensor]:
    """The test images ``[N, C, H, W]`` and labels ``[N]`` of the data ``run`` trained on."""
    from .train import prepare_data

    data = prepare_data(run.config)
    return data.x_test, data.y_test


def write_all(out, run_dirs: Sequence = (), image: int = 0, num_images: int = 500,
              iw_samples: int = 1000, seed: int = 0) -> Numbers:
    """The six figures of :data:`FILES` in the folder ``out``, and ``figures.json`` with
    their numbers (and, under ``"runs"``, the folder of each run drawn). ``run_dirs``:
    runs to draw from (:func:`choose_runs`; the rest are trained in ``out/runs``);
    ``image``: the index of the test image of figures 1, 2 and 4 (4 goes from it to the
    first test image of another class); ``num_images``, ``iw_samples``: figure 3's images
    and importance samples K. Everything runs on the CPU, seeded with ``seed``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = choose_runs([runs.Run.load(d, "cpu") for d in run_dirs], out / "runs")
    two_d, flow, sweep = chosen["2d"].model, chosen["flow"], chosen["sweep"]
    x, y = _test_set(chosen["2d"])
    if not 0 <= image < len(x):
        raise ValueError(f"image: expected a test image index in [0, {len(x)}), got {image}")
    other = next(i for i in range(len(y)) if y[i] != y[image])
    one, two = x[image: image + 1], x[other: other + 1]
    makers = {
        "kl_divergence_2d": lambda: kl_divergence_2d(two_d, one),
        "reparameterization": lambda: reparameterization(two_d, one),
        "elbo_decomposition": lambda: elbo_decomposition(
            {"diagonal": chosen["diagonal"].model, flow.config.guide: flow.model},
            _test_set(flow)[0][:num_images], iw_samples),
        "latent_interpolation": lambda: latent_interpolation(two_d, one, two, codes=two_d.encode(x),
                                                             labels=y),
        "beta_vae_tradeoff": lambda: beta_vae_tradeoff(
            {b: r.model for b, r in sweep.items()}, _test_set(next(iter(sweep.values())))[0]),
        "training_curves": lambda: training_curves(
            {_name(r): runs.read_metrics(r.folder) for r in chosen["curves"]},
            {_name(r): r.config for r in chosen["curves"]}),
    }
    numbers: Numbers = {}
    for name, make in makers.items():
        torch.manual_seed(seed)
        numbers[name], fig = make()
        plots.save(fig, out / FILES[name])
        logger.info("wrote %s", out / FILES[name])
    numbers["kl_divergence_2d"]["image"] = numbers["reparameterization"]["image"] = image
    numbers["latent_interpolation"]["images"] = [image, other]
    numbers["runs"] = {k: ({f"{b:g}": str(r.folder) for b, r in v.items()} if k == "sweep" else
                           [str(r.folder) for r in v] if k == "curves" else str(v.folder))
                       for k, v in chosen.items()}
    (out / "figures.json").write_text(json.dumps(numbers, indent=1) + "\n")
    return numbers


def _name(run: runs.Run) -> str:
    return run.folder.name or str(run.folder)
