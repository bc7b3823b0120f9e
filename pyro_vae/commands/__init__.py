"""Subcommands of ``pyro-vae`` that act on a finished run, one module per family.

Each module exposes ``SUBCOMMANDS``, a dict from name to :class:`Subcommand`;
:mod:`pyro_vae.cli` merges them into its registry. The helpers here are what every such
command shares: the run-folder arguments, loading the run, and its test data.
"""

import argparse
import dataclasses
import sys
from typing import Callable, NamedTuple

from .. import runs


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def run_arguments(p: argparse.ArgumentParser) -> None:
    """``RUN_DIR``, ``--device``, ``--seed``, ``--last`` and ``--checkpoint``."""
    p.add_argument("run_dir", help="a run folder written by `pyro-vae train`")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--last", action="store_true",
                   help="use the newest checkpoint even when a best one was kept")
    p.add_argument("--checkpoint", metavar="NAME",
                   help="use this checkpoint file of the run folder instead, e.g. an older "
                   "checkpoint-e20-s0.pt kept by --keep-checkpoints")


def load_run(args: argparse.Namespace) -> runs.Run:
    """The run named by ``args.run_dir``, its model in eval mode on ``args.device``."""
    run = runs.Run.load(args.run_dir, args.device, best=not args.last,
                        checkpoint=getattr(args, "checkpoint", None))
    print(f"using {run.describe()}", file=sys.stderr)
    return run


def test_data(run: runs.Run, args: argparse.Namespace, data=None):
    """``(x, y)``: the run's test set, or that of ``args.data`` (same shape), first
    ``args.num_images`` (or ``args.num``) items, on the model's device. ``data``: the
    run's own data set already loaded, used when ``args.data`` names no other."""
    from ..train import prepare_data

    config = run.config
    if getattr(args, "data", None):
        config, data = dataclasses.replace(config, data=args.data, data_dir=None), None
    data = prepare_data(config) if data is None else data
    device = next(run.model.parameters()).device
    keep = slice(getattr(args, "num_images", None) or getattr(args, "num", None))
    return data.x_test[keep].to(device), data.y_test[keep].to(device)
