"""Two processes with gloo reach the parameters of one process stepping on both batches."""

import socket
import subprocess
import sys
import textwrap

import pytest
import torch

# Each script ends in finish(): once every rank has left the group and rank 0 has saved,
# the process exits without the interpreter's finalisers, where a C++ thread still alive
# (gloo's, the store's) aborts a process ("terminate called without an active exception",
# seen once on a loaded two-core machine); what these tests check is what the ranks
# computed, which is on disk by then.
FINISH = textwrap.dedent('''
    import os as _os, sys as _sys

    def finish():
        _sys.stdout.flush()
        _sys.stderr.flush()
        _os._exit(0)
''')

SCRIPT = FINISH + textwrap.dedent('''
    import sys
    import pyro, pyro.distributions as dist, torch
    import torch.distributed
    from torch import nn
    from pyro_vae import VAE, fit
    from pyro_vae.distributed import leave

    class PointMass(nn.Module):
        """q(z|x) = delta(z - encoder(x)): a deterministic guide, so the loss is too."""
        def __init__(self, z_dim):
            super().__init__()
            self.num_params = z_dim
        def forward(self, params):
            return dist.Delta(params, event_dim=1)
        def loc(self, params):
            return params

    distributed = sys.argv[1] == "ddp"
    batch_size = int(sys.argv[2])
    torch.set_num_threads(1)
    if distributed:
        torch.distributed.init_process_group("gloo")
    pyro.set_rng_seed(0)
    x = torch.rand(96, 1, 4, 4)
    pyro.set_rng_seed(1)
    vae = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(8,), guide=PointMass(2))
    def policy(data, generator):  # a batching policy: the random order in batch_size slices
        order = torch.randperm(len(data[0]), generator=generator)
        return [tuple(t[i] for t in data) for i in order.split(batch_size)]

    history = fit(vae.model, vae.guide, x, epochs=2, batch_size=batch_size, lr=0.01, seed=3,
                  distributed=distributed, batches=policy if "policy" in sys.argv else None)
    if not distributed or torch.distributed.get_rank() == 0:
        torch.save({"params": vae.state_dict(), "loss": history[-1]["train_loss"]}, sys.argv[3])
    leave()  # every rank waits for the others before the group goes
    finish()
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_and_two_ranks(source: str, tmp_path, *flags):
    """What ``source`` saves run as one process on batches of 16 and as two gloo ranks
    on batches of 8 each (``flags`` passed to both)."""
    script = tmp_path / "train.py"
    script.write_text(source)
    run = dict(capture_output=True, text=True, timeout=240)
    single = subprocess.run([sys.executable, str(script), "one", "16", str(tmp_path / "one.pt"),
                             *flags], **run)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         str(script), "ddp", "8", str(tmp_path / "ddp.pt"), *flags], **run)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "ddp.pt")


@pytest.mark.parametrize("flags", [(), ("policy",)], ids=["own-order", "batching-policy"])
def test_two_gloo_ranks_match_one_process_with_the_combined_batch(tmp_path, flags):
    # with a batching policy, rank r steps on the policy's batches r, r + 2, ...: batches
    # 2i and 2i + 1 of 8 are the single process's batch i of 16
    one, two = one_and_two_ranks(SCRIPT, tmp_path, *flags)
    # 2 epochs x 6 steps: each rank steps on 8 images, the single process on 16
    for name, value in one["params"].items():
        torch.testing.assert_close(two["params"][name], value, rtol=1e-4, atol=1e-5)
    # the reported loss is the combined batch's, not the world-size-scaled one
    assert abs(one["loss"] - two["loss"]) < 1e-3 * abs(one["loss"])


VQ_SCRIPT = FINISH + textwrap.dedent('''
    import sys
    import pyro, torch
    import torch.distributed
    from pyro_vae import fit
    from pyro_vae.models import VQVAE
    from pyro_vae.distributed import leave

    distributed = sys.argv[1] == "ddp"
    torch.set_num_threads(1)
    if distributed:
        torch.distributed.init_process_group("gloo")
    pyro.set_rng_seed(0)
    x = torch.rand(64, 1, 6, 6)
    pyro.set_rng_seed(1)
    vq = VQVAE((1, 6, 6), num_codes=8, code_dim=4, channels=(4, 8), prior_width=8,
               prior_layers=1, dead_after=0, prior_alongside=False)
    fit(vq.model, vq.guide, x, epochs=2, batch_size=int(sys.argv[2]), lr=0.01, seed=3,
        distributed=distributed)
    if not distributed or torch.distributed.get_rank() == 0:
        torch.save(vq.state_dict(), sys.argv[3])
    leave()
    finish()
''')


@pytest.mark.slow
def test_the_vq_vae_codebook_under_two_ranks_follows_the_combined_batch(tmp_path):
    """The EMA statistics are summed over ranks: two ranks of 8 images reach the codebook
    (and the networks) of one process stepping on 16."""
    one, two = one_and_two_ranks(VQ_SCRIPT, tmp_path)
    for name in ("codebook", "ema_count", "ema_sum", "idle"):
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-4)


def test_each_rank_takes_every_other_batch_of_a_policy_padded_by_wrapping():
    from pyro_vae.distributed import BatchShard

    batches = ["b0", "b1", "b2", "b3", "b4"]
    assert list(BatchShard(batches, 0, 2)) == ["b0", "b2", "b4"]
    assert list(BatchShard(batches, 1, 2)) == ["b1", "b3", "b0"]
    assert list(BatchShard(batches, 0, 1)) == batches
