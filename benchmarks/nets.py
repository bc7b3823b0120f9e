"""Convolutional against MLP networks: test -ELBO and importance-weighted NLL.

Every row is the same :class:`pyro_vae.VAE` (z_dim 50, hidden (400,), N(0, I) prior,
diagonal guide) trained the same way (Adam lr 1e-3, batch 128, ``Trace_ELBO``, the
same seed, batch order and binarisations); only ``net`` (and, for the
``*-dlogistic`` rows, ``likelihood``) changes:

==================  =========  ============  ==========================================
row                 net        likelihood    data
==================  =========  ============  ==========================================
``mlp``             ``mlp``    bernoulli     ``--binarize dynamic``: a fresh Bernoulli
``conv``            ``conv``   bernoulli     sample of each training batch; the test
                                             images binarised once (generator seed 0)
``mlp-dlogistic``   ``mlp``    dlogistic     the 256-level grey images ``k / 255``,
``conv-dlogistic``  ``conv``   dlogistic     as stored (Salimans et al. 2017)
==================  =========  ============  ==========================================

mnist-10k is its embedded 8,000 / 2,000 split. For fashion-mnist (``apt-get install
dataset-fashion-mnist``) the first ``--train-size`` training images (default 8,000, the
size of mnist-10k's training set; 0 for all 60,000) and the first ``--test-size``
test images (default 2,000) are used. Each run is scored on those test images:
the test -ELBO (one guide sample per image, closed-form KL), the importance-weighted
NLL with ``--iw-samples`` K (Burda et al. 2015) and its bits per dimension,
``NLL / (784 log 2)`` (for the Bernoulli rows, bits per *binary* pixel, not comparable
with the grey rows'), and the active units. Prints a Markdown table: mean ± sample
standard deviation over the seeds; CPU seconds of this process per training epoch (the median
epoch) and per evaluation (with ``--threads 1`` these do not grow when other work shares the
cores, as wall seconds do; both are in the JSON lines).
Each run is also written, with its configuration, as one JSON line to ``--out``.

    python benchmarks/nets.py --seeds 0 1 2          # the table in docs/networks.md
    python benchmarks/nets.py --datasets mnist-10k --epochs 1 --train-size 256 \\
        --test-size 16 --iw-samples 10                # smoke test, seconds
    python benchmarks/nets.py --summarize runs/bench/nets/*.jsonl   # merge runs
"""

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro

from pyro_vae import VAE, evaluation_report, fit, iw_log_likelihood, load_dataset
from pyro_vae.data import binarize

ROWS = {
    "mlp": ("mlp", "bernoulli"),
    "conv": ("conv", "bernoulli"),
    "mlp-dlogistic": ("mlp", "dlogistic"),
    "conv-dlogistic": ("conv", "dlogistic"),
}
"""Row name -> (``VAE(net=...)``, ``VAE(likelihood=...)``)."""

# Replicas per model evaluation in the NLL estimate: one image x 1000 samples at a
# time. The library's default (10,000) is 1.5-2x slower on one thread here: the
# dlogistic log-density's [replicas, 784, 5] intermediates, and the conv decoder's
# feature maps, fall out of cache.
CHUNK_SIZE = 1000


def split(name: str, train_size: int, test_size: int):
    """The first ``train_size`` (0: all) training and ``test_size`` test images."""
    data = load_dataset(name)
    x_train = data.x_train[:train_size] if train_size else data.x_train
    return x_train, data.x_test[:test_size]


