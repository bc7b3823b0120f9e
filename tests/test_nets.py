"""Encoders and decoders: shapes, label enumeration, the registry, and that they train."""

import pytest
import torch
import torch.nn.functional as F

from pyro_vae.nets import (
    NETS,
    ConvDecoder,
    ConvEncoder,
    Decoder,
    Encoder,
    make_decoder,
    make_encoder,
)

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (1, 5, 7), (2, 3, 1), (1, 1, 1)]
SMALL = dict(channels=(4, 8), hidden=(16,))  # tiny widths keep the tests fast


# ----------------------------------------------------------------------- shapes
@pytest.mark.parametrize("x_shape", SHAPES)
def test_conv_shapes_land_exactly_on_the_image(x_shape):
    encoder = ConvEncoder(x_shape, 6, **SMALL)
    decoder = ConvDecoder(3, x_shape, params_per_pixel=2, **SMALL)
    assert encoder(torch.rand((5,) + x_shape)).shape == (5, 6)
    assert decoder(torch.randn(5, 3)).shape == (5, 2) + x_shape


def test_default_conv_widths_for_mnist():
    encoder, decoder = ConvEncoder((1, 28, 28), 20), ConvDecoder(10, (1, 28, 28))
    # 28 -> 14 -> 7 with 32 then 64 channels, a 256 hidden layer; the decoder mirrors it
    assert [m.out_channels for m in encoder.conv if hasattr(m, "out_channels")] == [32, 64]
    assert encoder.net[0].in_features == 64 * 7 * 7 and encoder.net[0].out_features == 256
    assert decoder.feature_shape == (64, 7, 7)
    assert [m.out_channels for m in decoder.deconv if hasattr(m, "out_channels")] == [32, 1]


@pytest.mark.parametrize("kind", sorted(NETS))
def test_decoder_keeps_leading_sample_dims(kind):
    decoder = make_decoder(kind, 3, (1, 5, 7), params_per_pixel=2, **SMALL)
    z = torch.randn(4, 6, 3)  # [S, B, z_dim]
    out = decoder(z)
    assert out.shape == (4, 6, 2, 1, 5, 7)
    torch.testing.assert_close(out[2], decoder(z[2]))
    assert decoder(torch.randn(2, 3, 6, 3)).shape == (2, 3, 6, 2, 1, 5, 7)


def test_encoder_keeps_leading_dims_and_names_a_wrong_image_shape():
    encoder = ConvEncoder((1, 5, 7), 4, **SMALL)
    x = torch.rand(3, 2, 1, 5, 7)
    torch.testing.assert_close(encoder(x)[1], encoder(x[1]))
    with pytest.raises(ValueError, match=r"x: expected \[\.\.\., 1, 5, 7\], got \[2, 1, 7, 5\]"):
        encoder(torch.rand(2, 1, 7, 5))


# ------------------------------------------------------------ enumerated labels
def test_enumerated_label_broadcasts_like_a_loop_over_labels():
    K, B, x_shape = 3, 5, (1, 6, 5)
    encoder = ConvEncoder(x_shape, 4, cond_dim=K, **SMALL)
    decoder = ConvDecoder(2, x_shape, params_per_pixel=2, cond_dim=K, **SMALL)
    x, z = torch.rand((B,) + x_shape), torch.randn(K, B, 2)
    y = torch.eye(K)[:, None]  # [K, 1, K], as TraceEnum_ELBO enumerates a label

    per_label = torch.stack([encoder(x, y[k].expand(B, K)) for k in range(K)])
    out = encoder(x, y)
    assert out.shape == (K, B, 4)
    torch.testing.assert_close(out, per_label)

    per_label = torch.stack([decoder(z[k], y[k].expand(B, K)) for k in range(K)])
    out = decoder(z, y)
    assert out.shape == (K, B, 2) + x_shape
    torch.testing.assert_close(out, per_label)
    # one z per image meets every label
    assert decoder(z[0], y).shape == (K, B, 2) + x_shape


def test_conditioned_network_needs_its_label():
    with pytest.raises(ValueError, match="y: this network is conditioned"):
        ConvEncoder((1, 4, 4), 2, cond_dim=3, **SMALL)(torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize("kind", sorted(NETS))
def test_gradients_reach_every_parameter(kind):
    encoder = make_encoder(kind, (1, 5, 7), 4, cond_dim=2, **SMALL)
    decoder = make_decoder(kind, 4, (1, 5, 7), 1, cond_dim=2, **SMALL)
    y = torch.eye(2)[:, None]
    x = torch.rand(3, 1, 5, 7)
    decoder(encoder(x, y), y).pow(2).sum().backward()
    for name, p in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------- registry
def test_registry_builds_by_name():
    assert NETS["mlp"] == (Encoder, Decoder)
    assert NETS["conv"] == (ConvEncoder, ConvDecoder)
    encoder = make_encoder("conv", (1, 8, 8), 4, channels=(8,))
    assert isinstance(encoder, ConvEncoder) and encoder.net[0].out_features == 256
    # channels is a conv option: a run using the MLP drops it
    mlp = make_encoder("mlp", (1, 8, 8), 4, hidden=(12,), act="tanh", channels=(8,))
    assert isinstance(mlp, Encoder) and mlp.net[0].out_features == 12
    assert isinstance(mlp.net[1], torch.nn.Tanh)
    decoder = make_decoder("mlp", 3, (1, 8, 8), 2)
    assert isinstance(decoder, Decoder) and decoder(torch.randn(3)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: make_encoder("resnet", (1, 8, 8), 4), "kind: expected a network kind"),
        (lambda: make_decoder("rnn", 2, (1, 8, 8)), "kind: expected a network kind"),
        (lambda: make_encoder("conv", (1, 8, 8), 4, chanels=(8,)), "chanels: not an option"),
        (lambda: ConvEncoder((8, 8), 4), r"x_shape: expected \(C, H, W\)"),
        (lambda: ConvDecoder(2, (1, 0, 8)), r"x_shape: expected \(C, H, W\)"),
        (lambda: ConvEncoder((1, 8, 8), 4, channels=()), "channels: expected one or more"),
        (lambda: ConvDecoder(2, (1, 8, 8), channels=(8, 0)), "channels: expected one or more"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# -------------------------------------------------------------------- training
def test_tiny_conv_vae_loss_falls():
    """A plain torch VAE: q(z|x) = N(mu, sigma^2), p(z) = N(0, I), Bernoulli pixels."""
    torch.manual_seed(0)
    z_dim, x_shape = 4, (1, 12, 12)
    x = torch.bernoulli(torch.full((64,) + x_shape, 0.3))
    encoder = ConvEncoder(x_shape, 2 * z_dim, hidden=(32,), channels=(8, 16))
    decoder = ConvDecoder(z_dim, x_shape, hidden=(32,), channels=(8, 16))
    optim = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    losses = []
    for _ in range(30):
        loc, log_scale = encoder(x).chunk(2, -1)
        z = loc + log_scale.exp() * torch.randn_like(loc)
        logits = decoder(z).squeeze(-4)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((-3, -2, -1))
        kl = 0.5 * (loc**2 + (2 * log_scale).exp() - 2 * log_scale - 1).sum(-1)
        loss = (recon + kl).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    # from ~log(2) per pixel (100 nats) towards the entropy of Bernoulli(0.3) (88 nats)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 5
