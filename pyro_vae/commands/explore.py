"""`pyro-vae encode`, `interpolate`, `traverse`, `latent-map` and `complete`: a trained
run's latent space, through :mod:`pyro_vae.explore`.

Each figure ``F.png`` comes with its numbers beside it: ``F.npy`` (the decoded images,
``[..., C, H, W]`` in [0, 1]) or ``F.npz``. A run trained on another VAE's codes
(``--features``) has its decodes drawn through that VAE, as ``pyro-vae sample`` does.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from .. import explore, plots, runs
from ..evaluate import latent_statistics
from . import Subcommand, load_run, run_arguments, test_data


def _data_arguments(p: argparse.ArgumentParser, what: str) -> None:
    run_arguments(p)
    p.add_argument("--data", metavar="NAME|PATH", help=f"{what} this data set's test split "
                   "instead of the run's")


def _figure_path(args: argparse.Namespace, default: str) -> Path:
    out = Path(args.out or Path(args.run_dir) / default)
    if out.suffix != ".png":
        raise ValueError(f"out: expected a file ending in .png, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _images(run: runs.Run):
    """What maps the model's decodes to images: identity, or a stacked run's VAE."""
    return runs.image_decoder(run.config, next(run.model.parameters()).device) or (lambda v: v)


def _labels(run: runs.Run, y: torch.Tensor):
    """The test labels where the model reads labels (as `reconstruct` passes them)."""
    return y if run.model.uses_labels else None


def _check_label(run: runs.Run, label) -> None:
    if label is not None and not run.model.uses_labels:
        raise ValueError(f"label: model {run.config.model!r} is not conditioned on a label; "
                         "train a cvae or m2")
    if label is not None and not 0 <= label < run.model.num_classes:
        raise ValueError(f"label: expected a class in [0, {run.model.num_classes}), got {label}")


def _save_images(figure, images: torch.Tensor, out: Path) -> None:
    plots.save(figure, out)
    np.save(out.with_suffix(".npy"), images.detach().cpu().numpy())
    print(f"wrote {out} and {out.with_suffix('.npy')}")


# ------------------------------------------------------------------- encode
def _encode_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p, "encode")
    p.add_argument("--out", required=True, help="FILE.npz: mean [N, D], scale [N, D], label [N]")
    p.add_argument("--num-images", type=int, metavar="N", help="first N test images (default: all)")
    p.add_argument("--batch-size", type=int, default=1000)


def _encode(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"out: expected a file ending in .npz, got {out.name!r}")
    run = load_run(args)
    x, y = test_data(run, args)
    torch.manual_seed(args.seed)
    codes = explore.encode(run.model, x, y, batch_size=args.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **codes)
    print(f"wrote the posteriors of {len(x)} test images to {out}")
    return 0


# -------------------------------------------------------------- interpolate
def _interpolate_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p, "interpolate between")
    p.add_argument("--from", dest="start", type=int, required=True, metavar="I",
                   help="index of the first test image")
    p.add_argument("--to", dest="end", type=int, required=True, metavar="J",
                   help="index of the last test image")
    p.add_argument("--steps", type=int, default=10, help="codes on the path (default: 10)")
    p.add_argument("--path", default="linear", help="linear or slerp (default: linear)")
    p.add_argument("--plane", default="pca", help="the figure's plane when z_dim > 2: pca "
                   "(of the test codes) or endpoints (through 0 and both ends; default: pca)")
    p.add_argument("--out", help="FILE.png, and FILE.npy of the decodes "
                   "(default: RUN_DIR/interpolation.png)")


def _index(flag: str, value: int, size: int) -> int:
    if not 0 <= value < size:
        raise ValueError(f"{flag}: expected a test-set index in [0, {size}), got {value}")
    return value


def _interpolate(args: argparse.Namespace) -> int:
    if args.plane not in ("pca", "endpoints"):
        raise ValueError(f"plane: expected pca or endpoints, got {args.plane!r}")
    out = _figure_path(args, "interpolation.png")
    run = load_run(args)
    model, (x, y) = run.model, test_data(run, args)
    i, j = _index("from", args.start, len(x)), _index("to", args.end, len(x))
    labels = _labels(run, y)
    path, decoded = explore.interpolate(model, x[i], x[j], args.steps, args.path,
                                        None if labels is None else labels[[i, j]])
    codes = torch.as_tensor(explore.encode(model, x[:2000], _labels(run, y[:2000]))["mean"])
    codes, dims = codes.flatten(1), math.prod(model.latent_shape)
    plane = (explore.endpoint_plane(path[0], path[-1]) if args.plane == "endpoints"
             and dims > 2 else explore.pca_plane(codes))
    torch.manual_seed(args.seed)
    prior = explore.prior_draws(model, 5000, None if labels is None else labels[i]).flatten(1)
    axes = ("z[0]", "z[1]") if dims <= 2 else (f"{args.plane} 1", f"{args.plane} 2")
    images = _images(run)(decoded)
    figure = plots.interpolation(
        explore.project(path, plane), images, explore.project(prior, plane),
        explore.project(codes, plane), axes, f"{args.path} path from test image {i} to {j}")
    _save_images(figure, images, out)
    return 0


# ----------------------------------------------------------------- traverse
def _int_list(text: str):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 0,3,5, got {text!r}") from None


def _traverse_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p, "rank dimensions and pick --item from")
    p.add_argument("--dims", type=_int_list, help="dimensions, e.g. 0,3,5 (default: the "
                   "--num-dims most used, by KL per dimension or activity)")
    p.add_argument("--num-dims", type=int, default=8, help="rows when --dims is not given")
    p.add_argument("--range", type=float, default=3.0, help="each row sets z[d] to values "
                   "in [-RANGE, RANGE] (default: 3)")
    p.add_argument("--steps", type=int, default=9, help="values per row (default: 9)")
    p.add_argument("--item", type=int, metavar="I", help="other dimensions at the posterior "
                   "mean of test image I (default: at 0)")
    p.add_argument("--label", type=int, help="class of a cvae or m2 (default: a block per class)")
    p.add_argument("--num-images", type=int, default=500, metavar="N",
                   help="test images that rank the dimensions (default: 500)")
    p.add_argument("--out", help="FILE.png and FILE.npy (default: RUN_DIR/traversal.png)")


def _traverse(args: argparse.Namespace) -> int:
    for flag in ("range", "steps", "num_dims", "num_images"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"{flag}: expected a positive number, got {getattr(args, flag)}")
    out = _figure_path(args, "traversal.png")
    run = load_run(args)
    model, (x, y) = run.model, test_data(run, args)
    _check_label(run, args.label)
    figure, images = TRAVERSALS[model.latent_kind](run, args, x, y)
    _save_images(figure, images, out)
    return 0


def _continuous_traversal(run, args, x, y):
    """Rows: the most used dimensions (or ``--dims``), each over [-range, range]."""
    model = run.model
    if args.dims is None:
        labelled = model.uses_labels and not model.semi_supervised  # as `evaluate` does
        stats = latent_statistics(model.model, model.guide, (x, y) if labelled else x)
        dims = explore.dimension_order(stats)[: args.num_dims]
    else:
        dims = args.dims
    z = torch.zeros(model.z_dim, device=x.device)
    if args.item is not None:
        i = _index("item", args.item, len(x))
        z = model.encode(x[i: i + 1], None if _labels(run, y) is None else y[i: i + 1])[0]
    values = torch.linspace(-args.range, args.range, args.steps).tolist()
    classes = ([args.label] if args.label is not None else range(model.num_classes)) \
        if model.uses_labels else [None]
    decode = _images(run)
    images = torch.stack([decode(explore.traverse(model, z, dims, values, k).flatten(0, 1))
                          .unflatten(0, (len(dims), len(values))) for k in classes])
    base = "zero" if args.item is None else f"test image {args.item}"
    title = f"latent traversals around {base}"
    if model.uses_labels:
        return plots.class_traversals(images, list(classes), dims, values, title), images
    return plots.latent_traversal(images[0], dims, values, title), images[0]


def _categorical_traversal(run, args, x, y):
    """Rows: the most used categorical latents (or ``--dims``), each set to its K classes
    in turn, around the most probable code of test image ``--item`` (default 0)."""
    model = run.model
    probs = model.encode(x[: args.num_images])
    latents = args.dims if args.dims is not None else \
        explore.categorical_order(probs)[: args.num_dims]
    i = _index("item", args.item or 0, len(x))
    z = torch.nn.functional.one_hot(model.encode(x[i: i + 1])[0].argmax(-1),
                                    probs.shape[-1]).to(probs)
    images = _images(run)(explore.traverse_categorical(model, z, latents).flatten(0, 1))
    images = images.unflatten(0, (len(latents), probs.shape[-1]))
    title = f"categorical traversals around test image {i} (columns: classes 0..K-1)"
    figure = plots.labelled_rows(images, [f"z[{n}]" for n in latents], title=title)
    return figure, images


TRAVERSALS = {"continuous": _continuous_traversal, "categorical": _categorical_traversal}
"""How ``traverse`` varies a code, by the model's ``latent_kind``."""


