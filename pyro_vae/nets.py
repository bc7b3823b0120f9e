"""Plain ``torch.nn`` encoders and decoders. No Pyro calls live here.

Networks return distribution *parameters*; the objects in :mod:`pyro_vae.guides`
and :mod:`pyro_vae.likelihoods` turn those parameters into distributions, and
only a model or guide function calls ``pyro.sample``.
"""

import inspect
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


class JointMLP(nn.Module):
    """An MLP of several inputs ``x_i: [..., d_i]`` whose leading dimensions broadcast.

    The first layer is ``sum_i W_i x_i + b`` (the concatenation's linear map, written
    so that an enumerated label ``[K, 1, d]`` meets a batch ``[B, d']`` without copying
    the batch K times), then ``act``, and ``Linear -> act`` for each further hidden
    width, then a ``Linear`` to ``out_dim``: ``[..., out_dim]``, the broadcast of the
    inputs' leading shapes. With ``batch_norm``, each hidden layer's pre-activation is
    batch-normalised over all its leading dimensions.
    """

    def __init__(self, in_dims: Sequence[int], hidden: Sequence[int], out_dim: int,
                 act: str = "relu", batch_norm: bool = False):
        super().__init__()
        if not hidden:
            raise ValueError("hidden: a JointMLP needs at least one hidden layer")
        self.in_dims = tuple(int(d) for d in in_dims)
        self.first = nn.ModuleList(nn.Linear(d, hidden[0], bias=i == 0)
                                   for i, d in enumerate(self.in_dims))
        widths = list(hidden)
        self.norms = nn.ModuleList(nn.BatchNorm1d(w) if batch_norm else nn.Identity()
                                   for w in widths)
        self.act = activation(act)
        self.rest = nn.ModuleList(nn.Linear(w, v) for w, v in zip(widths, widths[1:] + [out_dim]))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.in_dims):
            raise ValueError(f"inputs: expected {len(self.in_dims)} tensors, got {len(inputs)}")
        h = sum(layer(x) for layer, x in zip(self.first, inputs))
        for norm, layer in zip(self.norms, self.rest):
            h = self.act(_normed(norm, h))
            h = layer(h)
        return h


