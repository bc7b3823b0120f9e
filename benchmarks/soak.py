"""Soak test: train for many steps through ``fit`` and watch resident memory.

The full training path runs (dynamic binarisation, a test evaluation each epoch,
metrics.jsonl, step and epoch checkpoints with rotation); a hook records the
resident set size (RSS), the number of objects Python's garbage collector tracks and
the size of Pyro's param store after every epoch. Memory must not grow after the
first epoch: the param store and trace caches are where leaks usually hide.

    OMP_NUM_THREADS=1 python benchmarks/soak.py                 # 10,000 steps
    OMP_NUM_THREADS=1 python benchmarks/soak.py --steps 2000    # a quicker look

Prints one row every ``--every`` steps and a summary; exits 1 when RSS at the end
exceeds RSS after the first epoch by more than ``--tolerance-mib``. With ``--trim``
glibc's ``malloc_trim`` runs before each reading, so the figure is memory in use
rather than freed memory that malloc keeps for reuse.
"""

import argparse
import ctypes
import ctypes.util
import gc
import math
import os
import sys
import tempfile
import time

import torch

import pyro

from pyro_vae import VAE, fit, load_dataset
from pyro_vae.data import binarize


def rss_mib() -> float:
    """Resident set size of this process now (Linux), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def malloc_trim() -> None:
    """Hand freed heap memory back to the system (glibc), so RSS shows what is in use."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--checkpoint-steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=1000, help="steps between printed rows")
    parser.add_argument("--tolerance-mib", type=float, default=5.0)
    parser.add_argument("--trim", action="store_true",
                        help="malloc_trim before each reading: RSS in use, not cached by malloc")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = load_dataset("mnist-10k")
    steps_per_epoch = math.ceil(len(data.x_train) / args.batch_size)
    epochs = math.ceil(args.steps / steps_per_epoch)
    pyro.clear_param_store()
    vae = VAE(x_shape=data.x_shape, z_dim=args.z_dim, hidden=(args.hidden,))
    rows, next_row, t0 = [], 0, time.perf_counter()

    def watch(metrics):
        nonlocal next_row
        step = metrics["epoch"] * steps_per_epoch
        if args.trim:
            malloc_trim()
        rows.append((step, metrics["epoch"], rss_mib(), len(gc.get_objects()),
                     len(pyro.get_param_store().keys()), metrics["test_loss"]))
        if metrics["epoch"] == 1 or step >= next_row or metrics["epoch"] == epochs:
            base = rows[0][2]
            print(f"{step:>7} {metrics['epoch']:>6} {rows[-1][2]:>9.1f} "
                  f"{rows[-1][2] - base:>+8.1f} {rows[-1][3]:>9} {rows[-1][4]:>7} "
                  f"{metrics['test_loss']:>9.2f} {time.perf_counter() - t0:>7.0f}", flush=True)
            next_row = (step // args.every + 1) * args.every

    print(f"soak: {epochs} epochs x {steps_per_epoch} steps = {epochs * steps_per_epoch} steps; "
          f"VAE 784-{args.hidden}-{args.z_dim}, batch {args.batch_size}, torch "
          f"{torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} thread"
          f"{', malloc_trim before each reading' if args.trim else ''}")
    print(f"RSS before training: {rss_mib():.1f} MiB")
    print(f"{'step':>7} {'epoch':>6} {'RSS MiB':>9} {'vs ep 1':>8} {'gc objs':>9} "
          f"{'params':>7} {'test -ELBO':>9} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as run_dir:
        fit(vae.model, vae.guide, data.x_train, test_data=binarize(data.x_test),
            epochs=epochs, batch_size=args.batch_size, transform=binarize, run_dir=run_dir,
            checkpoint_steps=args.checkpoint_steps, hooks=[watch])
    first, last = rows[0][2], rows[-1][2]
    peak = max(r[2] for r in rows)
    print(f"RSS after epoch 1 {first:.1f} MiB, at the end {last:.1f} MiB "
          f"(growth {last - first:+.1f} MiB), peak after epoch 1 {peak:.1f} MiB; "
          f"gc objects {rows[0][3]} -> {rows[-1][3]}")
    return 0 if last - first <= args.tolerance_mib else 1


if __name__ == "__main__":
    sys.exit(main())
