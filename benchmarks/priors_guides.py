"""Test log-likelihood of {diagonal, iaf} guides x {normal, mog, vamp} priors.

Every row is a ``pyro-vae train`` run on mnist-10k with ``--binarize dynamic`` (a
fresh Bernoulli sample of the training digits each epoch, the test digits binarised
once), the same networks, optimiser, epochs and seed; only ``--guide`` and
``--prior`` change. Each run is then scored as ``pyro-vae evaluate RUN_DIR
--iw-samples K`` would: the test ELBO on all 2,000 test digits and the
importance-weighted estimate of -log p(x) (Burda et al. 2015) with K samples on the
first ``--nll-images`` of them. Prints a markdown table of measured numbers.

    python benchmarks/priors_guides.py                 # the table in docs/priors_guides.md
    python benchmarks/priors_guides.py --epochs 1 --nll-images 20 --iw-samples 10  # smoke
"""

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch

from pyro_vae import TrainConfig, train
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood, latent_statistics
from pyro_vae.train import prepare_data

ROWS = [
    ("diagonal", "normal"),
    ("diagonal", "mog"),
    ("diagonal", "vamp"),
    ("iaf", "normal"),
    ("iaf", "mog"),
    ("iaf", "vamp"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--z-dim", type=int, default=40)
    parser.add_argument("--hidden", default="300")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mixture-components", type=int, default=50)
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--flow-layers", type=int, default=2)
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the NLL estimate")
    parser.add_argument("--nll-images", type=int, default=2000,
                        help="first N test digits scored by the NLL estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", default="", help="e.g. diagonal/normal,iaf/vamp (default: all)")
    parser.add_argument("--out", default="runs/bench/priors_guides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows = [tuple(r.split("/")) for r in args.rows.split(",")] if args.rows else ROWS

    results, reference = [], None
    header = (f"| guide | prior | test ELBO | test NLL (K={args.iw_samples}) | NLL - standard "
              "| KL | active units | train s | NLL s |")
    print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    for guide, prior in rows:
        config = TrainConfig.from_dict(dict(
            dataset="mnist-10k", binarize="dynamic", z_dim=args.z_dim, hidden=args.hidden,
            guide=guide, prior=prior, mixture_components=args.mixture_components,
            pseudo_inputs=args.pseudo_inputs, flow_layers=args.flow_layers,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            device="cpu", checkpoint_every=max(args.epochs, 1),
            out=str(Path(args.out) / f"{guide}-{prior}"),
        ))
        model, history = train(config, overwrite=True)
        x_test = prepare_data(config).x_test
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        full = elbo_terms(model.model, model.guide, x_test)
        stats = latent_statistics(model.model, model.guide, x_test)
        nll = -iw_log_likelihood(model.model, model.guide, x_test[: args.nll_images],
                                 num_samples=args.iw_samples)
        nll_s = time.perf_counter() - t0
        if reference is None:
            reference, delta = nll, "0 (reference)"
        else:  # paired over the same digits: the standard error of the difference
            diff = nll - reference
            delta = f"{diff.mean():+.2f} ± {diff.std() / math.sqrt(len(diff)):.2f}"
        row = {
            "guide": guide, "prior": prior, "test_elbo": -full["test_loss"], "kl": full["kl"],
            "nll": nll.mean().item(), "nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
            "nll_minus_reference": (nll - reference).mean().item(),
            "active_units": stats["active_units"], "nll_images": len(nll),
            "iw_samples": args.iw_samples, "train_s": sum(h["epoch_s"] for h in history),
            "nll_s": nll_s, "config": config.to_dict(),
        }
        results.append(row)
        print(f"| {guide} | {prior} | {row['test_elbo']:.2f} | {row['nll']:.2f} ± "
              f"{row['nll_stderr']:.2f} | {delta} | {row['kl']:.2f} | {row['active_units']} | "
              f"{row['train_s']:.0f} | {nll_s:.0f} |", flush=True)
    out = Path(args.out) / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{len(results)} runs; results in {out}. ELBO, KL and active units on all "
          f"{len(x_test)} test digits; NLL on the first {results[-1]['nll_images']} "
          "(± one standard error over digits; differences paired over the same digits).")


if __name__ == "__main__":
    main()
