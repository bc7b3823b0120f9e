"""beta-VAE on MNIST: the rate-distortion trade-off and what beta does to the latents.

Trains one VAE per beta (Higgins et al. 2017: the KL term of the ELBO weighted by
beta, ``poutine.scale`` on the site "z" in model and guide), then writes

* ``tradeoff.png``: test reconstruction term E[-log p(x|z)] against the test KL term
  KL(q(z|x) || p(z)), one point per beta (both measured at beta = 1);
* ``traversal_beta<b>.png``: for the smallest and largest beta, the decoded images as
  each of the most informative latent dimensions (largest mean KL) sweeps from -3 to
  3 with the others at the posterior mean of one test image;
* ``results.json``: the measured terms per beta.

Usage::

    python examples/beta_vae.py --out runs/beta-vae            # about 5 min on one core
    python examples/beta_vae.py --epochs 1 --num-train 500 --betas 0.5 4   # smoke test
"""

import argparse
import json
from pathlib import Path

import torch
from torch.distributions import kl_divergence

import pyro

from pyro_vae import VAE, elbo_terms, fit, load_dataset
from pyro_vae import plots


@torch.no_grad()
def kl_per_dim(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """Mean over ``x`` of KL(q(z_d | x) || p(z_d)) for each latent dimension d: ``[z_dim]``."""
    q = vae.posterior(vae.encoder(x)).base_dist
    return kl_divergence(q, vae.prior().base_dist).mean(0)


@torch.no_grad()
def active_units(vae: VAE, x: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies over ``x``: Var_x(E_q[z_d]) > 0.01
    (Burda et al. 2015)."""
    return int((vae.encode(x).var(0) > threshold).sum())


@torch.no_grad()
def traversal(vae: VAE, x: torch.Tensor, dims, values) -> torch.Tensor:
    """Decoded images ``[len(dims), len(values), C, H, W]``: the code of ``x: [1, C, H, W]``
    with dimension ``dims[i]`` set to each of ``values``."""
    z = vae.encode(x)[0]
    codes = z.repeat(len(dims), len(values), 1)
    for i, d in enumerate(dims):
        codes[i, :, d] = torch.as_tensor(values, dtype=z.dtype)
    return vae.decode(codes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--z-dim", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None, help="first N training images")
    parser.add_argument("--traversal-dims", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/beta-vae")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_dataset("mnist-10k")
    x_train = data.x_train[: args.num_train]
    results, models = [], {}
    for beta in args.betas:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        vae = VAE(data.x_shape, z_dim=args.z_dim, beta=beta)
        fit(vae.model, vae.guide, x_train, epochs=args.epochs, seed=args.seed)
        vae.eval()
        terms = elbo_terms(vae.model, vae.guide, data.x_test)  # beta = 1 terms
        results.append({"beta": beta, "recon": terms["recon"], "kl": terms["kl"],
                        "test_loss": terms["test_loss"],
                        "active_units": active_units(vae, data.x_test)})
        models[beta] = vae
        print(f"beta {beta:g}: recon {terms['recon']:.1f}  kl {terms['kl']:.1f} nats/image  "
              f"active units {results[-1]['active_units']}/{args.z_dim}", flush=True)

    plots.save(plots.rate_distortion(results, f"beta-VAE on mnist-10k, z_dim {args.z_dim}"),
               out / "tradeoff.png")
    values = torch.linspace(-3, 3, 9).tolist()
    x = data.x_test[:1]
    for beta in sorted({min(args.betas), max(args.betas)}):
        vae = models[beta]
        dims = kl_per_dim(vae, data.x_test).argsort(descending=True)[: args.traversal_dims].tolist()
        figure = plots.latent_traversal(traversal(vae, x, dims, values), dims, values,
                                        title=f"beta = {beta:g}: one latent varied per row")
        plots.save(figure, out / f"traversal_beta{beta:g}.png")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| beta | recon E[-log p(x|z)] | KL | -ELBO (beta = 1) | active units |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['beta']:g} | {r['recon']:.1f} | {r['kl']:.1f} | {r['test_loss']:.1f} | "
              f"{r['active_units']}/{args.z_dim} |")
    print(f"figures and results in {out}")


if __name__ == "__main__":
    main()