# --------------------------------------------------------------- latent-map
def _latent_map_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p, "map")
    p.add_argument("--num-images", type=int, default=1000, metavar="N",
                   help="test images mapped (default: 1000)")
    p.add_argument("--grid", type=int, default=15, help="rows and columns of the manifold "
                   "grid, for a 2-D latent space (default: 15)")
    p.add_argument("--label", type=int, help="class of the manifold grid of a cvae or m2 "
                   "(default: 0)")
    p.add_argument("--out", help="FILE.png and FILE.npz of the coordinates; FILE_manifold.png "
                   "and .npy for a 2-D latent space (default: RUN_DIR/latent_map.png)")


def _latent_map(args: argparse.Namespace) -> int:
    if args.grid < 2 or args.num_images < 2:
        raise ValueError(f"{'grid' if args.grid < 2 else 'num_images'}: expected at least 2")
    out = _figure_path(args, "latent_map.png")
    run = load_run(args)
    model, (x, y) = run.model, test_data(run, args)
    _check_label(run, args.label)
    codes = torch.as_tensor(explore.encode(model, x, _labels(run, y))["mean"]).flatten(1)
    two_d = model.latent_kind == "continuous" and tuple(model.latent_shape) == (2,)
    panels: Dict[str, np.ndarray] = (
        {"z": explore.embed(codes, "pca")} if codes.shape[1] <= 2 else
        {"pca": explore.embed(codes, "pca"), "tsne": explore.embed(codes, "tsne", args.seed)})
    plots.save(plots.latent_map(panels, y.cpu(), f"{len(x)} test codes by class"), out)
    np.savez(out.with_suffix(".npz"), label=y.cpu().numpy(), **panels)
    print(f"wrote {out} and {out.with_suffix('.npz')}")
    if two_d:
        torch.manual_seed(args.seed)
        label = (args.label or 0) if model.uses_labels else None
        _, grid = explore.manifold(model, args.grid, label)
        images = _images(run)(grid.flatten(0, 1))
        name = "prior quantiles decoded" + ("" if label is None else f", class {label}")
        _save_images(plots.image_grid(images, args.grid, name),
                     images.reshape(args.grid, args.grid, *images.shape[1:]),
                     out.with_name(out.stem + "_manifold.png"))
    return 0


