"""The categorical VAE's three gradient estimators against each other, on mnist-10k.

Each row (:data:`ROWS`: an estimator and the KL term it trains with) trains the same
model (30 categoricals of 10 classes, MLP 512-256, Bernoulli likelihood) as ``pyro-vae
train --model categorical --estimator E --kl KL`` does, with ``--binarize dynamic``, the
same number of epochs, batches of 100, Adam 1e-3 and seed 0; the relaxed estimators
anneal the temperature from 1 to 0.5 (``tau(t) = max(0.5, exp(-0.05 t))``, t in
epochs). The default rows are the three estimators with their default ``--kl
discrete`` and, for comparison, the relaxation trained with ``--kl relaxed``. Every
figure is of the *discrete* model: the test -ELBO with the exact categorical KL, and
the importance-weighted NLL with ``--iw-samples`` draws of the exact posterior. Prints
a Markdown table, and writes a sample grid and a traversal of one categorical of the
``relaxed`` row's run to ``--figures``.

    OMP_NUM_THREADS=1 python benchmarks/categorical.py               # the table of docs/categorical.md

About 15 minutes on one core shared with other jobs at the defaults (four runs of 100
epochs of 80 steps; IWAE with K = 250 on the 2000 test images, 30 s each). Finished
runs in ``--out`` (one folder per row) are reused when their estimator and KL term
match, so a second call only evaluates; rows may also be trained by separate calls
in parallel (``--rows``) and tabulated by a last one.
"""

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

import torch

from pyro_vae import TrainConfig, plots
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood
from pyro_vae.runs import Run
from pyro_vae.train import prepare_data, train

# row name (its run folder) -> (estimator, KL term of the training objective)
ROWS = {
    "relaxed": ("relaxed", "discrete"),
    "straight-through": ("straight-through", "discrete"),
    "score-function": ("score-function", "discrete"),
    "relaxed-kl-relaxed": ("relaxed", "relaxed"),
    "straight-through-kl-relaxed": ("straight-through", "relaxed"),
}
DEFAULT_ROWS = ("relaxed", "straight-through", "score-function", "relaxed-kl-relaxed")


def finished(out: Path, config: TrainConfig) -> bool:
    """Whether ``out`` holds a run of ``config``'s estimator and KL term, trained to the end."""
    if not (out / "checkpoint.pt").is_file():
        return False
    saved = json.loads((out / "config.json").read_text())
    # A config saved before ``kl`` existed was trained with the relaxed prior.
    kl = saved.get("kl", "discrete" if saved["estimator"] == "score-function" else "relaxed")
    return ((saved["estimator"], kl) == (config.estimator, config.kl)
            and Run.load(out).epoch >= config.epochs)


def run_one(name: str, args) -> dict:
    """Train one row's run (or reuse a finished one); its discrete model's figures."""
    out = Path(args.out) / name
    estimator, kl = ROWS[name]
    config = TrainConfig.for_model(
        "categorical", estimator=estimator, kl=kl, data="mnist-10k", binarize="dynamic",
        epochs=args.epochs, batch_size=100, seed=args.seed, threads=args.threads,
        out=str(out))
    if not finished(out, config):
        train(config, overwrite=True)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    run = Run.load(out)
    x_test = prepare_data(run.config).x_test  # binarised once, with the shared seed
    torch.manual_seed(args.seed)
    elbo = elbo_terms(run.model.model, run.model.guide, x_test)
    t0 = time.perf_counter()
    nll = -iw_log_likelihood(run.model.model, run.model.guide, x_test, args.iw_samples)
    return {"estimator": estimator, "kl_term": kl, "neg_elbo": elbo["test_loss"],
            "recon": elbo["recon"], "kl": elbo["kl"], "nll": nll.mean().item(),
            "nll_stderr": (nll.std() / len(nll) ** 0.5).item(),
            "epoch_s": sum(r["epoch_s"] for r in history) / len(history),
            "iw_s": time.perf_counter() - t0, "model": run.model, "x_test": x_test}


def most_used_latent(model, x: torch.Tensor) -> int:
    """The latent with the largest mean exact KL, log K + sum_k q_k log q_k, over ``x``."""
    q = model.encode(x)
    kl = (q * q.clamp_min(1e-30).log()).sum(-1).mean(0) + math.log(model.num_categories)
    return int(kl.argmax())


def figures(row: dict, folder: Path, latent: Optional[int], seed: int) -> None:
    """A grid of 64 prior samples and a traversal of categorical ``latent`` (default: the
    most used) of 8 test images."""
    model, x = row["model"], row["x_test"]
    latent = most_used_latent(model, x) if latent is None else latent
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    plots.save(plots.image_grid(model.generate(64), 8, title="samples from the prior"),
               folder / "samples.png")
    rows = model.traverse_categorical(x[:8], latent)
    plots.save(plots.labelled_rows(rows, [f"image {i}" for i in range(len(rows))],
                                   title=f"latent {latent} set to each of its "
                                   f"{model.num_categories} classes"),
               folder / "traversal.png")


def table(rows) -> str:
    lines = ["| estimator | KL in training | test -ELBO | recon | KL | NLL (IWAE) | s / epoch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['estimator']} | {r['kl_term']} | {r['neg_elbo']:.2f} | "
                     f"{r['recon']:.2f} | {r['kl']:.2f} | {r['nll']:.2f} ± {r['nll_stderr']:.2f} | "
                     f"{r['epoch_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100, help="epochs per estimator (default 100)")
    p.add_argument("--iw-samples", type=int, default=250, help="K of the IWAE NLL (default 250)")
    p.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=ROWS,
                   help="rows to train and tabulate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latent", type=int, default=None,
                   help="categorical traversed (default: the one with the largest mean KL)")
    p.add_argument("--out", default="runs/categorical", help="run folders, one per row")
    p.add_argument("--figures", default="docs/categorical", help="PNGs of the relaxed row's run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for name in args.rows:
        rows.append(run_one(name, args))
        print(f"# {name}: -ELBO {rows[-1]['neg_elbo']:.2f}, NLL {rows[-1]['nll']:.2f} "
              f"(IWAE {rows[-1]['iw_s']:.0f} s)", flush=True)
    if "relaxed" in args.rows:
        figures(rows[args.rows.index("relaxed")], Path(args.figures), args.latent, args.seed)
    print(f"\nmnist-10k, --binarize dynamic, {args.epochs} epochs each, batch 100, seed "
          f"{args.seed}, N=30 K=10, NLL with K={args.iw_samples} importance samples "
          f"(± standard error over the 2000 test images); discrete model throughout\n")
    print(table(rows))
    print(f"\ntotal {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
