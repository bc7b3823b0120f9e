"""Training speed of pyro_vae against a plain PyTorch VAE, in one process and one run.

    python benchmarks/speed.py                                  # mnist-10k, batch 32/128/512
    python benchmarks/speed.py --dataset fashion-mnist --batch-sizes 128 --repeats 3
    python benchmarks/speed.py --hidden 16 --z-dim 4 --batch-sizes 32 --threads 1
    python benchmarks/speed.py --net conv --batch-sizes 128          # the convolutional networks
    make bench-speed

Every row trains the same network (784-400-50 by default; ``--hidden 16 --z-dim 4`` makes
the arithmetic negligible, so that the host's per-step work sets the pace, as on a GPU)
with ReLU, a Bernoulli likelihood, the closed-form Gaussian KL and Adam 1e-3, on data
resident on the device, batched by index. ``--net conv`` trains the library's
convolutional encoder and decoder instead (``pyro_vae.nets.ConvEncoder``/``ConvDecoder``,
plain ``torch.nn`` modules, MLP head of ``--hidden``), the plain rows on the same modules:

* ``plain``: a VAE written in plain PyTorch below (the pytorch/examples model) with
  ``torch.optim.Adam``'s defaults, the reference as a user writes it;
* ``plain+f``: the same with ``Adam(fused=True)``, the kernel the library's steps use;
* ``svi``: ``pyro_vae.fit(..., step="svi")``, Pyro's ``SVI.step`` with ``pyro.optim.Adam``;
* ``fused``: ``pyro_vae.fit(..., step="fused")``: the same loss and gradients, one fused
  Adam, validation after the first step off;
* ``compiled``: ``pyro_vae.fit(...)``'s default for this model, the fused step on the
  loss captured once per shape (``pyro_vae/compiled.py``);
* ``jit``: Pyro's ``JitTraceMeanField_ELBO`` through ``SVI`` (``--jit``).

Library rows run ``fit`` for one epoch per repeat, through its whole training loop; the
model's captured graphs serve every repeat, as they serve every epoch of one run. Each
repeat is one epoch; variants take turns, so slow drifts of the machine hit all of them
alike. The table gives medians; ``ratio`` is epoch time over ``plain``'s, ``ratio+f``
over ``plain+f``'s.
"""

import argparse
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import pyro

from pyro_vae import VAE, fit, load_dataset
from pyro_vae.data import batch_indices
from pyro_vae.nets import make_decoder, make_encoder


class PlainVAE(nn.Module):
    """The reference: encoder 784-400-(50, 50), decoder 50-400-784, as in pytorch/examples;
    with ``net="conv"``, the library's convolutional modules (plain ``torch.nn``)."""

    def __init__(self, x_dim=784, hidden=400, z_dim=50, net="mlp", x_shape=(1, 28, 28)):
        super().__init__()
        if net == "conv":
            self.encoder = make_encoder("conv", x_shape, 2 * z_dim, (hidden,))
            self.decoder = make_decoder("conv", z_dim, x_shape, 1, (hidden,))
        else:
            self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(),
                                         nn.Linear(hidden, 2 * z_dim))
            self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(),
                                         nn.Linear(hidden, x_dim))
        self.net = net

    def forward(self, x):
        x = x if self.net == "conv" else x.flatten(1)
        mu, log_var = self.encoder(x).chunk(2, -1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        logits = self.decoder(z).reshape(x.shape)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp())
        return recon + kl


def plain_epoch(model, optimizer, x, batch_size, generator):
    total = torch.zeros((), device=x.device)
    for idx in batch_indices(len(x), batch_size, generator):
        optimizer.zero_grad()
        loss = model(x[idx.to(x.device)])
        loss.backward()
        optimizer.step()
        total += loss.detach()
    return total.item()


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{cpu}{gpu}; torch {torch.__version__}, pyro {pyro.__version__}, "
            f"{torch.get_num_threads()} CPU threads")


