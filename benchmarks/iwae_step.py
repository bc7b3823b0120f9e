"""Training on the importance-weighted bound: time per epoch of three ways to draw K particles.

    python benchmarks/iwae_step.py                       # vae and hvae, K = 5 and 10
    python benchmarks/iwae_step.py --models hvae --ks 10 --repeats 3
    make bench-iwae

Rows, each one epoch of ``fit`` over ``--images`` dynamically binarised mnist-10k digits
(batch 100, Adam 1e-3, one thread by default) on the same bound L_K:

* ``renyi``: Pyro's ``RenyiELBO(alpha=0, num_particles=K)``, the K draws one after
  another, through Pyro's ``SVI.step`` (it has no ``differentiable_loss``);
* ``renyi-vec``: the same with ``vectorize_particles=True``: one pass with a particle
  plate, for networks that broadcast over a leading dimension;
* ``iwae``: ``pyro_vae.iwae.IWAE`` (``--elbo IWAE``): the batch replicated K times along
  the ``"data"`` plate, one pass, through the fused step.

One untimed epoch of each variant on 200 digits comes first (one-off costs of first
calls); then variants take turns within each repeat; the table gives the median epoch time, its ratio
to ``renyi``'s, and the final training loss (-L_K per digit, the same bound each way).
"""

import argparse
import platform
import statistics
import time

import torch

import pyro
from pyro.infer import RenyiELBO

from pyro_vae import fit, load_dataset
from pyro_vae.data import binarize
from pyro_vae.iwae import IWAE
from pyro_vae.models import HVAE, VAE

MODELS = {
    "vae": lambda: VAE((1, 28, 28), z_dim=40, hidden=(300,)),
    "hvae": lambda: HVAE((1, 28, 28), z_dims=(40, 40), hidden=(300,), level_hidden=(300,),
                         norm="batch"),
}
VARIANTS = {
    "renyi": lambda k: RenyiELBO(alpha=0, num_particles=k),
    "renyi-vec": lambda k: RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True,
                                     max_plate_nesting=1),
    "iwae": lambda k: IWAE(num_particles=k),
}


def one_epoch(name, variant, k, x):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = MODELS[name]()
    t0 = time.perf_counter()
    history = fit(model.model, model.guide, x, epochs=1, batch_size=100, seed=0, device="cpu",
                  elbo=VARIANTS[variant](k), transform=lambda x, g: binarize(x, g),
                  progress=False)
    return time.perf_counter() - t0, history[-1]["train_loss"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = load_dataset("mnist-10k").x_train[: args.images]
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {machine}, {args.threads} "
          f"thread(s), {args.images} digits, batch 100, median of {args.repeats}\n")
    print("| model | K | variant | s / epoch | ratio to renyi | train -L_K |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for k in args.ks:
            times = {v: [] for v in VARIANTS}
            losses = {}
            for variant in VARIANTS:  # first calls pay one-off costs: not timed
                one_epoch(name, variant, k, x[:200])
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    seconds, losses[variant] = one_epoch(name, variant, k, x)
                    times[variant].append(seconds)
            reference = statistics.median(times["renyi"])
            for variant in VARIANTS:
                median = statistics.median(times[variant])
                print(f"| {name} | {k} | {variant} | {median:.2f} | {median / reference:.2f} "
                      f"| {losses[variant]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
