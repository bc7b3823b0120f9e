"""Figures a person would rather look at than read. Every function returns a Figure."""

import io
import math
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed; figures are saved to files
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .checkpoint import atomic_write  # noqa: E402


def _tile(images: torch.Tensor, nrow: int, pad: int = 1) -> torch.Tensor:
    """``[N, C, H, W]`` -> one ``[H', W', C]`` mosaic with ``nrow`` images per row."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top: top + h, left: left + w] = images[i]
    return canvas.permute(1, 2, 0)


def show_images(ax, images: torch.Tensor, nrow: int) -> None:
    """Draw ``images: [N, C, H, W]`` in [0, 1] on ``ax`` as a mosaic of ``nrow`` per row."""
    mosaic = _tile(images, nrow).numpy()  # matplotlib wants arrays, not tensors
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()


def image_grid(images: torch.Tensor, nrow: Optional[int] = None, title: str = "") -> plt.Figure:
    """A mosaic of ``images: [N, C, H, W]`` in [0, 1]."""
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / nrow)
    fig, ax = plt.subplots(figsize=(0.6 * nrow + 0.4, 0.6 * rows + 0.7))
    show_images(ax, images, nrow)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def labelled_rows(images: torch.Tensor, labels: Sequence[str], title: str = "") -> plt.Figure:
    """One row per label: ``images: [R, K, C, H, W]``, ``labels`` of length ``R``."""
    rows, per_row = images.shape[:2]
    fig, axes = plt.subplots(rows, 1, figsize=(0.6 * per_row + 1.0, 0.62 * rows + 0.6))
    for ax, row, label in zip(list(getattr(axes, "flat", [axes])), images, labels):
        show_images(ax, row, per_row)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(str(label), rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def reconstructions(x: torch.Tensor, x_hat: torch.Tensor, nrow: int = 8) -> plt.Figure:
    """Inputs beside their reconstructions: alternating rows of ``x`` and ``x_hat``."""
    n = (len(x) // nrow) * nrow or len(x)
    x, x_hat = x[:n], x_hat[:n]
    rows = []
    for start in range(0, n, nrow):
        rows += [x[start: start + nrow], x_hat[start: start + nrow]]
    stacked = torch.stack(rows)  # [2 * rows, nrow, C, H, W]
    labels = ["input" if i % 2 == 0 else "recon." for i in range(len(stacked))]
    return labelled_rows(stacked, labels, title="inputs and reconstructions")


def training_curves(history: List[Dict[str, float]]) -> plt.Figure:
    """Loss, reconstruction term and KL term per epoch (nats per image)."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    ax = axes[0]
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train objective")
    if "test_loss" in history[0]:
        ax.plot(epochs, [row["test_loss"] for row in history], "s-", label="test -ELBO")
    ax.set_title("loss")
    ax.legend()
    for ax, key, title in ((axes[1], "recon", "reconstruction  E[-log p(x|z)]"),
                           (axes[2], "kl", "KL(q(z|x) || p(z))")):
        if key in history[0]:
            ax.plot(epochs, [row[key] for row in history], "o-", color="C2" if key == "recon" else "C3")
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def compare_curves(histories: Sequence[List[Dict[str, float]]], names: Sequence[str],
                   metric: str = "test_loss") -> plt.Figure:
    """``metric`` per epoch for several runs on one axis, one labelled line each."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for history, name in zip(histories, names):
        rows = [row for row in history if metric in row]
        ax.plot([row["epoch"] for row in rows], [row[metric] for row in rows], "o-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def rate_distortion(points: Sequence[Dict[str, float]], title: str = "") -> plt.Figure:
    """Reconstruction term against KL term, one labelled point per run.

    ``points``: dicts with ``"recon"`` and ``"kl"`` (nats per image) and a ``"beta"``
    that labels the point, e.g. one per beta of a beta-VAE sweep.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    points = sorted(points, key=lambda p: p["kl"])
    ax.plot([p["kl"] for p in points], [p["recon"] for p in points], "o-", color="C0")
    for p in points:
        ax.annotate(f"β={p['beta']:g}", (p["kl"], p["recon"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=9)
    ax.set_xlabel("KL(q(z|x) || p(z))  [nats per image]")
    ax.set_ylabel("reconstruction  E[-log p(x|z)]  [nats per image]")
    ax.set_title(title or "rate against distortion (test set)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def latent_traversal(images: torch.Tensor, dims: Sequence[int], values: Sequence[float],
                     title: str = "") -> plt.Figure:
    """One row per latent dimension varied: ``images: [len(dims), len(values), C, H, W]``,
    row ``i`` decoding codes whose dimension ``dims[i]`` takes ``values`` in turn."""
    fig = labelled_rows(images, [f"z[{d}]" for d in dims], title=title)
    fig.axes[-1].set_xlabel("  ".join(f"{v:+.1f}" for v in values), fontsize=7)
    return fig


def save(fig: plt.Figure, path, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _density_contours(ax, points, label: str, grid: int = 60) -> None:
    """Contours of a Gaussian kernel density estimate (Scott's bandwidth) of
    ``points: [M, 2]`` (e.g. prior draws, projected) on a ``grid x grid`` mesh."""
    points = torch.as_tensor(points).detach().cpu().double()
    lo, hi = points.quantile(0.005, dim=0), points.quantile(0.995, dim=0)
    pad = 0.15 * (hi - lo)
    axes = [torch.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), grid) for i in (0, 1)]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="xy"), -1).reshape(-1, 2).double()
    h = points.std(0).clamp_min(1e-6) * len(points) ** (-1 / 6)
    density = torch.zeros(len(mesh), dtype=torch.float64)
    for chunk in points.split(1000):
        density += torch.exp(-0.5 * (((mesh[:, None] - chunk) / h) ** 2).sum(-1)).sum(1)
    ax.contour(axes[0].numpy(), axes[1].numpy(), density.reshape(grid, grid).numpy(),
               levels=5, cmap="Greys", linewidths=0.8)
    ax.plot([], [], color="grey", lw=0.8, label=label)


