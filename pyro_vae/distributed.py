"""Data-parallel SVI on ``torch.distributed``: DDP over the ELBO, gloo on CPU, NCCL on GPU.

Each of ``W`` processes (ranks) holds a replica of the networks and, every epoch, its
own shard of one shared random order of the data (``DistributedSampler`` semantics:
the order is padded by wrapping to a multiple of ``W`` and rank ``r`` takes positions
``r, r + W, r + 2W, ...``; the order changes every epoch like ``set_epoch``). With a
batching policy (the sentence VAE's buckets of similar length), every rank draws the
epoch's batches alike and takes every ``W``-th of them (:class:`BatchShard`), so one
step of the ``W`` ranks covers ``W`` of the policy's batches.

Each rank's loss is its shard's negative ELBO times ``W``, so the average that DDP
takes of the ranks' gradients is the gradient of the whole combined batch: the same
update as one process stepping on all ``W`` batches at once. Rank 0 alone logs and
writes the run folder.

Launch with ``torchrun --nproc_per_node N -m pyro_vae train ...``; the environment
that torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) is
read by :func:`init_from_env`.
"""

import os
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pyro.infer import ELBO

from .steps import ELBOLoss, FusedStep


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) with W > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group described by the environment; return this rank's device.

    gloo on the CPU, NCCL on CUDA, where each rank takes GPU ``LOCAL_RANK``.
    """
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def leave() -> None:
    """Leave the process group once every rank is done (a barrier, then
    ``destroy_process_group``), so that no rank exits while gloo's threads still serve
    another: a process that exits with them alive aborts."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s positions of ``order``, padded by wrapping to a multiple of ``world``."""
    pad = (-len(order)) % world
    if pad:
        order = torch.cat([order, order[:pad]])
    return order[rank::world]


class BatchShard(Sequence):
    """Rank ``rank``'s batches of an epoch that a batching policy drew (every rank draws
    the same ones from the same generator state): batches ``rank, rank + W, ...`` of the
    list padded by wrapping to a multiple of ``W``, so every rank takes as many steps and
    step ``i`` of the ``W`` ranks together is the policy's batches ``i W`` to ``i W + W - 1``."""

    def __init__(self, batches: Sequence, rank: int, world: int):
        self.batches = batches
        self.positions = shard(torch.arange(len(batches)), rank, world).tolist()

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.batches[self.positions[i]]


def ddp_step(
    module: nn.Module, model: Callable, guide: Callable, elbo: ELBO, lr: float,
    clip_norm: Optional[float] = None, optimizer: Optional[Callable] = None,
) -> FusedStep:
    """A :class:`~pyro_vae.steps.FusedStep` whose loss runs through DDP.

    The loss is scaled by the world size so that DDP's average of gradients is the
    gradient of the combined batch; the step reports the rank's own, unscaled loss.
    """
    device = module_device(module)
    scale = float(world_size())
    wrapped = ELBOLoss(module, model, guide, elbo, scale=scale)
    trained = {id(p) for _, p in getattr(module, "svi_parameters", module.named_parameters)()}
    others = [f"module.{name}" for name, p in module.named_parameters() if id(p) not in trained]
    if others:  # those of a model's extra steps or phases: no gradient from the ELBO
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapped, others)
    loss = DistributedDataParallel(wrapped, device_ids=[device] if device.type == "cuda" else None)
    return FusedStep(model, guide, elbo, lr=lr, clip_norm=clip_norm, optimizer=optimizer,
                     loss=loss, loss_scale=scale)


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over ranks (itself when not distributed)."""
    if world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value
