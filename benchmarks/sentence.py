"""Sentence VAEs on the Penn Treebank: the anti-collapse ablation and the language model.

Each row is trained exactly as ``pyro-vae train --model sentence`` trains it (GRU of
``--hidden-size`` units, ``--embed-dim`` embeddings, z of ``--z-dim``, batches of 32 of
similar length, Adam 1e-3, gradients clipped at 5, the closed-form KL), then measured on
the test sentences: the negative ELBO, the importance-weighted NLL (``--iw-samples`` K),
the perplexity over words and ``<eos>``, the KL, the mutual information I(x; z), the
active units, and the training time and tokens per second of an epoch.

=============  ================================================================
``lm``         the decoder alone, no code: the RNN language model (reference)
``vae``        no warm-up, no word dropout: the collapsed baseline
``warmup``     linear KL warm-up over ``--warmup-epochs``
``warmup-wd``  warm-up and word dropout 0.3 (Bowman et al. 2016)
``fb``         free bits, 0.25 nats per dimension (Kingma et al. 2016)
``warmup-fb``  warm-up and free bits 0.25
``all``        warm-up, word dropout 0.3 and free bits 0.25
``cyclical``   cyclical warm-up (period ``--warmup-epochs``) and free bits 0.25
``aggressive`` warm-up, and 3 encoder-only steps after each step for the first 2
               epochs (He et al. 2019; each such epoch costs about four)
=============  ================================================================

    # the ablation on a short schedule: 5,000 training sentences, 5 epochs (docs/text.md)
    OMP_NUM_THREADS=1 python benchmarks/sentence.py --train-size 5000 --epochs 5 \\
        --warmup-epochs 3 --dropout 0.5 --iw-samples 100 --test-size 200 \\
        --out runs/bench-sentence-ablation
    # the full recipe for the best row and the language model (about 10 minutes an epoch
    # each on one shared core)
    OMP_NUM_THREADS=1 python benchmarks/sentence.py --rows lm warmup-fb --epochs 16 \\
        --warmup-epochs 4 --dropout 0.5 --iw-samples 500 --test-size 200
    # the wider decoder: GRUs of 512 units, the adaptive softmax (``--lr-schedule
    # cosine --average-start 18``: the learning rate on a cosine to 0 instead)
    OMP_NUM_THREADS=1 python benchmarks/sentence.py --rows lm warmup-fb --epochs 25 \\
        --warmup-epochs 4 --dropout 0.5 --hidden-size 512 --softmax adaptive \\
        --weight-average swa --average-start 13 --iw-samples 500 --test-size 500
    # a quick run on a subset
    OMP_NUM_THREADS=1 python benchmarks/sentence.py --train-size 2000 --test-size 300 \\
        --epochs 2 --iw-samples 20

Finished runs in ``--out`` are reused. Prints a Markdown table. The rows of docs/text.md
measured before the embeddings started at ``N(0, 0.2^2)`` add ``--embed-std 1``.
"""

import argparse
import time
from pathlib import Path

import torch

from pyro_vae import TrainConfig
from pyro_vae.checkpoint import CHECKPOINT
from pyro_vae.evaluate import evaluation_report
from pyro_vae.runs import Run, read_metrics
from pyro_vae.text.nets import EMBED_STD, SOFTMAXES
from pyro_vae.text.report import perplexities
from pyro_vae.text.vocab import lengths
from pyro_vae.train import prepare_data, train
from pyro_vae.training.averaging import KINDS as AVERAGES
from pyro_vae.training.callbacks import LR_SCHEDULES

ROWS = {
    "lm": {"language_model": True},
    "vae": {},
    "warmup": {"warmup": "linear"},
    "warmup-wd": {"warmup": "linear", "word_dropout": 0.3},
    "fb": {"free_bits": 0.25},
    "warmup-fb": {"warmup": "linear", "free_bits": 0.25},
    "all": {"warmup": "linear", "word_dropout": 0.3, "free_bits": 0.25},
    "cyclical": {"warmup": "cyclical", "free_bits": 0.25},
    "aggressive": {"warmup": "linear", "aggressive_steps": 3, "aggressive_epochs": 2},
}