def interpolation(path: torch.Tensor, images: torch.Tensor, prior: torch.Tensor,
                  codes: Optional[torch.Tensor] = None, axes: Sequence[str] = ("z[0]", "z[1]"),
                  title: str = "") -> plt.Figure:
    """A latent path beside its decodes: ``path: [S, 2]`` in a plane of the latent space
    over the contours of ``prior: [M, 2]`` (draws projected on the plane) and the test
    ``codes: [N, 2]``; ``images: [S, C, H, W]`` in a row, first to last."""
    fig = plt.figure(figsize=(4.2 + 0.6 * len(images), 3.8))
    grid = fig.add_gridspec(1, 2, width_ratios=[3.6, 0.6 * len(images)])
    ax = fig.add_subplot(grid[0])
    _density_contours(ax, prior, "prior")
    if codes is not None:
        codes = torch.as_tensor(codes).cpu()
        ax.scatter(codes[:, 0], codes[:, 1], s=3, alpha=0.3, color="C0", label="test codes")
    path = torch.as_tensor(path).detach().cpu()
    ax.plot(path[:, 0], path[:, 1], "o-", color="C3", ms=3, label="path")
    ax.annotate("from", path[0].tolist()), ax.annotate("to", path[-1].tolist())
    ax.set_xlabel(axes[0]), ax.set_ylabel(axes[1])
    ax.legend(fontsize=7)
    show_images(fig.add_subplot(grid[1]), images, len(images))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_traversals(images: torch.Tensor, classes: Sequence[int], dims: Sequence[int],
                     values: Sequence[float], title: str = "") -> plt.Figure:
    """:func:`latent_traversal` for each class: ``images: [K, len(dims), len(values), C,
    H, W]``, one block of rows per class of ``classes``."""
    labels = [f"y={k} z[{d}]" for k in classes for d in dims]
    fig = labelled_rows(images.flatten(0, 1), labels, title=title)
    fig.axes[-1].set_xlabel("  ".join(f"{v:+.1f}" for v in values), fontsize=7)
    return fig


def latent_map(panels: Dict[str, torch.Tensor], labels: Optional[torch.Tensor] = None,
               title: str = "") -> plt.Figure:
    """Scatter plots of 2-D embeddings of one set of codes, one panel per entry of
    ``panels`` (name -> ``[N, 2]``), coloured by ``labels: [N]`` when given."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), squeeze=False)
    colours = None if labels is None else torch.as_tensor(labels).cpu().numpy()
    for ax, (name, points) in zip(axes[0], panels.items()):
        points = torch.as_tensor(points).cpu().numpy()
        dots = ax.scatter(points[:, 0], points[:, 1], c=colours, cmap="tab10", s=4)
        ax.set_title(name)
        ax.set_xticks([]), ax.set_yticks([])
    if colours is not None:
        fig.colorbar(dots, ax=list(axes[0]), label="class")
    fig.suptitle(title)
    return fig


def completions(x: torch.Tensor, observed: torch.Tensor, samples: torch.Tensor,
                title: str = "") -> plt.Figure:
    """One row per image: ``x: [B, C, H, W]``, its ``observed`` pixels (white), the
    observed part alone (hidden pixels grey), then ``samples: [B, S, C, H, W]``."""
    seen = observed.to(x.device).expand_as(x).float()
    shown = torch.where(seen.bool(), x, torch.full_like(x, 0.5))
    rows = torch.cat([x[:, None], 1 - seen[:, None], shown[:, None], samples], 1)
    fig = labelled_rows(rows, [str(i) for i in range(len(x))], title=title)
    fig.axes[-1].set_xlabel("input, mask, observed, completions", fontsize=8)
    return fig
