r"""Exploring a trained model's latent space: codes, paths, traversals, maps, completions.

Every function takes a model with the library's protocol (``encode``, ``decode``,
``guide``, ``model`` over the plate ``"data"`` with sites ``"z"`` and ``"x"``) and
returns tensors or arrays; figures are :mod:`pyro_vae.plots`' and the command line
is ``pyro-vae encode|interpolate|traverse|latent-map|complete``. Images are
``[N, C, H, W]`` of any shape; what ``decode`` returns is passed on as it is (a
stacked model's codes go through :func:`pyro_vae.runs.image_decoder` to become
images). Models of labelled data read a label beside each code: the one given, or,
for a model that classifies (M2), its most probable class under ``q(y | x)``.

:func:`complete` fills in the hidden pixels of an image by importance sampling in
the model conditioned on the observed ones, with the guide as proposal:

    z_k ~ q(z | m * x),   log w_k = log p(m * x, z_k) - log q(z_k | m * x),

where ``m`` is 1 on the observed pixels and ``log p(m * x | z)`` sums the
likelihood over those pixels only (:class:`ObservedPixels`). The normalised
weights ``w_k / sum_j w_j`` make the posterior mean ``sum_k w_k E[x | z_k]`` and
resampled draws of ``p(z | observed pixels)``. See ``docs/explore.md``.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from pyro import poutine
from pyro.poutine.messenger import Messenger

from .evaluate import _draws, log_weights

PATHS = ("linear", "slerp")
REGIONS = ("top", "left", "random")
Labels = Union[int, Sequence[int], torch.Tensor, None]


def model_labels(model, y: Labels, num: int, x: Optional[torch.Tensor] = None):
    """The ``[num]`` labels the networks of ``model`` read, or ``None`` for a model
    without labels. ``y``: one label for all, ``num`` labels, or ``None`` to take the
    most probable class of ``x`` under a classifying model's ``q(y | x)``."""
    if not model.uses_labels:
        if y is not None:
            raise ValueError(f"label: {type(model).__name__} is not conditioned on a label")
        return None
    if y is None:
        if x is None or not model.classifies:
            raise ValueError(f"label: {type(model).__name__} needs the labels of the images")
        return model.classify(x).argmax(-1)
    device = next(model.parameters()).device
    y = torch.as_tensor(y, device=device)
    y = y.expand(num) if y.dim() == 0 else y
    model.check_labels(y, num, "label")
    return y


def prior_draws(model, num: int, y: Labels = None) -> torch.Tensor:
    """``num`` draws of p(z), or of p(z | y) for a conditional prior: ``[num, D]``."""
    return model.latent_draws(num, model_labels(model, y, num) if y is not None else None)


@torch.no_grad()
def encode(model, x: torch.Tensor, y: Optional[torch.Tensor] = None,
           batch_size: int = 1000, num_samples: int = 100) -> Dict[str, np.ndarray]:
    """The posterior of each image of ``x: [N, C, H, W]``.

    Returns ``{"mean": [N, D], "scale": [N, D]}`` and ``"label": [N]`` when ``y`` is
    given. ``mean`` is ``model.encode``; ``scale`` the marginal standard deviation of
    q(z_d | x) where the guide's distribution has a variance (the Gaussian families),
    else the standard deviation of ``num_samples`` draws (flows).
    """
    labels = model_labels(model, y if model.uses_labels else None, len(x), x)
    means, scales = [], []
    for idx in torch.arange(len(x), device=x.device).split(batch_size):
        args = [x[idx]] + ([] if labels is None else [labels[idx]])
        means.append(model.encode(*args))
        q = poutine.trace(model.guide).get_trace(*args).nodes["z"]["fn"]
        try:
            scales.append(q.variance.sqrt())
        except NotImplementedError:
            scales.append(_draws(model.guide, "z", args, num_samples).std(0))
    out = {"mean": torch.cat(means).cpu().numpy(), "scale": torch.cat(scales).cpu().numpy()}
    if y is not None:
        out["label"] = torch.as_tensor(y).cpu().numpy()
    return out