def _normed(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``norm`` applied to ``h: [..., W]`` with all leading dimensions as the batch."""
    if isinstance(norm, nn.Identity):
        return h
    return norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)


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


# ------------------------------------------------------------------ convolutional
def _halvings(size: int, layers: int) -> Tuple[int, ...]:
    """Side lengths after each stride-2 convolution: ``(size, ceil(size/2), ...)``.

    A 3x3 kernel with padding 1 maps ``n`` to ``ceil(n / 2)``, which is never 0, so every
    side length ``>= 1`` works; a 4x4 kernel (``floor(n / 2)``) would fail on odd sides
    of 1 and need cropping on the way back.
    """
    sizes = [size]
    for _ in range(layers):
        sizes.append((sizes[-1] + 1) // 2)
    return tuple(sizes)


def _check_conv_args(x_shape: Sequence[int], channels: Sequence[int]) -> Tuple[int, ...]:
    x_shape = tuple(x_shape)
    if len(x_shape) != 3 or any(int(s) != s or s < 1 for s in x_shape):
        raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {x_shape}")
    if len(channels) == 0 or any(int(c) != c or c < 1 for c in channels):
        raise ValueError(
            f"channels: expected one or more positive widths, got {tuple(channels)}"
        )
    return tuple(int(s) for s in x_shape)


class ConvEncoder(nn.Module):
    """A small convolutional encoder: strided convolutions, then an MLP head.

    ``x: [..., C, H, W]``, ``y: [..., cond_dim]`` or ``None`` -> ``[..., out_dim]``::

        h = flatten(act(conv_L(... act(conv_1(x)))))   # 3x3, stride 2, padding 1
        out = mlp(cat([h, y]))                          # hidden widths, then out_dim

    Each convolution halves the side (rounding up), so any ``H x W`` works: 28x28 becomes
    14x14 then 7x7 with the default ``channels=(32, 64)``. The label enters at the first
    linear layer, as in :func:`_conditioned`: an enumerated ``y: [K, 1, K]`` meets
    ``x: [B, C, H, W]`` to give ``[K, B, out_dim]`` with the convolutions run once.
    The positional arguments are those of :class:`Encoder`, so either can be built by
    :func:`make_encoder`.

    :param channels: output channels of each convolution, input side first.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        out_dim: int,
        hidden: Sequence[int] = (256,),
        act: str = "relu",
        cond_dim: int = 0,
        channels: Sequence[int] = (32, 64),
    ):
        super().__init__()
        self.x_shape = _check_conv_args(x_shape, channels)
        self.cond_dim = cond_dim
        layers, width = [], self.x_shape[0]
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, stride=2, padding=1), activation(act)]
            width = c
        self.conv = nn.Sequential(*layers)
        h, w = (_halvings(s, len(channels))[-1] for s in self.x_shape[1:])
        self.net = mlp(width * h * w + cond_dim, hidden, out_dim, act)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.x_shape:
            raise ValueError(
                f"x: expected [..., {', '.join(map(str, self.x_shape))}], got {list(x.shape)}"
            )
        batch = x.shape[:-3]
        h = self.conv(x.reshape((-1,) + self.x_shape)).flatten(1)
        h = h.reshape(batch + h.shape[-1:])
        return _conditioned(self.net, h, y) if self.cond_dim else self.net(h)


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: an MLP to a small feature map, then strided
    transposed convolutions up to the image.

    ``z: [..., z_dim]``, ``y: [..., cond_dim]`` or ``None`` -> ``[..., P, C, H, W]``,
    ``P = params_per_pixel``::

        f = act(mlp(cat([z, y])))                   # reversed hidden widths
        f = reshape(f, [channels[-1], h_L, w_L])    # the encoder's last feature map
        out = convT_1(... act(convT_L(f)))          # 3x3, stride 2, padding 1

    ``channels`` and ``hidden`` are given in the *encoder's* order and run reversed,
    as :class:`Decoder` does with ``hidden``, so one set of options builds a matching
    pair. Each transposed convolution maps ``n`` to ``2n - 1 + output_padding``; the
    padding (0 or 1) is chosen per layer so the output lands exactly on ``H x W``.
    Any number of leading dimensions (importance samples, enumerated labels) is
    flattened into one batch for the convolutions and restored after.

    :param channels: the encoder's convolution widths, input side first.
    """

    def __init__(
        self,
        z_dim: int,
        x_shape: Sequence[int],
        params_per_pixel: int = 1,
        hidden: Sequence[int] = (256,),
        act: str = "relu",
        cond_dim: int = 0,
        channels: Sequence[int] = (32, 64),
    ):
        super().__init__()
        self.x_shape = _check_conv_args(x_shape, channels)
        self.params_per_pixel = params_per_pixel
        self.cond_dim = cond_dim
        heights, widths = (_halvings(s, len(channels)) for s in self.x_shape[1:])
        self.feature_shape = (channels[-1], heights[-1], widths[-1])
        self.net = mlp(
            z_dim + cond_dim, tuple(reversed(tuple(hidden))), math.prod(self.feature_shape), act
        )
        self.act = activation(act)
        widths_out = tuple(reversed(tuple(channels)))[1:] + (params_per_pixel * self.x_shape[0],)
        layers, width = [], channels[-1]
        for i, c in enumerate(widths_out):
            j = len(channels) - 1 - i  # this layer restores the sizes at index j
            padding = ((heights[j] + 1) % 2, (widths[j] + 1) % 2)  # 1 for even targets
            layers.append(nn.ConvTranspose2d(width, c, 3, 2, padding=1, output_padding=padding))
            if i < len(widths_out) - 1:
                layers.append(activation(act))
            width = c
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        f = self.act(_conditioned(self.net, z, y) if self.cond_dim else self.net(z))
        batch = f.shape[:-1]
        out = self.deconv(f.reshape((-1,) + self.feature_shape))
        return out.reshape(batch + (self.params_per_pixel,) + self.x_shape)


# --------------------------------------------------------------------- registry
NETS = {
    "mlp": (Encoder, Decoder),
    "conv": (ConvEncoder, ConvDecoder),
}
"""Network kinds by name: ``(encoder class, decoder class)``. Both classes of a kind
take the positional arguments of :class:`Encoder` / :class:`Decoder`; further
keyword options (``channels`` for ``"conv"``) are their own."""


def _options_for(cls: type, options: dict) -> dict:
    """The ``options`` that ``cls`` accepts. An option that another kind takes is dropped
    (one config can carry ``channels`` into a run that uses ``"mlp"``); an option that no
    kind takes is a typo and raises."""
    known = {
        name for pair in NETS.values() for c in pair for name in inspect.signature(c).parameters
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of any network kind in NETS")
    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in options.items() if k in accepted and v is not None}


def _kind(kind: str) -> Tuple[type, type]:
    if kind not in NETS:
        raise ValueError(f"kind: expected a network kind, one of {sorted(NETS)}, got {kind!r}")
    return NETS[kind]


def make_encoder(
    kind: str,
    x_shape: Sequence[int],
    out_dim: int,
    hidden: Optional[Sequence[int]] = None,
    act: Optional[str] = None,
    cond_dim: int = 0,
    **options,
) -> nn.Module:
    """The encoder of network kind ``kind`` (a key of :data:`NETS`).

    Arguments left ``None`` take the class's default (``hidden`` is ``(400,)`` for
    ``"mlp"``, ``(256,)`` for ``"conv"``); see :class:`Encoder` and
    :class:`ConvEncoder`.
    """
    cls = _kind(kind)[0]
    options.update(hidden=hidden, act=act, cond_dim=cond_dim)
    return cls(x_shape, out_dim, **_options_for(cls, options))


def make_decoder(
    kind: str,
    z_dim: int,
    x_shape: Sequence[int],
    params_per_pixel: int = 1,
    hidden: Optional[Sequence[int]] = None,
    act: Optional[str] = None,
    cond_dim: int = 0,
    **options,
) -> nn.Module:
    """The decoder of network kind ``kind`` (a key of :data:`NETS`).

    ``hidden`` (and ``channels``) are given in the encoder's order, as for
    :func:`make_encoder`; the decoder runs them reversed. Arguments left ``None`` take
    the class's default; see :class:`Decoder` and :class:`ConvDecoder`.
    """
    cls = _kind(kind)[1]
    options.update(hidden=hidden, act=act, cond_dim=cond_dim)
    return cls(z_dim, x_shape, params_per_pixel, **_options_for(cls, options))
