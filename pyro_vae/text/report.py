"""Perplexity from nats per sentence, and the text files a sentence run writes."""

import math
from pathlib import Path
from typing import Dict

import torch

from .vocab import lengths

SAMPLES = "samples.txt"


def perplexity(nats_per_sentence: float, x: torch.Tensor) -> float:
    """``exp(N * nats / tokens)``: the perplexity over the words and ``<eos>`` of the
    ``N`` sentences ``x: [N, T]``, from their mean negative log-likelihood (or bound)."""
    return math.exp(nats_per_sentence * len(x) / int(lengths(x).sum()))


def perplexities(report: Dict[str, float], x: torch.Tensor) -> Dict[str, float]:
    """``ppl`` (from ``nll``, when estimated) and ``ppl_bound`` (from the negative ELBO,
    ``test_loss``: an upper bound on the perplexity) of an evaluation ``report``."""
    out = {"ppl_bound": perplexity(report["test_loss"], x)}
    if "nll" in report:
        out["ppl"] = perplexity(report["nll"], x)
    return out


@torch.no_grad()
def write_samples(model, x_test: torch.Tensor, out: Path, num: int = 10, seed: int = 0) -> Path:
    """``out/samples.txt``: greedy decodes of prior draws, then test sentences beside
    their reconstructions (greedy from the posterior mean)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = model.sentences(model.generate(num))
    x = x_test[:num].to(device)
    lines = ["# samples (greedy decodes of z ~ p(z))", *samples, "",
             "# test sentence -> reconstruction (greedy from the posterior mean)"]
    for source, again in zip(model.sentences(x), model.sentences(model.reconstruct(x))):
        lines += [f"  {source}", f"> {again}"]
    path = Path(out) / SAMPLES
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model.train()
    return path
