"""VQ-VAE against a Gaussian VAE with the same convolutional depth.

Two runs per seed, each trained exactly as ``pyro-vae train`` trains it (the same
number of epochs, batches of 128, Adam 1e-3, grey levels under a Bernoulli likelihood):

- ``vqvae``: ``--model vqvae`` at its defaults (K = 128 codes of D = 32, a 7x7 grid,
  beta = 0.25, EMA decay 0.99, restarts after 10 idle steps, the causal-transformer
  prior fitted alongside and then ``--prior-epochs 20`` epochs alone on the fixed
  training codes after the last epoch);
- ``vae-conv``: ``--net conv`` (the same two 3x3 stride-2 convolutions of 32 and 64
  channels each way, an MLP head of 256), z 50.

Reports each one's reconstruction MSE per pixel on the test images, the VQ-VAE's
codebook usage and perplexity on them, and the classifier-feature FID
(:func:`pyro_vae.quality.sample_quality`, ``--quality-samples`` images a side) of
samples from the learnt prior as the run saved it, from the same prior before its
second phase (the weights the checkpoint keeps for resuming), from a uniform prior
over codes, and from the Gaussian VAE. Prints a Markdown table (mean and standard
deviation over ``--seeds``) and writes a grid of samples of each to ``--figures``.

    OMP_NUM_THREADS=1 python benchmarks/vqvae.py                          # mnist-10k
    OMP_NUM_THREADS=1 python benchmarks/vqvae.py --data fashion-mnist --train-size 8000

About 15 minutes a seed on one core shared with other jobs (two runs of 20 epochs of
63 steps, about 25 and 5 s an epoch; the prior's phase, about 2 minutes; four FIDs).
Finished runs in ``--out`` are reused.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pyro_vae import TrainConfig, plots
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.models.vqvae import PriorPhase
from pyro_vae.quality import sample_quality
from pyro_vae.runs import Run
from pyro_vae.train import prepare_data, train

ROWS = {
    "vqvae": {"model": "vqvae"},
    "vae-conv": {"model": "vae", "net": "conv", "z_dim": 50},
}


def run(name: str, seed: int, args) -> Run:
    """The finished run of row ``name``, trained first unless ``--out`` holds it."""
    out = Path(args.out) / args.data / f"{name}-seed{seed}"
    if not (out / CHECKPOINT).is_file() or Run.load(out).epoch < args.epochs:
        config = TrainConfig.for_model(**ROWS[name], data=args.data, epochs=args.epochs,
                                       train_size=args.train_size, seed=seed, out=str(out),
                                       threads=1)
        start = time.perf_counter()
        train(config, overwrite=True)
        print(f"trained {name}, seed {seed}, in {time.perf_counter() - start:.0f} s", flush=True)
    return Run.load(out)


def mse(model, x: torch.Tensor) -> float:
    """Mean squared error per pixel of ``model.reconstruct`` on ``x``."""
    model.eval()
    return sum((model.reconstruct(b) - b).pow(2).sum().item() for b in x.split(500)) / x.numel()


def fid(model, data, args, seed: int) -> float:
    return sample_quality(model, data, args.quality_samples, seed)["fid_samples"]


def one_seed(seed: int, data, args) -> dict:
    """Each row's (MSE, FID) and the codebook statistics for one seed."""
    vq_run = run("vqvae", seed, args)
    vq, vae = vq_run.model, run("vae-conv", seed, args).model
    vq.eval()
    stats = vq.code_statistics(data.x_test)
    fitted = {k: v.clone() for k, v in vq.code_prior.state_dict().items()}
    before = load_checkpoint(vq_run.checkpoint)["callbacks"][PriorPhase.key]
    vq.code_prior.load_state_dict(before)
    alongside = fid(vq, data, args, seed)
    vq.code_prior.load_state_dict(fitted)
    learnt = fid(vq, data, args, seed)
    vq.prior_kind = "uniform"
    uniform = fid(vq, data, args, seed)
    vq.prior_kind = "transformer"
    rows = {
        "VQ-VAE, learnt prior (pyro-vae train: alongside, then 20 epochs alone)":
            (stats["mse"], learnt),
        "VQ-VAE, learnt prior before its second phase (alongside only)": (stats["mse"], alongside),
        "VQ-VAE, uniform prior": (stats["mse"], uniform),
        "Gaussian VAE (conv)": (mse(vae, data.x_test), fid(vae, data, args, seed)),
    }
    return {"rows": rows, "codebook": stats, "models": (vq, vae)}


def mean_sd(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-10k")
    parser.add_argument("--train-size", type=int, default=None,
                        help="a seeded subset of the training set (default: all)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--quality-samples", type=int, default=2000)
    parser.add_argument("--out", default="runs/bench-vqvae")
    parser.add_argument("--figures", default="docs/vqvae")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = prepare_data(TrainConfig.for_model("vqvae", data=args.data))
    results = [one_seed(seed, data, args) for seed in args.seeds]
    usage = [100 * r["codebook"]["usage"] for r in results]
    perplexity = [r["codebook"]["perplexity"] for r in results]
    size = args.train_size or len(data.x_train)
    print(f"\n{args.data} ({size} training, {len(data.x_test)} test images), "
          f"{args.epochs} epochs, seeds {' '.join(map(str, args.seeds))}; codebook usage "
          f"{mean_sd(usage)}% of 128 codes, perplexity {mean_sd(perplexity)}\n")
    print("| model | test reconstruction MSE | sample FID |\n| --- | ---: | ---: |")
    for name in results[0]["rows"]:
        errors = [r["rows"][name][0] for r in results]
        scores = [r["rows"][name][1] for r in results]
        print(f"| {name} | {mean_sd(errors)} | {mean_sd(scores)} |")
    print(json.dumps([{"seed": s, "codebook": r["codebook"], "rows": r["rows"]}
                      for s, r in zip(args.seeds, results)]))

    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    vq, vae = results[0]["models"]
    suffix = "" if args.data == "mnist-10k" else f"-{args.data}"
    torch.manual_seed(args.seeds[0])
    for prior in ("transformer", "uniform"):
        plots.save(plots.image_grid(vq.generate(64, prior=prior), 8),
                   figures / f"samples-{prior}{suffix}.png")
    plots.save(plots.image_grid(vae.generate(64), 8), figures / f"samples-vae-conv{suffix}.png")
    return results


if __name__ == "__main__":
    main()
