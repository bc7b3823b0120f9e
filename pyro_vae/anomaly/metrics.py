"""How well a score separates anomalies (positives) from normal data, and where to cut it.

Every score is oriented so that higher means more anomalous. With ``s_in`` the scores of
normal items and ``s_out`` those of anomalies:

- ``auroc``: ``P(s_out > s_in) + P(s_out = s_in) / 2``, the Mann-Whitney statistic
  (0.5 is chance, below 0.5 the score points the wrong way);
- ``auprc``: average precision with the anomalies as positives,
  ``sum_k (R_k - R_{k-1}) P_k`` over thresholds at each distinct score;
- ``fpr_at_95_tpr``: the share of normal items flagged by the highest threshold that
  still flags 95% of the anomalies.

:func:`quantile_threshold` cuts a score at a quantile of normal data only, so no label
of an anomaly is ever used. :func:`typicality_test` is the batch-level test of
Nalisnick et al. (2019b).
"""

from typing import Dict

import torch


def _check(s_in: torch.Tensor, s_out: torch.Tensor) -> None:
    for name, s in (("normal scores", s_in), ("anomaly scores", s_out)):
        if s.dim() != 1 or len(s) == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D tensor, got shape {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError(f"{name}: {int((~torch.isfinite(s)).sum())} values are not finite")


def auroc(s_in: torch.Tensor, s_out: torch.Tensor) -> float:
    """Area under the ROC curve, anomalies positive (ties count one half)."""
    _check(s_in, s_out)
    both = torch.cat([s_in, s_out]).double()
    order = both.argsort()
    ranks = torch.empty_like(both)
    ranks[order] = torch.arange(1, len(both) + 1, dtype=both.dtype)
    values, inverse = both.unique(return_inverse=True)  # tied values share their mean rank
    mean_rank = torch.zeros_like(values).index_add_(0, inverse, ranks)
    mean_rank /= torch.zeros_like(values).index_add_(0, inverse, torch.ones_like(ranks))
    n_in, n_out = len(s_in), len(s_out)
    u = mean_rank[inverse][n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))


def auprc(s_in: torch.Tensor, s_out: torch.Tensor) -> float:
    """Average precision, anomalies positive (each distinct score one threshold)."""
    _check(s_in, s_out)
    both = torch.cat([s_in, s_out]).double()
    positive = torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).double()
    values, inverse = both.unique(return_inverse=True)
    pos = torch.zeros_like(values).index_add_(0, inverse, positive).flip(0).cumsum(0)
    total = torch.zeros_like(values).index_add_(0, inverse, torch.ones_like(both)).flip(0).cumsum(0)
    recall_step = torch.diff(pos, prepend=pos.new_zeros(1)) / len(s_out)
    return float((recall_step * pos / total).sum())


def fpr_at_tpr(s_in: torch.Tensor, s_out: torch.Tensor, tpr: float = 0.95) -> float:
    """Share of normal items at or above the highest threshold flagging ``tpr`` of anomalies."""
    _check(s_in, s_out)
    ranked = s_out.double().sort(descending=True).values
    threshold = ranked[max(0, int(torch.tensor(tpr * len(s_out)).ceil()) - 1)]
    return float((s_in.double() >= threshold).double().mean())


def detection_metrics(s_in: torch.Tensor, s_out: torch.Tensor) -> Dict[str, float]:
    """``auroc``, ``auprc`` and ``fpr_at_95_tpr`` of one score."""
    return {"auroc": auroc(s_in, s_out), "auprc": auprc(s_in, s_out),
            "fpr_at_95_tpr": fpr_at_tpr(s_in, s_out, 0.95)}


def quantile_threshold(s_normal: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of scores of normal items: above it an item is flagged."""
    if not 0 < quantile < 1:
        raise ValueError(f"threshold_quantile: expected a share in (0, 1), got {quantile!r}")
    finite = s_normal[torch.isfinite(s_normal)].double()
    if len(finite) == 0:
        raise ValueError("threshold_quantile: no finite score on the normal data")
    return float(torch.quantile(finite, quantile))


def typicality_test(nll_train: torch.Tensor, nll_normal: torch.Tensor, nll: torch.Tensor,
                    batch: int = 25, alpha: float = 0.01, draws: int = 2000,
                    seed: int = 0) -> Dict[str, float]:
    r"""Nalisnick et al. (2019b): is a batch of ``batch`` items typical of the model?

    The statistic of a batch is ``eps = |mean_m(-log p(x_m)) - H|`` with ``H`` the mean
    ``nll_train``; its ``1 - alpha`` quantile over ``draws`` batches drawn (with
    replacement) from the held-out normal items ``nll_normal`` is the threshold. The
    items ``nll: [N]`` are cut into ``N // batch`` consecutive batches; returns their
    share flagged, the threshold and the number of batches.
    """
    if batch < 1 or len(nll) < batch:
        raise ValueError(f"typicality_batch: expected 1..{len(nll)} items per batch, got {batch}")
    entropy = nll_train.double().mean()
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(nll_normal), (draws, batch), generator=generator)
    null = (nll_normal.double()[picks].mean(1) - entropy).abs()
    threshold = torch.quantile(null, 1 - alpha)
    batches = nll.double()[: len(nll) // batch * batch].view(-1, batch)
    eps = (batches.mean(1) - entropy).abs()
    return {"flagged": float((eps > threshold).double().mean()), "threshold": float(threshold),
            "batches": len(eps), "batch": batch}


def roc_curve(s_in: torch.Tensor, s_out: torch.Tensor):
    """``(fpr, tpr)``, each ``[T + 1]``, at every distinct threshold from high to low."""
    _check(s_in, s_out)
    both = torch.cat([s_in, s_out]).double()
    positive = torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).double()
    values, inverse = both.unique(return_inverse=True)
    pos = torch.zeros_like(values).index_add_(0, inverse, positive).flip(0).cumsum(0)
    neg = torch.zeros_like(values).index_add_(0, inverse, 1 - positive).flip(0).cumsum(0)
    zero = pos.new_zeros(1)
    return torch.cat([zero, neg / len(s_in)]), torch.cat([zero, pos / len(s_out)])
