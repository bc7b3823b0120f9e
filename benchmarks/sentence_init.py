"""Where the word embeddings start: test NLL after a short schedule, per starting scale.

The language model and the ``warmup-fb``-like VAE (free bits 0.25, no warm-up) of the
wider-softmax recipe (GRU of 256 units, 256-d embeddings, z of 32, the adaptive
softmax, decoder dropout 0.5, Adam 1e-3, gradients clipped at 5, buckets of 32) train
``--epochs`` epochs on a seeded ``--train-size`` PTB training sentences with their
embeddings drawn from ``N(0, std^2)`` for each ``--stds`` (torch's own default is 1);
each epoch is measured on a seeded 500 test sentences: the language model's exact NLL,
the VAE's negative ELBO. Prints one row per model and scale::

    OMP_NUM_THREADS=1 python benchmarks/sentence_init.py --train-size 5000 --epochs 5 \\
        --stds 0.05 0.2 1 --rows lm vae
"""

import argparse
import time

import pyro
import torch

from pyro_vae import fit
from pyro_vae.models import SentenceVAE
from pyro_vae.text import load_text

ROWS = {"lm": {"language_model": True}, "vae": {"free_bits": 0.25}}


def curve(name: str, std: float, x: torch.Tensor, x_test: torch.Tensor, data, args):
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    model = SentenceVAE(data.vocab, z_dim=32, embed_dim=256, hidden_size=256, dropout=0.5,
                        softmax="adaptive", embed_std=std, **ROWS[name])
    start = time.perf_counter()
    history = fit(model.model, model.guide, x, test_data=x_test, epochs=args.epochs,
                  batch_size=32, batches=model.batching(32), clip_norm=5.0, seed=args.seed,
                  progress=False)
    return [h["test_loss"] for h in history], time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="ptb")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--stds", nargs="+", type=float, default=[0.05, 0.2, 1.0])
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_text(args.data, seed=args.seed)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(args.seed))
    x = data.x_train[pick[:args.train_size]]
    pick = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(args.seed))
    x_test = data.x_test[pick[:500].sort().values]
    print(f"{args.data}: {len(x)} training sentences, {args.epochs} epochs; test: 500 "
          f"sentences (the language model's NLL, the VAE's -ELBO)\n")
    epochs = " | ".join(str(e + 1) for e in range(args.epochs))
    print(f"| model | std | {epochs} | s |")
    print("| --- | ---: |" + " ---: |" * args.epochs + " ---: |")
    for name in args.rows:
        for std in args.stds:
            losses, seconds = curve(name, std, x, x_test, data, args)
            print(f"| {name} | {std:g} | " + " | ".join(f"{v:.2f}" for v in losses)
                  + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