def make_variants(x, batch_size, device, jit, hidden=400, z_dim=50, net="mlp"):
    """name -> callable running one epoch and returning its wall time."""
    variants = {}
    torch.manual_seed(0)
    for name, fused in (("plain", False), ("plain+f", True)):
        plain = PlainVAE(hidden=hidden, z_dim=z_dim, net=net, x_shape=x.shape[1:]).to(device)
        options = {"fused": True} if fused else {}
        optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3, **options)
        variants[name] = plain_runner(plain, optimizer, x, batch_size, device)
    steps = {"svi": ("svi", "TraceMeanField_ELBO"), "fused": ("fused", "TraceMeanField_ELBO"),
             "compiled": (None, "TraceMeanField_ELBO")}
    if jit:
        steps["jit"] = ("svi", pyro.infer.JitTraceMeanField_ELBO())
    for name, (step, elbo) in steps.items():
        vae = VAE(x_shape=x.shape[1:], z_dim=z_dim, hidden=(hidden,), net=net).to(device)
        variants[name] = epoch_runner(vae, name, step, elbo, x, batch_size, device)
    return variants


def plain_runner(plain, optimizer, x, batch_size, device):
    generator = torch.Generator().manual_seed(0)

    def run():
        sync(device)
        t0 = time.perf_counter()
        plain_epoch(plain, optimizer, x, batch_size, generator)
        sync(device)
        return time.perf_counter() - t0

    return run


def epoch_runner(vae, name, step, elbo, x, batch_size, device):
    def run():
        # Variants share parameter names: each epoch starts from an empty param store,
        # which its VAE's pyro.module calls fill with that VAE's own networks.
        pyro.clear_param_store()
        history = fit(vae.model, vae.guide, x, epochs=1, batch_size=batch_size,
                      elbo=elbo, step=step, seed=None)
        return history[-1]["epoch_s"]

    return run


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--repeats", type=int, default=5, help="epochs per variant (median)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (fixed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jit", action="store_true", help="add Pyro's JitTraceMeanField_ELBO")
    parser.add_argument("--hidden", type=int, default=400, help="hidden units of each network")
    parser.add_argument("--z-dim", type=int, default=50, help="latent dimensions")
    parser.add_argument("--net", default="mlp", choices=("mlp", "conv"),
                        help="mlp (784-hidden-z) or the library's conv networks")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = load_dataset(args.dataset).x_train.to(device)
    print(f"# {machine(device)}")
    shape = (f"784-{args.hidden}-{args.z_dim}" if args.net == "mlp"
             else f"conv 32,64 + {args.hidden}, z {args.z_dim}")
    print(f"# {args.dataset}: {len(x)} training images on {device}; {shape}; "
          f"median of {args.repeats} epochs")
    print(f"{'batch':>5} {'variant':<8} {'epoch s':>8} {'ms/step':>8} {'images/s':>9} "
          f"{'ratio':>6} {'ratio+f':>7} {'RSS MiB':>8} {'peak MiB':>9}")
    for batch_size in map(int, args.batch_sizes.split(",")):
        pyro.clear_param_store()
        variants = make_variants(x, batch_size, device, args.jit, args.hidden, args.z_dim,
                                 args.net)
        times = {name: [] for name in variants}
        for name, run in variants.items():  # warm-up epoch: allocations, first-step checks
            run()
        for _ in range(args.repeats):
            for name, run in variants.items():
                times[name].append(run())
        steps = -(-len(x) // batch_size)
        reference = statistics.median(times["plain"])
        fused_reference = statistics.median(times["plain+f"])
        for name, values in times.items():
            epoch_s = statistics.median(values)
            print(f"{batch_size:>5} {name:<8} {epoch_s:>8.3f} {1e3 * epoch_s / steps:>8.2f} "
                  f"{len(x) / epoch_s:>9.0f} {epoch_s / reference:>6.2f} "
                  f"{epoch_s / fused_reference:>7.2f} {rss_mib():>8.0f} {peak_rss_mib():>9.0f}")


if __name__ == "__main__":
    main()