def run(dataset: str, row: str, seed: int, x_train, x_test, args) -> dict:
    """Train one row with one seed; its test scores, timings and configuration."""
    net, likelihood = ROWS[row]
    binary = likelihood == "bernoulli"
    if binary:  # --binarize dynamic: the test set binarised once, the same for every run
        x_test = binarize(x_test, torch.Generator().manual_seed(0))
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)  # the networks' initialisation
    vae = VAE(x_train.shape[1:], z_dim=args.z_dim, net=net, likelihood=likelihood)
    marks = [time.process_time()]  # CPU clock at the start and after each epoch
    history = fit(vae.model, vae.guide, x_train, epochs=args.epochs, batch_size=args.batch_size,
                  lr=args.lr, elbo="Trace_ELBO", seed=seed,
                  transform=binarize if binary else None,
                  hooks=[lambda metrics: marks.append(time.process_time())])
    # the median, as a process's first epoch also pays one-time imports (torch._dynamo)
    epoch_cpu_s = statistics.median(b - a for a, b in zip(marks, marks[1:]))
    vae.eval()
    t0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    report = evaluation_report(vae.model, vae.guide, x_test)  # -ELBO, KL, active units
    nll = -iw_log_likelihood(vae.model, vae.guide, x_test, args.iw_samples, CHUNK_SIZE)
    eval_s, eval_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "dataset": dataset, "row": row, "net": net, "likelihood": likelihood, "seed": seed,
        "params": sum(p.numel() for p in vae.parameters()),
        "train_images": len(x_train), "test_images": len(x_test),
        "test_loss": report["test_loss"], "kl": report["kl"],
        "active_units": report["active_units"],
        "nll": nll.mean().item(), "nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "bits_per_dim": nll.mean().item() / (x_test[0].numel() * math.log(2)),
        "iw_samples": args.iw_samples,
        # wall seconds (fit's epoch_s) and this process's CPU seconds: on one thread the
        # CPU seconds do not grow when other work shares the cores, the wall seconds do
        "epoch_s": statistics.mean(h["epoch_s"] for h in history),
        "epoch_cpu_s": epoch_cpu_s, "eval_s": eval_s, "eval_cpu_s": eval_cpu_s,
        "config": {k: v for k, v in vars(args).items() if k != "summarize"},
    }


def _spread(values, fmt: str) -> str:
    mean = format(statistics.mean(values), fmt)
    return f"{mean} ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else mean


def table(results) -> str:
    """The Markdown table of ``results``: one line per (data set, row), over its seeds."""
    groups = {}
    for r in results:
        groups.setdefault((r["dataset"], r["row"]), []).append(r)
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    order = sorted(groups, key=lambda key: (datasets.index(key[0]), list(ROWS).index(key[1])))
    ks = "/".join(map(str, sorted({r["iw_samples"] for r in results})))
    lines = [f"| data | net | likelihood | params | seeds | test -ELBO (nats) "
             f"| NLL, K={ks} (nats) | bits/dim | active units | CPU s/epoch | eval CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, row in order:
        rs = groups[dataset, row]
        get = lambda key: [r[key] for r in rs]  # noqa: E731
        lines.append(
            f"| {dataset} | {rs[0]['net']} | {rs[0]['likelihood']} "
            f"| {rs[0]['params'] / 1e6:.2f} M | {len(rs)} | {_spread(get('test_loss'), '.2f')} "
            f"| {_spread(get('nll'), '.2f')} | {_spread(get('bits_per_dim'), '.3f')} "
            f"| {_spread(get('active_units'), '.1f')} | {statistics.mean(get('epoch_cpu_s')):.1f} "
            f"| {statistics.mean(get('eval_cpu_s')):.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist-10k", "fashion-mnist"])
    parser.add_argument("--nets", nargs="+", default=["mlp", "conv", "conv-dlogistic"],
                        choices=sorted(ROWS), help="rows of the table, see ROWS")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the NLL estimate")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--train-size", type=int, default=8000,
                        help="first N training images (0: all)")
    parser.add_argument("--test-size", type=int, default=2000, help="first N test images")
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/bench/nets/results.jsonl",
                        help="one JSON line per run, written as each run ends")
    parser.add_argument("--summarize", nargs="+", metavar="JSONL",
                        help="print the table of earlier runs' --out files and exit")
    args = parser.parse_args(argv)
    if args.summarize:
        print(table([json.loads(line) for f in args.summarize
                     for line in Path(f).read_text().splitlines() if line.strip()]))
        return
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with out.open("w") as f:
        for dataset in args.datasets:
            x_train, x_test = split(dataset, args.train_size, args.test_size)
            for row in args.nets:
                for seed in args.seeds:
                    r = run(dataset, row, seed, x_train, x_test, args)
                    results.append(r)
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(f"# {dataset} {row} seed {seed}: -ELBO {r['test_loss']:.2f}, "
                          f"NLL {r['nll']:.2f} ± {r['nll_stderr']:.2f}, "
                          f"{r['epoch_cpu_s']:.1f} CPU s/epoch ({r['epoch_s']:.1f} wall), "
                          f"eval {r['eval_cpu_s']:.0f} CPU s ({r['eval_s']:.0f} wall)",
                          file=sys.stderr, flush=True)
    print(f"# {args.epochs} epochs; {results[0]['train_images']} training images; "
          f"scores on the first {args.test_size} test images; K = {args.iw_samples}; "
          f"seeds {args.seeds}; mean ± sd over seeds")
    print(table(results))


if __name__ == "__main__":
    main()
