"""Plain ``torch.nn`` encoders and decoders. No Pyro calls live here.

Networks return distribution *parameters*; the objects in :mod:`pyro_vae.guides`
and :mod:`pyro_vae.likelihoods` turn those parameters into distributions, and
only a model or guide function calls ``pyro.sample``.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (a key of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return ACTIVATIONS[name]()


def mlp(
    in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "relu"
) -> nn.Sequential:
    """``Linear -> act`` for each hidden width, then a final ``Linear`` to ``out_dim``."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def _conditioned(net: nn.Sequential, h: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
    """``net(cat([h, y], -1))`` for inputs ``h: [..., D]`` and a one-hot label ``y: [..., K]``.

    The first layer is applied as ``W_h h + W_y y + b`` and the two terms broadcast, so
    an enumerated label ``[K, 1, K]`` meets a batch ``[B, D]`` (result ``[K, B, out]``)
    while ``W_h h`` is computed once, not once per label value as a concatenation would.
    """
    if y is None:
        raise ValueError("y: this network is conditioned on a one-hot label, got None")
    first, d = net[0], h.shape[-1]
    out = F.linear(h, first.weight[:, :d], first.bias) + F.linear(
        y.to(h.dtype), first.weight[:, d:]
    )
    return net[1:](out)


class Encoder(nn.Module):
    """Maps an image (and optionally a one-hot label) to ``out_dim`` guide parameters.

    ``x: [B, C, H, W]``, ``y: [B, num_classes]`` or ``None`` -> ``[B, out_dim]``.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        out_dim: int,
        hidden: Sequence[int] = (400,),
        act: str = "relu",
        cond_dim: int = 0,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.cond_dim = cond_dim
        self.net = mlp(math.prod(self.x_shape) + cond_dim, hidden, out_dim, act)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = x.reshape(x.shape[: x.dim() - len(self.x_shape)] + (-1,))
        return _conditioned(self.net, h, y) if self.cond_dim else self.net(h)


class Decoder(nn.Module):
    """Maps a latent code (and optionally a one-hot label) to likelihood parameters.

    ``z: [..., z_dim]`` -> ``[..., P, C, H, W]`` where ``P = params_per_pixel``
    (1 for Bernoulli logits, 2 for a Normal's loc and scale).
    Leading batch dimensions are kept, so ``z`` may carry extra sample dimensions.
    """

    def __init__(
        self,
        z_dim: int,
        x_shape: Sequence[int],
        params_per_pixel: int = 1,
        hidden: Sequence[int] = (400,),
        act: str = "relu",
        cond_dim: int = 0,
    ):
        super().__init__()
        self.x_shape: Tuple[int, ...] = tuple(x_shape)
        self.params_per_pixel = params_per_pixel
        self.cond_dim = cond_dim
        out = params_per_pixel * math.prod(self.x_shape)
        self.net = mlp(z_dim + cond_dim, tuple(reversed(tuple(hidden))), out, act)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = _conditioned(self.net, z, y) if self.cond_dim else self.net(z)
        return out.reshape(out.shape[:-1] + (self.params_per_pixel,) + self.x_shape)
