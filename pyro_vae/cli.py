"""``pyro-vae``: train, evaluate, sample, reconstruct and compare from the command line.

Subcommands live in :data:`SUBCOMMANDS`, a registry from name to
``(help, add_arguments, run)``: adding one is one entry. ``pyro-vae train`` has one
flag per field of the model's config (``pyro-vae train --model m2 --help`` lists
M2's), in groups. Bad input ends with one line on stderr naming the problem (with a
suggestion for a mistyped flag or value) and exit code 2; a non-finite loss with exit
code 1; SIGINT/SIGTERM, after a checkpoint is written, with ``128 + signal number``.
"""

import argparse
import dataclasses
import difflib
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from . import __version__, plots, runs
from .commands import explore, figures, score, text
from .commands import Subcommand, load_run, run_arguments, test_data
from .config import GROUPS, TrainConfig, config_class, parse_value
from .distributed import rank
from .evaluate import accuracy, evaluation_report
from .interrupt import Interrupted
from .models import MODELS, model_class
from .text.report import SAMPLES, perplexities
from .train import train

USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


class UsageError(ValueError):
    """A bad command line; printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, with a close match for typos."""

    def error(self, message: str):
        if message.startswith("argument "):  # "argument --z-dim/-z: <problem>"
            flag, _, problem = message[len("argument "):].partition(": ")
            flag = flag.split("/")[0]
            name = flag.lstrip("-").replace("-", "_") if flag.startswith("-") else flag
            if problem.startswith("invalid choice: "):
                wrong = problem.split("'")[1]
                close = difflib.get_close_matches(wrong, self._choices(), n=1)
                problem = f"invalid choice: {wrong!r}" + (
                    f" (did you mean {close[0]!r}?)" if close else
                    f" (choose from {', '.join(self._choices())})")
            raise UsageError(f"{name}: {problem}")
        unknown = message.partition("unrecognized arguments: ")[2].split()
        if unknown:
            flag = unknown[0].split("=")[0]
            known = [s for p in self._parsers() for a in p._actions for s in a.option_strings]
            close = difflib.get_close_matches(flag, known, n=1)
            message = f"{flag}: no such option" + (f" (did you mean {close[0]}?)" if close else "")
            owner = _option_of_other_models(flag)
            if owner:
                message = f"{flag[2:].replace('-', '_')}: no such option here; {flag} is an " \
                          f"option of --model {' or '.join(owner)}"
        raise UsageError(message)

    def _parsers(self) -> List[argparse.ArgumentParser]:
        """This parser and its subcommands' parsers."""
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return [self, *(p for a in subs for p in a.choices.values())]

    def _choices(self) -> List[str]:
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return [name for a in subs for name in a.choices]


