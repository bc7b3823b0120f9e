"""Figures: each function returns a Figure, and `save` writes it atomically."""

import torch

from pyro_vae import plots


def test_figures_render_and_save(tmp_path):
    images = torch.rand(10, 1, 8, 8)
    history = [{"epoch": e, "train_loss": 10.0 / e, "test_loss": 11.0 / e, "recon": 8.0 / e,
                "kl": 2.0} for e in (1, 2, 3)]
    for name, fig in {
        "grid.png": plots.image_grid(images, 5, title="t"),
        "rec.png": plots.reconstructions(images[:8], images[:8].flip(-1), nrow=4),
        "curves.png": plots.training_curves(history),
    }.items():
        assert len(fig.axes) >= 1
        plots.save(fig, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "grid.png", "rec.png"]


def test_tile_layout():
    mosaic = plots._tile(torch.zeros(5, 1, 4, 4), nrow=3, pad=1)
    assert mosaic.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
