"""VQ-VAE against a Gaussian VAE with the same convolutional depth, on mnist-10k.

Two runs, trained as ``pyro-vae train`` trains them, the same number of epochs, batches
of 128, Adam 1e-3, seed 0, grey levels under a Bernoulli likelihood (no binarising):

- ``vqvae``: ``--model vqvae`` at its defaults (K = 128 codes of D = 32, a 7x7 grid,
  beta = 0.25, EMA decay 0.99, restarts after 10 idle steps, the causal-transformer
  prior fitted alongside);
- ``vae-conv``: ``--net conv`` (the same two 3x3 stride-2 convolutions of 32 and 64
  channels each way, an MLP head of 256), z 50.

Reports each one's reconstruction MSE per pixel on the 2000 test images, the VQ-VAE's
codebook usage and perplexity on them, and the classifier-feature FID
(:func:`pyro_vae.quality.sample_quality`, 2000 images a side) of samples from the
learnt prior as training left it (fitted alongside the VQ-VAE), from the same prior
after ``--prior-epochs`` more epochs alone on the fixed training codes
(:meth:`VQVAE.fit_prior`), from a uniform prior over codes, and from the Gaussian VAE. Prints a
Markdown table and writes a grid of samples of each to ``--figures``.

    OMP_NUM_THREADS=1 python benchmarks/vqvae.py               # the table of docs/vqvae.md

About 15 minutes on one core shared with other jobs at the defaults (two runs of 20
epochs of 63 steps, about 25 and 5 s an epoch; 20 epochs of the prior alone, about
2 minutes; four FIDs). Finished runs in ``--out`` are reused.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from pyro_vae import TrainConfig, plots
from pyro_vae.checkpoint import CHECKPOINT
from pyro_vae.quality import sample_quality
from pyro_vae.runs import Run
from pyro_vae.train import prepare_data, train

ROWS = {
    "vqvae": {"model": "vqvae"},
    "vae-conv": {"model": "vae", "net": "conv", "z_dim": 50},
}


def run(name: str, args) -> Run:
    """The finished run of row ``name``, trained first unless ``--out`` holds it."""
    out = Path(args.out) / name
    if not (out / CHECKPOINT).is_file() or Run.load(out).epoch < args.epochs:
        config = TrainConfig.for_model(**ROWS[name], data=args.data, epochs=args.epochs,
                                       seed=args.seed, out=str(out), threads=1)
        start = time.perf_counter()
        train(config, overwrite=True)
        print(f"trained {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return Run.load(out)


def mse(model, x: torch.Tensor) -> float:
    """Mean squared error per pixel of ``model.reconstruct`` on ``x``."""
    model.eval()
    return sum((model.reconstruct(b) - b).pow(2).sum().item() for b in x.split(500)) / x.numel()


def fid(model, data, args, prior=None) -> float:
    """Sample FID of ``model`` (for the VQ-VAE, from ``prior``)."""
    if prior is not None:
        model.prior_kind = prior
    return sample_quality(model, data, args.quality_samples, args.seed)["fid_samples"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-10k")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior-epochs", type=int, default=20,
                        help="epochs of the prior alone after training (VQVAE.fit_prior)")
    parser.add_argument("--quality-samples", type=int, default=2000)
    parser.add_argument("--out", default="runs/bench-vqvae")
    parser.add_argument("--figures", default="docs/vqvae")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = prepare_data(TrainConfig.for_model("vqvae", data=args.data))
    vq, vae = run("vqvae", args).model, run("vae-conv", args).model
    vq.eval()
    stats = vq.code_statistics(data.x_test)
    joint = fid(vq, data, args, "transformer")
    start = time.perf_counter()
    nll = vq.fit_prior(data.x_train, args.prior_epochs, seed=args.seed)
    print(f"fitted the prior {args.prior_epochs} more epochs in "
          f"{time.perf_counter() - start:.0f} s "
          f"(-log p(k): {nll[0]:.1f} -> {nll[-1]:.1f} nats/image)" if nll else "", flush=True)
    rows = {
        "VQ-VAE, learnt prior (fitted alongside)": (stats["mse"], joint),
        f"VQ-VAE, learnt prior (+ {args.prior_epochs} epochs alone)":
            (stats["mse"], fid(vq, data, args, "transformer")),
        "VQ-VAE, uniform prior": (stats["mse"], fid(vq, data, args, "uniform")),
        "Gaussian VAE (conv)": (mse(vae, data.x_test), fid(vae, data, args)),
    }
    print(f"\n{args.data}, {args.epochs} epochs, seed {args.seed}; codebook usage "
          f"{stats['usage']:.1%} of {vq.num_codes}, perplexity {stats['perplexity']:.1f}\n")
    print("| model | test reconstruction MSE | sample FID |\n| --- | ---: | ---: |")
    for name, (error, score) in rows.items():
        print(f"| {name} | {error:.4f} | {score:.1f} |")
    print(json.dumps({"codebook": stats, "rows": rows}))

    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    for prior in ("transformer", "uniform"):
        vq.prior_kind = prior
        plots.save(plots.image_grid(vq.generate(64), 8), figures / f"samples-{prior}.png")
    plots.save(plots.image_grid(vae.generate(64), 8), figures / "samples-vae-conv.png")
    return rows


if __name__ == "__main__":
    main()