def _option_of_other_models(flag: str) -> List[str]:
    name = flag[2:].replace("-", "_")
    return sorted(m for m, cls in MODELS.items()
                  if name in {f.name for f in dataclasses.fields(cls.config_class)})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(f: dataclasses.Field) -> Callable[[str], object]:
    """An argparse ``type`` for field ``f``: ints, numbers, strings, booleans, int lists."""
    def parse(text: str):
        if f.type in (int, float, str):
            try:
                return f.type(text)
            except ValueError:
                kind = "an integer" if f.type is int else "a number"
                raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return parse_value(f, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).partition(": ")[2]) from None

    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of config class ``cls``, in its ``--help`` group."""
    groups = {g: parser.add_argument_group(f"{g} ({cls.__name__})" if g == "model" else g)
              for g in GROUPS}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        choices = meta.get("choices")
        listed = f"; one of: {', '.join(map(str, choices()))}" if choices else ""
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        groups[meta.get("group", "model")].add_argument(
            _flag(f.name), *meta.get("flags", ()), dest=f.name, type=_parse(f),
            default=argparse.SUPPRESS, metavar=f.name.upper(),
            help=f"{meta['help']}{listed} (default: {default})")


# -------------------------------------------------------------------- train
def _train_arguments(p: argparse.ArgumentParser, model: str) -> None:
    try:
        cls = config_class(model)
    except ValueError:  # an unknown --model: the VAE's flags, and the error later
        cls = config_class("vae")
    add_config_flags(p, cls)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train(args: argparse.Namespace) -> int:
    explicit = {k: v for k, v in vars(args).items()
                if k not in ("resume", "overwrite", "quiet", "run", "command")}
    if args.resume:
        if not (Path(args.resume) / runs.CONFIG).is_file():
            raise FileNotFoundError(f"resume: {args.resume} holds no run to continue "
                                    "(no config.json); start one with --out")
        values = runs.read_config(args.resume)
        values.update(explicit, out=str(args.resume))
    else:
        values = explicit
    config = TrainConfig.from_dict(values) if values else TrainConfig().for_its_model()
    try:
        _, history = train(config, resume=bool(args.resume), overwrite=args.overwrite,
                           progress=not args.quiet)
    except Interrupted as stop:
        raise Interrupted(f"{stop}; continue with: pyro-vae train --resume {config.out}",
                          stop.signum) from None
    if int(os.environ.get("RANK", rank())) != 0:  # under torchrun, rank 0 alone reports
        return 0  # (the process group is gone by now: ask the launcher's environment)
    last = history[-1] if history else {}
    item = "sentence" if model_class(config.model).data_kind == "text" else "image"
    print(f"run folder: {config.out}")
    if last:
        print(f"test loss {last.get('test_loss', float('nan')):.2f} nats/{item} after "
              f"{last['epoch']} epochs")
        figures = ", ".join(str(Path(config.out) / f) for f in (*runs.FIGURES, SAMPLES)
                            if (Path(config.out) / f).exists())
        print(f"figures: {figures}")
    return 0


# ------------------------------------------------- subcommands on a finished run
def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    run_arguments(p)
    p.add_argument("--data", metavar="NAME|PATH", help="evaluate on this data set's test "
                   "split instead of the run's")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--iw-samples", type=int, default=0, metavar="K",
                   help="importance samples per image for the estimate of log p(x) "
                   "(nll, bits_per_dim); 0 skips it; the literature uses 5000 (default: 0)")
    p.add_argument("--num-images", type=int, metavar="N",
                   help="evaluate the first N test images (default: all)")
    p.add_argument("--sample-quality", action="store_true",
                   help="FID and precision/recall (k = 3) of samples and reconstructions "
                   "against the test set, and of real training images (the floor), in the "
                   "features of a classifier of the data set (trained once, cached); not "
                   "Inception FIDs")
    p.add_argument("--quality-samples", type=int, metavar="N",
                   help="images on each side of each comparison (default: min(test set "
                   "size, 2000))")


def _evaluate(args: argparse.Namespace) -> int:
    if args.iw_samples < 0:
        raise ValueError(f"iw_samples: expected a non-negative integer, got {args.iw_samples}")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"num_images: expected a positive integer, got {args.num_images}")
    if args.quality_samples is not None and not args.sample_quality:
        raise ValueError("quality_samples: only used with --sample-quality")
    if args.quality_samples is not None and args.quality_samples < 4:
        raise ValueError(f"quality_samples: expected an integer >= 4 (3 nearest neighbours "
                         f"besides each image), got {args.quality_samples}")
    run = load_run(args)
    if args.sample_quality and run.model.data_kind == "text":
        raise ValueError("sample_quality: compares images; the run models text")
    if args.sample_quality and getattr(run.config, "features", None):
        raise ValueError("sample_quality: the run models a VAE's codes (features), not "
                         "images; evaluate the images' VAE instead")
    model = run.model
    x_test, y_test = test_data(run, args)
    labelled = model.uses_labels and not model.semi_supervised
    torch.manual_seed(args.seed)
    result = evaluation_report(model.model, model.guide, (x_test, y_test) if labelled else x_test,
                               iw_samples=args.iw_samples, batch_size=args.batch_size,
                               progress=sys.stderr.isatty())
    if model.classifies:
        result["test_accuracy"] = accuracy(model.classify, x_test, y_test, args.batch_size)
    result.update(model.metrics(x_test))
    if model.data_kind == "text":  # per token, not per pixel
        result.pop("bits_per_dim", None)
        result.update(perplexities(result, x_test))
    result.update(num_images=len(x_test), checkpoint=run.checkpoint.name, epoch=run.epoch)
    if args.sample_quality:
        result.update(_sample_quality(run, args))
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if isinstance(value, list):
            value = " ".join(f"{v:.2f}" for v in value)
        print(f"{key:>12}  {value:.4f}" if isinstance(value, float) else f"{key:>12}  {value}")
    return 0


def _sample_quality(run: runs.Run, args: argparse.Namespace) -> dict:
    """:func:`pyro_vae.quality.sample_quality` of the run against its data set (or
    ``args.data``), with pixel intensities as stored (no binarising) and its whole
    training set (the classifier's and the floor's), whatever ``--train-size`` the run had."""
    from .quality import sample_quality
    from .train import prepare_data

    config = dataclasses.replace(run.config, binarize="none", train_size=None)
    if args.data:
        config = dataclasses.replace(config, data=args.data, data_dir=None)
    return sample_quality(run.model, prepare_data(config), args.quality_samples, args.seed)


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    run_arguments(p)
    p.add_argument("--num", type=int, default=64, help="number of images (or sentences)")
    p.add_argument("--out", help="FILE.png (grid) or FILE.npy [N, C, H, W]; for a text "
                   "model, FILE.txt (sentences are printed in any case)")
    p.add_argument("--label", type=int, default=None,
                   help="class of the images, for a model of labelled data (cvae, m2)")
    text.decode_arguments(p)


def _sample(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ValueError(f"num: expected a positive integer, got {args.num}")
    if text.is_text_run(args.run_dir):
        return text.sample(args)
    if not args.out:
        raise ValueError("out: required for images: FILE.png or FILE.npy")
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise ValueError(f"out: expected a file ending in .png or .npy, got {out.name!r}")
    run = load_run(args)
    model = run.model
    if args.label is not None and not model.uses_labels:
        raise ValueError(f"label: model {run.config.model!r} is not conditioned on a label; "
                         "train a cvae or m2")
    torch.manual_seed(args.seed)
    images = model.generate(args.num, args.label)
    title = "samples from the prior" if args.label is None else f"samples of class {args.label}"
    decode = runs.image_decoder(run.config, next(model.parameters()).device)
    images = (decode(images) if decode else images).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        plots.save(plots.image_grid(images, title=title), out)
    else:
        np.save(out, images.numpy())
    print(f"wrote {args.num} samples to {out}")
    return 0


def _reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    run_arguments(p)
    p.add_argument("--data", metavar="NAME|PATH", help="reconstruct this data set's test "
                   "images instead of the run's")
    p.add_argument("--num", type=int, default=32, help="number of test images (or sentences)")
    p.add_argument("--out", help="PNG file (default: RUN_DIR/reconstructions.png); for a "
                   "text model, FILE.txt (pairs are printed in any case)")
    text.decode_arguments(p)


def _reconstruct(args: argparse.Namespace) -> int:
    if text.is_text_run(args.run_dir):
        return text.reconstruct(args)
    run = load_run(args)
    x, y = test_data(run, args)
    model = run.model
    x_hat = model.reconstruct(x, y if model.uses_labels else None)
    decode = runs.image_decoder(run.config, x.device) or (lambda v: v)
    out = Path(args.out or Path(args.run_dir) / "reconstructions.png")
    plots.save(plots.reconstructions(decode(x), decode(x_hat)), out)
    print(f"wrote {len(x)} reconstructions to {out}")
    return 0


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders to compare")
    p.add_argument("--out", help="PNG file of their curves on one figure")
    p.add_argument("--metric", default="test_loss", help="the curve to plot (default: test_loss)")


def _compare(args: argparse.Namespace) -> int:
    configs = [runs.read_config(d) for d in args.run_dirs]
    histories = [runs.read_metrics(d) for d in args.run_dirs]
    names = [Path(d).name or str(d) for d in args.run_dirs]
    keys = sorted({k for c in configs for k in c} - {"out"})
    differ = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    width = max(12, *map(len, names))
    print(f"{'setting':<22}" + "".join(f"{n:>{width + 2}}" for n in names))
    for key in differ:
        print(f"{key:<22}" + "".join(f"{str(c.get(key, '-')):>{width + 2}}" for c in configs))
    print("(settings not shown are the same in every run)")
    finals = [h[-1] if h else {} for h in histories]
    metrics = sorted({k for f in finals for k in f if isinstance(f.get(k), (int, float))})
    for key in metrics:
        print(f"{key:<22}" + "".join(
            f"{f[key]:>{width + 2}.4g}" if key in f else f"{'-':>{width + 2}}" for f in finals))
    if args.out:
        plots.save(plots.compare_curves(histories, names, args.metric), Path(args.out))
        print(f"wrote {args.metric} curves to {args.out}")
    return 0


SUBCOMMANDS: Dict[str, Subcommand] = {
    "train": Subcommand("train a model; writes a run folder", _train_arguments, _train),
    "evaluate": Subcommand("test ELBO, log-likelihood and latent use of a run",
                           _evaluate_arguments, _evaluate),
    "sample": Subcommand("images decoded from prior samples (of one class with --label)",
                         _sample_arguments, _sample),
    "reconstruct": Subcommand("test inputs beside their reconstructions (PNG)",
                              _reconstruct_arguments, _reconstruct),
    "compare": Subcommand("runs' differing settings and final metrics side by side, "
                          "and their curves on one figure", _compare_arguments, _compare),
    **{name: text.images_only(name, command) for name, command in
       {**explore.SUBCOMMANDS, **figures.SUBCOMMANDS, **score.SUBCOMMANDS}.items()},
    "interpolate": text.text_or_images(
        explore.SUBCOMMANDS["interpolate"], "decode the latent path between two test images "
        "(two sentences, --from \"...\" --to \"...\", for a text model)"),
}


def build_parser(model: str = "vae") -> argparse.ArgumentParser:
    """The parser; ``train`` gets the flags of ``model``'s config."""
    parser = Parser(prog="pyro-vae", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pyro-vae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name == "train":
            command.add_arguments(p, model)
        else:
            command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def _model_named(argv: List[str]) -> str:
    """The model a ``train`` command line names (``--model``, or its ``--resume`` run's)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg == "--model" and i + 1 < len(argv):
            return argv[i + 1]
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            try:
                return runs.read_config(argv[i + 1]).get("model", "vae")
            except (OSError, ValueError):
                return "vae"  # train() names the problem with the run folder
    return "vae"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The library's log lines on stderr while this command runs, and only then.
    handler, root = logging.StreamHandler(sys.stderr), logging.getLogger()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        return _main(argv)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _main(argv: List[str]) -> int:
    # M2's labelled batches have no site to enumerate, which TraceEnum_ELBO reports.
    warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
    try:
        args = build_parser(_model_named(argv)).parse_args(argv)
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