# ----------------------------------------------------------------- complete
def _complete_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p, "complete")
    p.add_argument("--mask", default="top", help="hidden part: top, left or random (half "
                   "the pixels; default: top)")
    p.add_argument("--num", type=int, default=8, help="test images (default: 8)")
    p.add_argument("--samples", type=int, default=8, help="completions per image (default: 8)")
    p.add_argument("--particles", type=int, default=256, help="importance samples per "
                   "image (default: 256)")
    p.add_argument("--out", help="FILE.png, and FILE.npy of the completions [N, S, C, H, W] "
                   "(default: RUN_DIR/completions.png)")


def _complete(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ValueError(f"num: expected a positive integer, got {args.num}")
    out = _figure_path(args, "completions.png")
    run = load_run(args)
    if runs.image_decoder(run.config) is not None:
        raise ValueError("features: this run models another VAE's codes, not pixels; "
                         "complete images with that VAE's run")
    model, (x, y) = run.model, test_data(run, args)
    observed = explore.hide(x.shape[1:], args.mask, args.seed)
    torch.manual_seed(args.seed)
    result = explore.complete(model, x, observed, args.samples, args.particles, _labels(run, y))
    hidden = ~observed.to(x.device)
    error = (result["mean"] - x)[:, hidden].abs().mean().item()
    print(f"mean absolute error on the hidden pixels {error:.4f}; effective sample size "
          f"{result['ess'].mean().item():.1f} of {args.particles}", file=sys.stderr)
    title = f"completions of the {args.mask} half, importance sampling"
    _save_images(plots.completions(x, observed, result["samples"], title), result["samples"], out)
    return 0


SUBCOMMANDS = {
    "encode": Subcommand("posterior means and scales of the test images (.npz)",
                         _encode_arguments, _encode),
    "interpolate": Subcommand("decode the latent path between two test images",
                              _interpolate_arguments, _interpolate),
    "traverse": Subcommand("decode codes varied one latent dimension at a time",
                           _traverse_arguments, _traverse),
    "latent-map": Subcommand("the test codes by class (PCA, t-SNE) and the 2-D manifold",
                             _latent_map_arguments, _latent_map),
    "complete": Subcommand("fill in hidden pixels of test images by importance sampling",
                           _complete_arguments, _complete),
}
