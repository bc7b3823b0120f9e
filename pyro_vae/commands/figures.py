"""`pyro-vae figures`: the six figures of the VAE story in one folder (:mod:`pyro_vae.figures`)."""

import argparse
from typing import Any, Dict, List

from . import Subcommand


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the six PNGs and figures.json; runs trained for the "
                   "figures are kept in DIR/runs and reused by the next call")
    p.add_argument("--run", dest="run_dirs", nargs="+", action="extend", default=[],
                   metavar="RUN_DIR", help="runs to draw from: a 2-D VAE (figures 1, 2, 4), "
                   "an --guide iaf run (3), runs alike but for --beta (5); every one "
                   "given is drawn in the training curves (6); what is missing is trained")
    p.add_argument("--image", type=int, default=0,
                   help="test image of figures 1, 2 and 4 (default: 0)")
    p.add_argument("--num-images", type=int, default=500,
                   help="test images of the ELBO decomposition (default: 500)")
    p.add_argument("--iw-samples", type=int, default=1000, metavar="K",
                   help="importance samples per image for log p(x) (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: half the cores)")


def _run(args: argparse.Namespace) -> int:
    import torch

    from .. import figures, runs

    for name in ("num_images", "iw_samples", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    # As for `train`: torch's default of every core spins on a busy machine.
    torch.set_num_threads(args.threads or runs.default_threads())
    numbers = figures.write_all(args.out, args.run_dirs, image=args.image,
                                num_images=args.num_images, iw_samples=args.iw_samples,
                                seed=args.seed)
    print("\n".join(summary(numbers)))
    print(f"figures in {args.out}: " + ", ".join(figures.FILES.values()) + ", figures.json")
    return 0


def summary(numbers: Dict[str, Any]) -> List[str]:
    """The numbers of the six figures as lines of text."""
    kl, grads = numbers["kl_divergence_2d"], numbers["reparameterization"]
    lines = [f"1 KL(q||p), test image {kl['image']}: closed form {kl['kl_closed_form']:.4f}, "
             f"Monte Carlo {kl['kl_monte_carlo']:.4f} ± {kl['kl_monte_carlo_stderr']:.4f} "
             f"(S = {kl['num_samples']})",
             f"2 gradient variance over {grads['num_draws']} draws "
             f"({', '.join(grads['parameters'])}): reparameterised "
             + " ".join(f"{v:.3g}" for v in grads["reparameterised"]["variance"])
             + "; score function "
             + " ".join(f"{v:.3g}" for v in grads["score_function"]["variance"])]
    decomposition = numbers["elbo_decomposition"]
    for name, terms in decomposition.items():
        if isinstance(terms, dict) and "mean_difference" in terms:
            lines.append(f"3 {name}: {terms['mean_difference']:.2f} ± "
                         f"{terms['mean_difference_stderr']:.2f} nats, paired over the images")
        elif isinstance(terms, dict):
            lines.append(
                f"3 {name}: log p(x) {terms['mean_log_px']:.2f}, ELBO {terms['mean_elbo']:.2f}, "
                f"gap {terms['mean_gap']:.2f} ± {terms['mean_gap_stderr']:.2f} nats "
                f"({decomposition['num_images']} test images, K = {decomposition['num_samples']})")
    path = numbers["latent_interpolation"]
    lines.append(f"4 path from test image {path['images'][0]} {_pair(path['z_from'])} to "
                 f"{path['images'][1]} {_pair(path['z_to'])}, {path['steps']} steps")
    for p in numbers["beta_vae_tradeoff"]["points"]:
        lines.append(f"5 beta {p['beta']:g}: recon {p['recon']:.2f}, KL {p['kl']:.2f}, "
                     f"-ELBO {p['test_loss']:.2f} nats")
    for name, curve in numbers["training_curves"].items():
        last = {k: v[-1] for k, v in curve.items() if isinstance(v, list) and v}
        shown = [k for k in ("recon", "kl", "test_accuracy") if last.get(k) is not None]
        lines.append(f"6 {name}: epoch {last.get('epoch')}: "
                     + ", ".join(f"{k} {last[k]:.4g}" for k in shown))
    return lines


def _pair(z) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in z) + ")"


SUBCOMMANDS = {
    "figures": Subcommand("the six figures of the VAE story (PNG) and their numbers (JSON), "
                          "training small runs where none is given", _arguments, _run),
}
