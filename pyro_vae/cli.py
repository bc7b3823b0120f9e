"""``pyro-vae``: train, evaluate, sample and reconstruct from the command line.

``pyro-vae train`` has one flag per :class:`~pyro_vae.config.TrainConfig` field.
Bad input ends with one line on stderr naming the problem, and exit code 2; a
non-finite loss with exit code 1; SIGINT/SIGTERM, after a checkpoint is written, with
``128 + signal number`` (130, 143).
"""

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from . import plots
from .config import TrainConfig, parse_hidden
from .distributed import rank
from .evaluate import accuracy, evaluation_report
from .interrupt import Interrupted
from .train import image_decoder, load_run, prepare_data, train

USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _checked(convert):
    """An argparse ``type`` whose ValueError message reaches the user unchanged."""
    def parse(text):
        try:
            return convert(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        # A field whose default is None (data_dir, labels) parses as its annotated type.
        kind = parse_hidden if f.name == "hidden" else type(f.default) if f.default is not None else f.type
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            type=_checked(kind),
            default=argparse.SUPPRESS,  # unset flags keep the config's value
            help=f"{f.metadata['help']} (default: {f.default})",
        )


def _cmd_train(args: argparse.Namespace) -> int:
    explicit = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                if hasattr(args, f.name)}
    if args.resume:
        if not (Path(args.resume) / "config.json").is_file():
            raise FileNotFoundError(f"resume: {args.resume} holds no run to continue "
                                    "(no config.json); start one with --out")
        values = TrainConfig.load(Path(args.resume) / "config.json").to_dict()
        values.update(explicit, out=str(args.resume))
    else:
        values = explicit
    config = TrainConfig.from_dict(values) if values else TrainConfig()
    try:
        _, history = train(config, resume=bool(args.resume), overwrite=args.overwrite,
                           progress=not args.quiet)
    except Interrupted as stop:
        raise Interrupted(f"{stop}; continue with: pyro-vae train --resume {config.out}",
                          stop.signum) from None
    if rank() != 0:  # under torchrun, rank 0 alone reports
        return 0
    last = history[-1] if history else {}
    print(f"run folder: {config.out}")
    if last:
        print(f"test loss {last.get('test_loss', float('nan')):.2f} nats/image after "
              f"{last['epoch']} epochs")
        names = ["samples.png", "reconstructions.png", "curves.png", "class_samples.png"]
        figures = ", ".join(str(Path(config.out) / f) for f in names
                            if (Path(config.out) / f).exists())
        print(f"figures: {figures}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.iw_samples < 0:
        raise ValueError(f"iw_samples: expected a non-negative integer, got {args.iw_samples}")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"num_images: expected a positive integer, got {args.num_images}")
    model, config = load_run(args.run_dir, args.device)
    data = prepare_data(config)
    labelled = model.uses_labels and not model.semi_supervised
    device = next(model.parameters()).device
    keep = slice(args.num_images)
    x_test, y_test = data.x_test[keep].to(device), data.y_test[keep].to(device)
    test = (x_test, y_test) if labelled else x_test
    torch.manual_seed(args.seed)
    result = evaluation_report(model.model, model.guide, test, iw_samples=args.iw_samples,
                               batch_size=args.batch_size)
    if model.classifies:
        result["test_accuracy"] = accuracy(model.classify, x_test, y_test, args.batch_size)
    result["num_images"] = len(x_test)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if isinstance(value, list):
                value = " ".join(f"{v:.2f}" for v in value)
            print(f"{key:>12}  {value:.4f}" if isinstance(value, float) else f"{key:>12}  {value}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ValueError(f"num: expected a positive integer, got {args.num}")
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise ValueError(f"out: expected a file ending in .png or .npy, got {out.name!r}")
    model, config = load_run(args.run_dir, args.device)
    if args.label is not None and not model.uses_labels:
        raise ValueError(
            f"label: model {config.model!r} is not conditioned on a label; train a cvae or m2"
        )
    torch.manual_seed(args.seed)
    if args.label is None:
        images, title = model.generate(args.num), "samples from the prior"
    else:
        images, title = model.generate(args.num, y=args.label), f"samples of class {args.label}"
    decode = image_decoder(config, next(model.parameters()).device)
    images = (decode(images) if decode else images).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        plots.save(plots.image_grid(images, title=title), out)
    else:
        np.save(out, images.numpy())
    print(f"wrote {args.num} samples to {out}")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    model, config = load_run(args.run_dir, args.device)
    data = prepare_data(config)
    device = next(model.parameters()).device
    x, y = data.x_test[: args.num].to(device), data.y_test[: args.num].to(device)
    x_hat = model.reconstruct(x, y) if model.uses_labels else model.reconstruct(x)
    decode = image_decoder(config, device) or (lambda v: v)
    out = Path(args.out or Path(args.run_dir) / "reconstructions.png")
    plots.save(plots.reconstructions(decode(x), decode(x_hat)), out)
    print(f"wrote {len(x)} reconstructions to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyro-vae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; writes a run folder")
    _add_config_flags(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_train)

    for name, helptext, func in (
        ("evaluate", "test ELBO, log-likelihood and latent use of a run's checkpoint",
         _cmd_evaluate),
        ("sample", "images decoded from prior samples (of one class with --label)", _cmd_sample),
        ("reconstruct", "test inputs beside their reconstructions (PNG)", _cmd_reconstruct),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run_dir", help="a run folder written by `pyro-vae train`")
        p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.set_defaults(run=func)
        if name == "evaluate":
            p.add_argument("--json", action="store_true", help="one JSON object on stdout")
            p.add_argument("--batch-size", type=int, default=1000)
            p.add_argument("--iw-samples", type=int, default=0, metavar="K",
                           help="importance samples per image for the estimate of log p(x) "
                           "(nll, bits_per_dim); 0 skips it; the literature uses 5000 "
                           "(default: 0)")
            p.add_argument("--num-images", type=int, metavar="N",
                           help="evaluate the first N test images (default: all)")
        elif name == "sample":
            p.add_argument("--num", type=int, default=64, help="number of images")
            p.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npy [N, C, H, W]")
            p.add_argument("--label", type=int, default=None,
                           help="class of the images, for a model of labelled data (cvae, m2)")
        else:
            p.add_argument("--num", type=int, default=32, help="number of test images")
            p.add_argument("--out", help="PNG file (default: RUN_DIR/reconstructions.png)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # M2's labelled batches have no site to enumerate, which TraceEnum_ELBO reports.
    warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"pyro-vae: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("pyro-vae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
