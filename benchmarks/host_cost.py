"""Per-step host cost: a network so small that the arithmetic is negligible.

    OMP_NUM_THREADS=1 python benchmarks/host_cost.py             # 784-16-4, batch 32
    OMP_NUM_THREADS=1 python benchmarks/host_cost.py --hidden 400 --z-dim 50 --batch-size 128

Rows, each the same VAE (Bernoulli likelihood, closed-form Gaussian KL, Adam 1e-3) on
the same batches of mnist-10k, every step ending in ``loss.item()``:

* ``plain``: the VAE written in plain PyTorch with fused Adam, the reference;
* ``fused``: ``pyro_vae``'s ``FusedStep`` (Pyro's ``TraceMeanField_ELBO.differentiable_loss``);
* ``compiled``: the same step on the loss captured once per shape (:mod:`pyro_vae.compiled`),
  replayed through TorchScript's interpreter;
* ``compiled+backend``: with ``--backend inductor``, each captured graph compiled too.

Variants take turns over ``--repeats`` rounds of ``--steps`` steps; the table gives the
median ms per step, its ratio to ``plain``, and for ``compiled`` the one-off capture time.
"""

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import pyro

from pyro_vae import VAE, load_dataset
from pyro_vae.infer import make_elbo
from pyro_vae.steps import FusedStep, compiled_step, torch_optimizer


class PlainVAE(nn.Module):
    """784-h-(z, z) encoder, z-h-784 decoder, as in pytorch/examples' VAE."""

    def __init__(self, hidden: int, z_dim: int):
        super().__init__()
        self.enc, self.mu, self.logvar = nn.Linear(784, hidden), nn.Linear(hidden, z_dim), \
            nn.Linear(hidden, z_dim)
        self.dec1, self.dec2 = nn.Linear(z_dim, hidden), nn.Linear(hidden, 784)

    def loss(self, x):
        h = F.relu(self.enc(x.flatten(1)))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.dec2(F.relu(self.dec1(z)))
        recon = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum")
        return recon - 0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()


def plain_step(args):
    net = PlainVAE(args.hidden, args.z_dim)
    optim = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)

    def step(x):
        optim.zero_grad(set_to_none=True)
        loss = net.loss(x)
        loss.backward()
        optim.step()
        return loss.item()

    return step


def library_step(kind: str, args):
    vae = VAE((1, 28, 28), z_dim=args.z_dim, hidden=(args.hidden,))
    elbo, optimizer = make_elbo("TraceMeanField_ELBO"), torch_optimizer("adam", 1e-3)
    if kind == "fused":
        return FusedStep(vae.model, vae.guide, elbo, optimizer=optimizer)
    backend = args.backend if kind == "compiled+backend" else None
    # capture_after=0: the second step captures, so that its cost can be timed alone
    return compiled_step(vae.model, vae.guide, elbo, backend=backend, optimizer=optimizer,
                         capture_after=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--z-dim", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", help="also a row compiled with this torch.compile backend "
                   "(e.g. inductor; its compile time is reported)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    x = load_dataset("mnist-10k").x_train[: args.batch_size * args.steps]
    batches = list(x.split(args.batch_size))[: args.steps]
    steps = {"plain": plain_step(args), "fused": library_step("fused", args),
             "compiled": library_step("compiled", args)}
    if args.backend:
        steps["compiled+backend"] = library_step("compiled+backend", args)
    capture_s = {}
    for name in [n for n in steps if n.startswith("compiled")]:
        t0 = time.perf_counter()
        for _ in range(2):  # the first step validates; the second captures the graph
            steps[name](batches[0])
        capture_s[name] = time.perf_counter() - t0
    for step in steps.values():  # warm-up: first-call costs out of the timings
        for b in batches[:20]:
            step(b)
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t = time.perf_counter()
            for b in batches:
                step(b)
            times[name].append((time.perf_counter() - t) / len(batches) * 1e3)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s); 784-{args.hidden}-{args.z_dim}, batch {args.batch_size}, "
          f"median of {args.repeats} x {len(batches)} steps")
    print("| step | ms/step | ratio to plain |")
    print("| --- | --- | --- |")
    plain = statistics.median(times["plain"])
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {statistics.median(ts) / plain:.2f} |")
    for name, seconds in capture_s.items():
        print(f"{name}: first two steps (validate, capture) {seconds:.2f} s")


if __name__ == "__main__":
    main()