def latent_path(z_from: torch.Tensor, z_to: torch.Tensor, steps: int,
                path: str = "linear") -> torch.Tensor:
    r"""``steps`` codes from ``z_from`` to ``z_to`` (each ``[D]``), both included: ``[steps, D]``.

    ``t`` runs over ``linspace(0, 1, steps)``.

    - ``"linear"``: ``z(t) = (1 - t) z_0 + t z_1``.
    - ``"slerp"`` (Shoemake 1985; White 2016 for generative models): the direction moves
      along the great circle, the norm linearly between the endpoints' norms,

        z(t) = ((1 - t)|z_0| + t|z_1|) (sin((1 - t) W) u_0 + sin(t W) u_1) / sin W,

      ``u_i = z_i / |z_i|``, ``cos W = u_0 . u_1``. Under N(0, I) in many dimensions
      codes lie near a sphere, and this path stays near it where the straight line
      cuts through the low-norm interior. Where the circle is not defined (parallel or
      opposite endpoints, or a zero one) the linear path is returned.
    """
    if path not in PATHS:
        raise ValueError(f"path: expected one of {', '.join(PATHS)}, got {path!r}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 2:
        raise ValueError(f"steps: expected an integer >= 2, got {steps!r}")
    if z_from.shape != z_to.shape or z_from.dim() != 1:
        raise ValueError(f"z_from: expected two codes of one shape [D], got "
                         f"{list(z_from.shape)} and {list(z_to.shape)}")
    t = torch.linspace(0, 1, int(steps), dtype=z_from.dtype, device=z_from.device)[:, None]
    r0, r1 = z_from.norm(), z_to.norm()
    u0, u1 = z_from / r0.clamp_min(1e-12), z_to / r1.clamp_min(1e-12)
    omega = torch.arccos((u0 @ u1).clamp(-1, 1))
    if path == "linear" or min(r0, r1) < 1e-12 or omega.sin() < 1e-6:
        return (1 - t) * z_from + t * z_to
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / omega.sin()
    return ((1 - t) * r0 + t * r1) * direction


@torch.no_grad()
def interpolate(model, x_from: torch.Tensor, x_to: torch.Tensor, steps: int = 10,
                path: str = "linear", y: Labels = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode the path between the posterior means of two images ``[C, H, W]``.

    ``y``: for a labelled model, one label for both or the pair of their labels (default,
    for a classifying model, its guesses); each code on the path is decoded with the
    label of its nearer endpoint, so the ends are the two reconstructions. Returns
    ``(z [steps, D], decode(z) [steps, C, H, W])``; ``path`` as in :func:`latent_path`.
    Codes of another :attr:`~pyro_vae.models.Model.latent_shape` (a categorical model's
    ``[N, K]`` probabilities) are flattened to ``D = N K`` values for the path.
    """
    x = torch.stack([x_from, x_to])
    labels = model_labels(model, y, 2, x)
    z = model.encode(x, labels).flatten(1)
    codes = latent_path(z[0], z[1], steps, path)
    if labels is not None:
        labels = labels[(torch.linspace(0, 1, len(codes)) >= 0.5).long().to(labels.device)]
    return codes, model.decode(codes.unflatten(-1, model.latent_shape), labels)


def pca_plane(codes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The plane of the two principal components of ``codes: [N, D]``: ``(origin [D],
    basis [D, 2])`` with orthonormal columns; for ``D <= 2`` the axes themselves."""
    d = codes.shape[1]
    if d <= 2:
        return codes.new_zeros(d), torch.eye(d, 2, dtype=codes.dtype, device=codes.device)
    origin = codes.mean(0)
    _, _, vt = torch.linalg.svd(codes - origin, full_matrices=False)
    return origin, vt[:2].T


def endpoint_plane(z_from: torch.Tensor, z_to: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The plane through 0, ``z_from`` and ``z_to`` (each ``[D]``, D >= 2), which holds
    both paths of :func:`latent_path`: ``(origin = 0, basis [D, 2])``, Gram-Schmidt."""
    first = z_from / z_from.norm().clamp_min(1e-12)
    second = z_to - (z_to @ first) * first
    if second.norm() < 1e-6:  # parallel endpoints: any axis orthogonal to the first
        second = torch.eye(len(first), dtype=first.dtype, device=first.device)[first.abs().argmin()]
        second = second - (second @ first) * first
    return torch.zeros_like(first), torch.stack([first, second / second.norm()], 1)


def project(z: torch.Tensor, plane: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Coordinates of ``z: [N, D]`` in ``plane = (origin, basis)``: ``[N, 2]``."""
    origin, basis = plane
    return (z - origin) @ basis


def dimension_order(stats: Dict[str, object]) -> List[int]:
    """Latent dimensions, most used first: by ``kl_per_dim`` of
    :func:`~pyro_vae.evaluate.latent_statistics`, by ``activity`` where it is ``None``."""
    score = stats["kl_per_dim"] if stats.get("kl_per_dim") is not None else stats["activity"]
    return sorted(range(len(score)), key=lambda d: -score[d])


@torch.no_grad()
def traverse(model, z: torch.Tensor, dims: Sequence[int], values: Sequence[float],
             y: Labels = None) -> torch.Tensor:
    """Decode ``z: [D]`` with dimension ``dims[i]`` set to each of ``values`` in turn.

    Returns ``[len(dims), len(values), C, H, W]``: row ``i`` varies ``z[dims[i]]``, the
    other coordinates stay at ``z``'s. ``y``: the label of a labelled model.
    """
    bad = [d for d in dims if not 0 <= d < len(z)]
    if bad:
        raise ValueError(f"dims: expected dimensions in [0, {len(z)}), got {bad}")
    values = torch.as_tensor(values, dtype=z.dtype, device=z.device)
    codes = z.repeat(len(dims), len(values), 1)
    for row, d in enumerate(dims):
        codes[row, :, d] = values
    codes = codes.reshape(-1, len(z))
    images = model.decode(codes, model_labels(model, y, len(codes)))
    return images.reshape(len(dims), len(values), *images.shape[1:])


def categorical_order(probs: torch.Tensor) -> List[int]:
    """Categorical latents, most used first, by their mean KL from the uniform prior,
    ``E_x[log K + sum_k q_k log q_k]``, over the posteriors ``probs: [B, N, K]``."""
    kl = math.log(probs.shape[-1]) + (probs * probs.clamp_min(1e-30).log()).sum(-1).mean(0)
    return sorted(range(probs.shape[1]), key=lambda n: -float(kl[n]))


@torch.no_grad()
def traverse_categorical(model, z: torch.Tensor, latents: Sequence[int],
                         y: Labels = None) -> torch.Tensor:
    """Decode codes ``z: [..., N, K]`` with row ``latents[i]`` set to each of the K one-hot
    classes in turn, the other rows kept: ``[..., len(latents), K, C, H, W]``."""
    n, k = z.shape[-2:]
    bad = [m for m in latents if not 0 <= m < n]
    if bad:
        raise ValueError(f"dims: expected categorical latents in [0, {n}), got {bad}")
    codes = z[..., None, None, :, :].repeat(*([1] * (z.dim() - 2)), len(latents), k, 1, 1)
    for row, m in enumerate(latents):
        codes[..., row, :, m, :] = torch.eye(k, dtype=z.dtype, device=z.device)
    batch = codes.shape[:-2]  # [..., L, K]
    images = model.decode(codes.reshape(-1, n, k), model_labels(model, y, batch.numel()))
    return images.reshape(*batch, *images.shape[1:])


def embed(codes: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``codes: [N, D]`` -> ``[N, 2]``: the PCA plane's coordinates (``"pca"``), or a
    t-SNE embedding (``"tsne"``, scikit-learn's, perplexity ``min(30, (N - 1) / 3)``)."""
    if method == "pca":
        return project(codes, pca_plane(codes)).cpu().numpy()
    if method != "tsne":
        raise ValueError(f"method: expected 'pca' or 'tsne', got {method!r}")
    from sklearn.manifold import TSNE

    perplexity = max(1.0, min(30.0, (len(codes) - 1) / 3))
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(codes.cpu().double().numpy())


@torch.no_grad()
def manifold(model, num: int = 15, y: Labels = None,
             num_draws: int = 20000) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode a ``num x num`` grid of a 2-D prior's quantiles (Kingma & Welling 2013, fig. 4).

    Each axis takes the marginal quantiles ``linspace(0.05, 0.95, num)`` of p(z) (of
    p(z | y) for a conditional prior), estimated from ``num_draws`` draws so that any
    prior works; ``z_1`` grows upwards. Returns ``(z [num, num, 2], images [num, num, C, H, W])``.
    """
    if model.latent_kind != "continuous" or tuple(model.latent_shape) != (2,):
        raise ValueError("z_dim: the manifold grid needs a 2-D continuous latent space, got "
                         f"{model.latent_kind} codes of shape {tuple(model.latent_shape)}")
    draws = prior_draws(model, num_draws, y)
    q = torch.quantile(draws, torch.linspace(0.05, 0.95, num).to(draws), dim=0)  # [num, 2]
    grid = torch.stack(torch.meshgrid(q[:, 0], q.flip(0)[:, 1], indexing="xy"), -1)
    labels = model_labels(model, y, num * num) if y is not None else None
    images = model.decode(grid.reshape(-1, 2), labels)
    return grid, images.reshape(num, num, *images.shape[1:])


def hide(x_shape: Sequence[int], region: str, seed: int = 0) -> torch.Tensor:
    """The observed pixels of an image ``(C, H, W)``: ``[C, H, W]`` booleans, ``False``
    on the hidden ``region``: the ``"top"`` or ``"left"`` half, or a ``"random"`` half of
    the pixel positions (all channels of a position together, drawn with ``seed``)."""
    if region not in REGIONS:
        raise ValueError(f"mask: expected one of {', '.join(REGIONS)}, got {region!r}")
    c, h, w = x_shape
    rows, cols = torch.arange(h)[:, None].expand(h, w), torch.arange(w).expand(h, w)
    if region == "top":
        seen = rows >= h // 2
    elif region == "left":
        seen = cols >= w // 2
    else:
        seen = torch.rand(h, w, generator=torch.Generator().manual_seed(seed)) >= 0.5
    return seen.expand(c, h, w).clone()


class ObservedPixels(Messenger):
    """Condition the site ``site`` on the pixels where ``observed`` is ``True`` only.

    The site's distribution must be a per-pixel one made an event with ``to_event``
    (every likelihood of :mod:`pyro_vae.likelihoods`); its pixels are masked with
    ``observed`` (broadcast to its batch shape ``[N, C, H, W]``), so ``log p(x | z)``
    becomes the sum over the observed pixels: ``log p(m * x | z)``.
    """

    def __init__(self, observed: torch.Tensor, site: str = "x"):
        super().__init__()
        self.observed, self.site = observed, site

    def _pyro_sample(self, msg):
        if msg["name"] == self.site:
            fn = msg["fn"]
            msg["fn"] = fn.base_dist.mask(self.observed).to_event(fn.reinterpreted_batch_ndims)


@torch.no_grad()
def complete(model, x: torch.Tensor, observed: torch.Tensor, num_samples: int = 8,
             num_particles: int = 256, y: Labels = None) -> Dict[str, torch.Tensor]:
    """Fill in the pixels of ``x: [B, C, H, W]`` where ``observed`` (booleans broadcast to
    ``x``) is ``False``, by importance sampling (module docstring).

    ``K = num_particles`` codes per image from the guide fed ``m * x``, weighted by
    ``log p(m * x, z_k) - log q(z_k | m * x)`` and self-normalised. Returns, observed
    pixels kept from ``x``: ``"samples"`` ``[B, S, C, H, W]``, ``S = num_samples``
    decodes of codes resampled by weight; ``"mean"`` ``[B, C, H, W]``, the weighted mean
    of the decodes; ``"ess"`` ``[B]``, the effective sample size ``1 / sum_k w_k^2``.
    """
    for name, value in (("num_samples", num_samples), ("num_particles", num_particles)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    seen = observed.to(device=x.device, dtype=torch.bool).expand_as(x)
    b, k = len(x), int(num_particles)
    labels = model_labels(model, y, b, x * seen)
    rep = torch.arange(b, device=x.device).repeat(k)  # particle-major: row j * b + i is item i
    args = [x[rep]] + ([] if labels is None else [labels[rep]])
    drawn = {}

    def proposal(x, *rest):
        drawn["z"] = model.guide(x * seen[rep], *rest)  # the guide sees the observed pixels
        return drawn["z"]

    lw = log_weights(ObservedPixels(seen[rep])(model.model), proposal, *args).view(k, b)
    w = lw.softmax(0)  # [K, B]
    decoded = model.decode(drawn["z"], None if labels is None else labels[rep])
    decoded = decoded.view(k, b, *x.shape[1:])
    pick = torch.multinomial(w.T, int(num_samples), replacement=True)  # [B, S]
    samples = decoded[pick, torch.arange(b, device=x.device)[:, None]]
    mean = (w.view(k, b, *[1] * (x.dim() - 1)) * decoded).sum(0)
    return {"samples": torch.where(seen[:, None], x[:, None], samples),
            "mean": torch.where(seen, x, mean), "ess": 1 / (w ** 2).sum(0)}
