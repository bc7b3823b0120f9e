"""The VAE-GAN against the plain VAE with the same conv networks, on mnist-10k.

Both rows train on mnist-10k's 8,000 training images (or ``--data``, ``--train-size``)
for the same number of epochs
(the same batch size, the VAE-GAN's default 16; Adam 1e-3; seeds 0 and 1; one thread)
with the same encoder and decoder
(``--net conv --hidden 256 --z-dim 32``, channels 32, 64) and the same pixel
likelihood (Bernoulli):

* ``vae``: ``pyro-vae train --model vae --net conv --hidden 256 --z-dim 32``;
* ``vaegan``: ``pyro-vae train --model vaegan`` at its defaults (the same networks,
  the Dis_l feature likelihood mixed with the pixel one, the adversarial factor and
  the discriminator's own step).

Each is scored by :func:`pyro_vae.quality.sample_quality`: FID (and precision/recall)
of 2,000 prior samples and of the reconstructions of the 2,000 test images, in the
features of the package's MNIST classifier. Prints a Markdown table and writes each
row's sample grid (first seed) to ``--figures``. Each figure is the mean over the seeds;
the sample FIDs of each seed and the ratio of the two rows' means are printed too.

    OMP_NUM_THREADS=1 python benchmarks/vaegan.py                  # the table of docs/vaegan.md
    OMP_NUM_THREADS=1 python benchmarks/vaegan.py --data fashion-mnist --train-size 8000

Finished runs in ``--out`` (one folder per row and seed) are reused when their configs match.
"""

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from pyro_vae import TrainConfig, plots
from pyro_vae.models.vaegan import VAEGANConfig
from pyro_vae.quality import sample_quality
from pyro_vae.runs import Run
from pyro_vae.train import prepare_data, train

# row name -> the config fields that differ from the model's defaults
ROWS = {
    "vae": ("vae", {"net": "conv", "hidden": (256,), "z_dim": 32}),
    "vaegan": ("vaegan", {}),
}


def finished(out: Path, config: TrainConfig) -> bool:
    """Whether ``out`` holds a run of ``config`` (its folder and thread count aside),
    trained to the end."""
    if not (out / "checkpoint.pt").is_file():
        return False
    saved = {k: v for k, v in json.loads((out / "config.json").read_text()).items()
             if k not in ("out", "threads")}
    wanted = json.loads(json.dumps(config.to_dict()))
    same = all(saved.get(k) == v for k, v in wanted.items() if k not in ("out", "threads"))
    return same and Run.load(out).epoch >= config.epochs


def run_one(name: str, seed: int, args) -> dict:
    """Train one row at one seed (or reuse a finished run); its sample-quality figures."""
    prefix = "" if args.data == "mnist-10k" else f"{args.data}-"
    out = Path(args.out) / f"{prefix}{name}-seed{seed}"
    model, fields = ROWS[name]
    config = TrainConfig.for_model(model, data=args.data, epochs=args.epochs,
                                   train_size=args.train_size, seed=seed, threads=1,
                                   batch_size=args.batch_size, out=str(out), **fields)
    if not finished(out, config):
        train(config, overwrite=True)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    run = Run.load(out)
    run.model.eval()
    torch.manual_seed(seed)
    data = prepare_data(dataclasses.replace(run.config, train_size=None))
    quality = sample_quality(run.model, data, num=args.num, seed=seed)
    return {"name": name, "seed": seed, "model": run.model, "data": data,
            "train_s": sum(r["epoch_s"] for r in history), **quality}


KEYS = ("fid_samples", "fid_reconstructions", "precision_samples", "recall_samples", "train_s")


def table(rows) -> str:
    """One line per row: each figure's mean over the seeds, the per-seed sample FIDs."""
    lines = ["| model | sample FID (mean) | per seed | reconstruction FID | precision (samples) | "
             "recall (samples) | train s |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for name, runs in rows.items():
        mean = {k: statistics.mean(r[k] for r in runs) for k in KEYS}
        seeds = ", ".join(f"{r['fid_samples']:.1f}" for r in runs)
        lines.append(f"| {name} | {mean['fid_samples']:.1f} | {seeds} | "
                     f"{mean['fid_reconstructions']:.1f} | {mean['precision_samples']:.3f} | "
                     f"{mean['recall_samples']:.3f} | {mean['train_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12, help="epochs per row (default 12)")
    p.add_argument("--batch-size", type=int, default=VAEGANConfig.batch_size,
                   help=f"batch size of both rows (default {VAEGANConfig.batch_size}, the "
                        "VAE-GAN's)")
    p.add_argument("--num", type=int, default=2000, help="images a side for FID (default 2000)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds of each row; the table holds their means (default 0 1)")
    p.add_argument("--data", default="mnist-10k",
                   help="mnist-10k, fashion-mnist, coloured-mnist-10k, ... (default mnist-10k)")
    p.add_argument("--train-size", type=int, default=None,
                   help="a seeded subset of the training set (default: all)")
    p.add_argument("--out", default="runs/vaegan", help="run folders, one per row")
    p.add_argument("--figures", default="docs/vaegan", help="sample grids, one PNG per row")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = {name: [run_one(name, seed, args) for seed in args.seeds] for name in args.rows}
    folder = Path(args.figures)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "mnist-10k" else f"-{args.data}"
    for name, runs in rows.items():  # the first seed's grid
        torch.manual_seed(runs[0]["seed"])
        plots.save(plots.image_grid(runs[0]["model"].generate(64), 8, title=f"{name}: samples"),
                   folder / f"{name}-samples{suffix}.png")
    first = next(iter(rows.values()))
    data = first[0]["data"]
    print(f"\n{args.data} ({args.train_size or len(data.x_train)} training, "
          f"{len(data.x_test)} test images), {args.epochs} epochs each, "
          f"batch {args.batch_size}, seeds {args.seeds}; FID on {args.num} images a side; "
          f"floor (training images) {first[0]['fid_train_floor']:.1f}\n")
    print(table(rows))
    if {"vae", "vaegan"} <= rows.keys():
        fid = {n: statistics.mean(r["fid_samples"] for r in rows[n]) for n in ("vae", "vaegan")}
        per_seed = ", ".join(f"{g['fid_samples'] / v['fid_samples']:.2f}"
                             for v, g in zip(rows["vae"], rows["vaegan"]))
        print(f"\nsample FID, vaegan / vae: {fid['vaegan'] / fid['vae']:.3f} of the means "
              f"(per seed {per_seed})")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
