"""``coloured-mnist-10k``: mnist-10k's digits in a seeded pair of colours per image."""

import json
import math

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.data import DATASETS, colourise, load_dataset
from pyro_vae.data.coloured import colours


@pytest.fixture(scope="module")
def coloured():
    return load_dataset("coloured-mnist-10k")


def test_coloured_digits_have_three_channels_in_range(coloured, mnist10k):
    assert "coloured-mnist-10k" in DATASETS
    assert coloured.x_shape == (3, 28, 28) and coloured.x_train.dtype == torch.float32
    assert len(coloured.x_train) == 8000 and len(coloured.x_test) == 2000
    assert coloured.x_train.min() >= 0 and coloured.x_train.max() <= 1
    assert torch.equal(coloured.y_train, mnist10k.y_train)
    assert torch.equal(coloured.y_test, mnist10k.y_test)
    assert coloured.num_classes == 10 and coloured.source == "coloured-mnist-10k"


def test_the_same_seed_gives_the_same_images(coloured):
    again = load_dataset("coloured-mnist-10k")
    assert torch.equal(again.x_train, coloured.x_train)
    assert torch.equal(again.x_test, coloured.x_test)


def test_each_image_has_its_own_foreground_and_background(coloured, mnist10k):
    grey, image = mnist10k.x_train[:100], coloured.x_train[:100]
    foreground, background = (c[:100] for c in colours(8000, torch.Generator().manual_seed(0)))
    # Intensity x mixes the two: x = 0 (the background) shows one colour, x = 1 the other.
    fg, bg = foreground[:, :, None, None], background[:, :, None, None]
    assert torch.allclose(image, (1 - grey) * bg + grey * fg, atol=1e-6)
    gap = (foreground - background).abs()
    assert (torch.minimum(gap, 1 - gap) >= 0.25 - 1e-6).all()  # channel by channel, mod 1
    assert len(torch.unique(background, dim=0)) == 100  # no two images share colours


def test_colourise_refuses_colour_images():
    with pytest.raises(ValueError, match=r"x: expected greyscale images \[N, 1, H, W\]"):
        colourise(torch.zeros(2, 3, 4, 4), torch.Generator())


def test_a_conv_vae_trains_on_coloured_digits(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "coloured-mnist-10k", "--net", "conv", "--classes", "1",
                 "--epochs", "1", "--z-dim", "4", "--batch-size", "256", "--quiet",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "coloured-mnist-10k" and config["net"] == "conv"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1 and math.isfinite(rows[-1]["test_loss"])