def config_of(name: str, args) -> TrainConfig:
    out = Path(args.out) / (f"{name}-n{args.train_size or 'all'}-d{args.dropout:g}"
                            + (f"-h{args.hidden_size}" if args.hidden_size != 256 else "")
                            + (f"-e{args.embed_std:g}" if args.embed_std != EMBED_STD else "")
                            + ("-tied" if args.tie_embeddings else "")
                            + ("-adaptive" if args.softmax == "adaptive" else "")
                            + (f"-{args.lr_schedule}" if args.lr_schedule != "none" else ""))
    warmup = {"warmup_epochs": args.warmup_epochs} if "warmup" in ROWS[name] else {}
    return TrainConfig.for_model(
        "sentence", **ROWS[name], **warmup, data=args.data, train_size=args.train_size,
        dropout=args.dropout, tie_embeddings=args.tie_embeddings, softmax=args.softmax,
        epochs=args.epochs, lr_schedule=args.lr_schedule, batch_size=32, clip_norm=5.0,
        z_dim=args.z_dim, embed_dim=args.embed_dim, embed_std=args.embed_std,
        hidden_size=args.hidden_size,
        seed=args.seed, out=str(out), threads=args.threads,
        **({"weight_average": args.weight_average, "average_start": args.average_start}
           if args.weight_average else {}))


def run(name: str, args) -> Run:
    config = config_of(name, args)
    out = Path(config.out)
    if args.checkpoint:  # an earlier epoch of a run, as it was then
        return Run.load(out, checkpoint=args.checkpoint)
    done = Run.load(out).epoch if (out / CHECKPOINT).is_file() else 0
    if done < args.epochs:  # a shorter run of the same row goes on (exact resume)
        start = time.perf_counter()
        train(config, resume=done > 0)
        print(f"trained {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return Run.load(out)


def measure(name: str, args) -> dict:
    result = run(name, args)
    x = prepare_data(result.config).x_test
    if args.test_size:  # a seeded random subset, in the test set's order
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
        x = x[pick[:args.test_size].sort().values]
    torch.manual_seed(args.seed)
    # the language model's bound is its exact log p(x) at any K
    iw_samples = 1 if ROWS[name].get("language_model") else args.iw_samples
    report = evaluation_report(result.model.model, result.model.guide, x,
                               iw_samples=iw_samples, batch_size=200)
    report.update(perplexities(report, x))
    history = [h for h in read_metrics(result.folder) if h["epoch"] <= result.epoch]
    tokens = int(lengths(prepare_data(result.config).x_train).sum())
    epoch_s = sum(h["epoch_s"] for h in history) / len(history)
    return {"row": name, **report, "epochs": result.epoch, "epoch_s": epoch_s,
            "tokens_per_s": tokens / epoch_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ptb")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--train-size", type=int, help="training sentences (default: all)")
    p.add_argument("--test-size", type=int, help="test sentences measured, a seeded random "
                   "subset (default: all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--embed-dim", type=int, default=256)
    p.add_argument("--embed-std", type=float, default=EMBED_STD,
                   help="the embeddings' standard deviation at initialisation (torch's "
                   "default, which the rows measured before it was an option had: 1)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout on the decoder's embeddings and outputs")
    p.add_argument("--tie-embeddings", action="store_true",
                   help="the decoder's softmax weights are its input embeddings")
    p.add_argument("--softmax", choices=SOFTMAXES, default="full",
                   help="the decoder's softmax layer (adaptive: its default cutoffs)")
    p.add_argument("--weight-average", choices=AVERAGES[1:], default=None,
                   help="measure an average of the weights (default: the last weights)")
    p.add_argument("--average-start", type=int, default=0,
                   help="epochs before the weight average begins")
    p.add_argument("--lr-schedule", choices=list(LR_SCHEDULES), default="none",
                   help="learning-rate schedule over the run's epochs (cosine: to 0)")
    p.add_argument("--checkpoint", metavar="NAME",
                   help="measure this kept checkpoint of each row's run (e.g. "
                   "checkpoint-e19-s0.pt) instead of training it to --epochs")
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench-sentence")
    args = p.parse_args(argv)

    rows = [measure(name, args) for name in args.rows]
    print(f"\n{args.data}, {args.train_size or 'all'} training sentences, decoder dropout "
          f"{args.dropout:g}; test: {args.test_size or 'all'} sentences, K = "
          f"{args.iw_samples}\n")
    print("| row | epochs | -ELBO | NLL | PPL | KL | MI | AU | s/epoch | tokens/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['row']} | {r['epochs']} | {r['test_loss']:.2f} | {r['nll']:.2f} | {r['ppl']:.1f} | "
              f"{r['kl']:.2f} | {r['mutual_information']:.2f} | {r['active_units']} | "
              f"{r['epoch_s']:.0f} | {r['tokens_per_s']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
