"""Figures of an anomaly score: its histograms on normal data and anomalies, and ROC curves."""

import math
from typing import Dict

import matplotlib.pyplot as plt
import torch

from .metrics import auroc, roc_curve


def histograms(scores_in: Dict[str, torch.Tensor], scores_out: Dict[str, torch.Tensor],
               labels=("normal", "anomalies")) -> plt.Figure:
    """One panel per score: normalised histograms of ``scores_in[name]`` and
    ``scores_out[name]`` (``[N]`` each) on shared bins, AUROC in the title."""
    names = list(scores_in)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        s_in, s_out = scores_in[name].double(), scores_out[name].double()
        both = torch.cat([s_in, s_out])
        lo, hi = torch.quantile(both, 0.005).item(), torch.quantile(both, 0.995).item()
        bins = torch.linspace(lo, hi if hi > lo else lo + 1, 50).numpy()
        ax.hist(s_in.numpy(), bins=bins, density=True, alpha=0.55, label=labels[0])
        ax.hist(s_out.numpy(), bins=bins, density=True, alpha=0.55, label=labels[1])
        ax.set_title(f"{name}  (AUROC {auroc(s_in, s_out):.3f})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("scores (higher: more anomalous)", fontsize=10)
    fig.tight_layout()
    return fig


def roc_curves(scores_in: Dict[str, torch.Tensor],
               scores_out: Dict[str, torch.Tensor]) -> plt.Figure:
    """ROC curves of every score on one plot, anomalies positive, AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name in scores_in:
        fpr, tpr = roc_curve(scores_in[name], scores_out[name])
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} ({auroc(scores_in[name], scores_out[name]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate (normal flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
