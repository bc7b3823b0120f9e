"""Stacking (M1+M2, Kingma et al. 2014): a trained VAE's codes as the data of a model.

M1 is a plain VAE trained on the images; its posterior means ``E_q[z | x]`` are
usually far easier to model, and to classify from few labels, than the pixels. A
model trained on them (M2, as in the paper) sees each code as a one-pixel-high
"image" ``[1, 1, z_dim]``, so every network, likelihood and check of the library
applies unchanged; the codes are real-valued, so use the ``normal`` likelihood.
"""

import torch
from torch import nn

from .data import ImageData


@torch.no_grad()
def encode_data(vae: nn.Module, data: ImageData, batch_size: int = 1000) -> ImageData:
    """``data`` with every image replaced by ``vae.encode(x)``, shaped ``[N, 1, 1, z_dim]``.

    Labels are kept; ``vae`` must have an ``encode(x) -> [B, z_dim]`` method.
    """
    if not callable(getattr(vae, "encode", None)):
        raise TypeError(f"features: expected a model with an encode(x) method, got {type(vae).__name__}")
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device

    def encode(x: torch.Tensor) -> torch.Tensor:
        codes = torch.cat([vae.encode(b.to(device)).cpu() for b in x.split(batch_size)])
        return codes.reshape(len(x), 1, 1, -1)

    codes = ImageData(f"{data.name}-codes", encode(data.x_train), data.y_train,
                      encode(data.x_test), data.y_test, data.num_classes)
    vae.train(was_training)
    return codes
