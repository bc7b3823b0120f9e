"""Data-parallel training of the sentence VAE on one machine's CPU cores: tokens per second.

A recurrent network's steps are small matrix products, one word position after another,
which a CPU's threads may share poorly; processes that each take their own batch (DDP
over gloo, ``torchrun``) may or may not use the cores better. This trains the same
network (the wider decoder of docs/text.md: GRUs of 512 units, the adaptive softmax,
``warmup-fb``'s free bits and warm-up) for ``--epochs`` epochs on a seeded
``--train-size`` PTB sentences, as

=============  ==============================================================
``threads``    one process with ``W`` threads, batches of 32 (the recipe)
``ranks``      ``W`` processes of one thread, each on its own bucket of 16:
               one step covers 32 sentences, as above
``ranks-32``   ``W`` processes of one thread on buckets of 32 each: one step
               covers ``32 W`` sentences
=============  ==============================================================

each through ``pyro-vae train`` (under ``torch.distributed.run`` for the ranks), one
after another, and prints the training tokens per second of the last epoch (the first
pays for allocations) and the ratio to ``threads``. Run it with nothing else on the
machine::

    python benchmarks/sentence_ddp.py --processes 2 --train-size 3000 --epochs 2

The NLL that such training reaches is measured by ``benchmarks/sentence.py``
(docs/text.md); a step over ``32 W`` sentences is another optimisation path than one over
32, so ``ranks-32`` is a different recipe, not a faster copy of the same one.
"""

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pyro_vae import TrainConfig
from pyro_vae.text.vocab import lengths
from pyro_vae.train import prepare_data

NETWORK = ["--model", "sentence", "--hidden-size", "512", "--softmax", "adaptive",
           "--dropout", "0.5", "--free-bits", "0.25", "--warmup", "linear",
           "--warmup-epochs", "4", "--clip-norm", "5", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_epoch_seconds(variant: str, args, folder: Path) -> float:
    out = folder / variant
    common = ["--data", args.data, "--train-size", str(args.train_size), "--epochs",
              str(args.epochs), "--seed", str(args.seed), "--out", str(out), *NETWORK]
    if variant == "threads":
        command = [sys.executable, "-m", "pyro_vae", "train", "--batch-size", "32",
                   "--threads", str(args.processes), *common]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                   str(args.processes), "--master_addr", "127.0.0.1", "--master_port",
                   str(free_port()), "-m", "pyro_vae", "train", "--threads", "1",
                   "--batch-size", "16" if variant == "ranks" else "32", *common]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{variant}: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return history[-1]["epoch_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="ptb")
    p.add_argument("--processes", type=int, default=2, help="W: threads, or ranks")
    p.add_argument("--train-size", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = TrainConfig.for_model("sentence", data=args.data, train_size=args.train_size,
                                   seed=args.seed)
    tokens = int(lengths(prepare_data(config).x_train).sum())
    print(f"{args.data}: {args.train_size} training sentences, {tokens} tokens; "
          f"W = {args.processes}; the last of {args.epochs} epochs\n")
    with tempfile.TemporaryDirectory() as folder:
        seconds = {v: last_epoch_seconds(v, args, Path(folder))
                   for v in ("threads", "ranks", "ranks-32")}
    print("| variant | sentences a step | s/epoch | tokens/s | / threads |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant, s in seconds.items():
        step = 32 * (args.processes if variant == "ranks-32" else 1)
        print(f"| {variant} | {step} | {s:.1f} | {tokens / s:.0f} | "
              f"{seconds['threads'] / s:.2f} |")
    return seconds


if __name__ == "__main__":
    main()
