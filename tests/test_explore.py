"""Latent exploration: paths, codes, traversals, maps, completions and I(x; z), from
Python and from `pyro-vae encode|interpolate|traverse|latent-map|complete`."""

import json
import math

import numpy as np
import pytest
import torch

import pyro
import pyro.distributions as dist

from pyro_vae import VAE, load_dataset
from pyro_vae.cli import main
from pyro_vae.evaluate import latent_statistics, log_weights
from pyro_vae.explore import (
    ObservedPixels, categorical_order, complete, dimension_order, encode, endpoint_plane, hide,
    interpolate, latent_path, manifold, project, traverse,
)
from pyro_vae.runs import Run

TINY = ["--batch-size", "100", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An 8-D VAE trained for three epochs, a CVAE (3-D), a 2-D M2, and M2 on the VAE's
    codes: about 12 s of training on one core."""
    folder = tmp_path_factory.mktemp("explore")
    argv = {
        "vae": ["--epochs", "3", "--z-dim", "8", "--hidden", "128"],
        "cvae": ["--model", "cvae", "--net", "mlp", "--epochs", "1", "--z-dim", "3",
                 "--hidden", "32"],
        "m2": ["--model", "m2", "--labels", "100", "--epochs", "1", "--z-dim", "2",
               "--hidden", "32"],
        "m1m2": ["--model", "m2", "--labels", "100", "--features", str(folder / "vae"),
                 "--likelihood", "normal", "--epochs", "1", "--z-dim", "2", "--hidden", "32"],
    }
    for name, flags in argv.items():
        assert main(["train", "--out", str(folder / name), *flags, *TINY]) == 0
    return {name: folder / name for name in argv}


@pytest.fixture(scope="module")
def vae_run(runs):
    return Run.load(runs["vae"])


@pytest.fixture(scope="module")
def test_set(mnist10k):
    return mnist10k.x_test[:200], mnist10k.y_test[:200]


# ------------------------------------------------------------------- paths
def test_linear_path_is_evenly_spaced_between_the_endpoints():
    a, b = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-3.0, 0.0, 2.0])
    path = latent_path(a, b, 5, "linear")
    assert path.shape == (5, 3)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path.diff(dim=0), (b - a) / 4)


def test_slerp_interpolates_the_norm_and_the_angle():
    a, b = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([0.0, -4.0, 0.5])
    path = latent_path(a, b, 7, "slerp")
    t = torch.linspace(0, 1, 7)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b, atol=1e-6)
    # the norm moves linearly from |a| to |b| ...
    assert torch.allclose(path.norm(dim=1), (1 - t) * a.norm() + t * b.norm(), atol=1e-5)
    # ... the direction by equal angles along the great circle, in the plane of a and b
    unit = path / path.norm(dim=1, keepdim=True)
    angles = torch.arccos((unit[:-1] * unit[1:]).sum(1).clamp(-1, 1))
    assert torch.allclose(angles, angles[0].expand(6), atol=1e-5)
    plane = endpoint_plane(a, b)
    assert torch.allclose(project(path, plane) @ plane[1].T, path, atol=1e-5)


def test_slerp_of_parallel_endpoints_is_the_line():
    a = torch.tensor([1.0, 1.0])
    assert torch.allclose(latent_path(a, 3 * a, 4, "slerp"), latent_path(a, 3 * a, 4))


@pytest.mark.parametrize("args, match", [
    ((5, "cubic"), "path: expected one of linear, slerp"),
    ((1, "linear"), "steps: expected an integer >= 2"),
])
def test_latent_path_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        latent_path(torch.zeros(2), torch.ones(2), *args)


# ---------------------------------------------------------- encode, interpolate
def test_encode_returns_the_guides_means_scales_and_labels(vae_run, test_set):
    model, (x, y) = vae_run.model, test_set
    codes = encode(model, x, y, batch_size=64)
    assert set(codes) == {"mean", "scale", "label"} and codes["mean"].shape == (200, 8)
    np.testing.assert_allclose(codes["mean"], model.encode(x).numpy(), atol=1e-6)
    log_var = model.encoder(x)[:, 8:]
    np.testing.assert_allclose(codes["scale"], (0.5 * log_var).exp().detach().numpy(), rtol=1e-5)
    np.testing.assert_array_equal(codes["label"], y.numpy())


def test_encode_draws_the_scale_of_a_flow():
    model = VAE(x_shape=(3, 5, 4), z_dim=3, hidden=(8,), guide="iaf", likelihood="normal")
    x = torch.rand(6, 3, 5, 4)
    codes = encode(model, x, num_samples=2000)
    assert set(codes) == {"mean", "scale"} and codes["scale"].shape == (6, 3)
    # the flow has no closed-form variance: the scale is the spread of its draws
    with torch.no_grad():
        draws = model.guide(x.repeat(2000, 1, 1, 1)).view(2000, 6, 3)
    np.testing.assert_allclose(codes["scale"], draws.std(0).numpy(), rtol=0.1)


def test_interpolation_ends_at_the_reconstructions(vae_run, test_set):
    model, (x, _) = vae_run.model, test_set
    for path in ("linear", "slerp"):
        z, images = interpolate(model, x[3], x[7], 6, path)
        assert z.shape == (6, 8) and images.shape == (6, 1, 28, 28)
        assert torch.allclose(images[0], model.reconstruct(x[3:4])[0], atol=1e-5)
        assert torch.allclose(images[-1], model.reconstruct(x[7:8])[0], atol=1e-5)


def test_cvae_interpolation_decodes_each_end_with_its_label(runs, test_set):
    model, (x, y) = Run.load(runs["cvae"]).model, test_set
    _, images = interpolate(model, x[0], x[1], 5, "slerp", y[:2])
    assert torch.allclose(images[0], model.reconstruct(x[:1], y[:1])[0], atol=1e-5)
    assert torch.allclose(images[-1], model.reconstruct(x[1:2], y[1:2])[0], atol=1e-5)
    with pytest.raises(ValueError, match="label: CVAE needs the labels"):
        interpolate(model, x[0], x[1], 5)


# --------------------------------------------------------------- traversals
def test_traversal_moves_one_dimension_per_row(vae_run):
    model, z = vae_run.model, torch.linspace(-1, 1, 8)
    images = traverse(model, z, [1, 0], [-1.0, -1.0, 2.0])
    assert images.shape == (2, 3, 1, 28, 28)
    assert torch.allclose(images[1, 0], model.decode(z[None])[0])  # z[0] = -1 is z itself
    moved = z.clone()
    moved[1] = 2.0
    assert torch.allclose(images[0, 2], model.decode(moved[None])[0])
    with pytest.raises(ValueError, match=r"dims: expected dimensions in \[0, 8\), got \[8\]"):
        traverse(model, z, [0, 8], [0.0])
    with pytest.raises(ValueError, match="label: VAE is not conditioned on a label"):
        traverse(model, z, [0], [0.0], y=3)


def test_dimensions_are_ranked_by_kl_else_by_activity():
    assert dimension_order({"kl_per_dim": [0.1, 3.0, 1.0], "activity": [9, 0, 0]}) == [1, 2, 0]
    assert dimension_order({"kl_per_dim": None, "activity": [0.2, 0.0, 0.5]}) == [2, 0, 1]


# ------------------------------------------------------------------ manifold
def test_manifold_decodes_the_priors_quantiles(runs):
    model = Run.load(runs["m2"]).model  # z_dim 2, N(0, I), decoder reads a label
    torch.manual_seed(0)
    z, images = manifold(model, 5, y=3)
    assert z.shape == (5, 5, 2) and images.shape == (5, 5, 1, 28, 28)
    normal = dist.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 5))
    assert torch.allclose(z[0, :, 0], normal, atol=0.05)  # z_0 grows to the right
    assert torch.allclose(z[:, 0, 1], normal.flip(0), atol=0.05)  # z_1 grows upwards
    assert torch.allclose(images[2, 3], model.decode(z[2, 3][None], torch.tensor([3]))[0])
    with pytest.raises(ValueError, match="z_dim: the manifold grid needs a 2-D continuous latent"):
        manifold(Run.load(runs["vae"]).model)


# --------------------------------------------------------------- completion
def test_observed_pixels_mask_the_likelihood(vae_run, test_set):
    model, x = vae_run.model, test_set[0][:4]
    seen = hide(x.shape[1:], "left").expand_as(x)

    def weights(observed=None):  # log p(x_obs, z) - log q(z | x) at the same z each time
        pyro.set_rng_seed(1)
        masked = model.model if observed is None else ObservedPixels(observed)(model.model)
        return log_weights(masked, model.guide, x)

    assert torch.allclose(weights(torch.ones_like(seen)), weights())
    # a Bernoulli pixel has log-probability < 0: the fewer observed, the larger the weight
    assert (weights(torch.zeros_like(seen)) > weights(seen)).all()
    assert (weights(seen) > weights()).all()


def test_hidden_regions():
    assert hide((1, 4, 4), "top")[0, :2].eq(False).all() and hide((1, 4, 4), "top")[0, 2:].all()
    assert hide((3, 4, 6), "left")[:, :, :3].eq(False).all()
    seen = hide((2, 10, 10), "random", seed=3)
    assert torch.equal(seen[0], seen[1]) and 30 < seen[0].sum() < 70
    with pytest.raises(ValueError, match="mask: expected one of top, left, random"):
        hide((1, 4, 4), "diagonal")


@pytest.mark.parametrize("region, ratio", [("top", 0.9), ("random", 0.8)])
def test_completion_beats_the_mean_image_and_the_prior_mean(vae_run, mnist10k, region, ratio):
    model, x = vae_run.model, mnist10k.x_test[:100]
    seen = hide(x.shape[1:], region)
    result = complete(model, x, seen, num_samples=4, num_particles=128)
    assert result["samples"].shape == (100, 4, 1, 28, 28)
    assert torch.equal(result["samples"][:, :, seen], x[:, None][:, :, seen].expand(-1, 4, -1))
    assert ((result["ess"] >= 1) & (result["ess"] <= 128)).all()

    def error(guess):  # mean squared error on the hidden pixels
        return ((guess - x)[:, ~seen] ** 2).mean().item()

    baseline = min(error(mnist10k.x_train.mean(0)), error(model.decode(torch.zeros(1, 8))[0]))
    # measured: 0.83 (top) and 0.66 (random) of the mean image's error, itself the lower
    assert error(result["mean"]) < ratio * baseline


# ---------------------------------------------------------- mutual information
class LinearGaussian:
    """x ~ N(0, 1) data; z ~ N(0, 1), x ~ N(z, 1) (model); q(z | x) = N(a x, s^2) (guide),
    so that I(x; z) under q is 0.5 log(1 + a^2 / s^2)."""

    def __init__(self, a, s=1.0):
        self.a, self.s = a, s

    def model(self, x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(self.a * x, self.s).to_event(1))


def test_mutual_information_is_zero_when_the_guide_ignores_x():
    x = torch.randn(500, 1)
    stats = latent_statistics(LinearGaussian(0.0).model, LinearGaussian(0.0).guide, x)
    assert abs(stats["mutual_information"]) < 1e-5


def test_mutual_information_matches_the_closed_form_and_is_below_log_n():
    torch.manual_seed(0)
    x = torch.randn(2000, 1)
    pair = LinearGaussian(2.0)
    stats = latent_statistics(pair.model, pair.guide, x, batch_size=1000)
    # the minibatch estimate is biased low by O(1 / B); 0.05 nats covers it and the noise
    assert stats["mutual_information"] == pytest.approx(0.5 * math.log(5.0), abs=0.05)
    sharp = LinearGaussian(1e3, s=1e-3)  # nearly deterministic: the bound log B is reached
    stats = latent_statistics(sharp.model, sharp.guide, x[:100], batch_size=100)
    assert math.log(100) - 0.1 < stats["mutual_information"] <= math.log(100) + 1e-6


def test_evaluate_reports_mutual_information(runs, capsys):
    for name in ("vae", "m2"):
        assert main(["evaluate", str(runs[name]), "--json", "--num-images", "500"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert 0.1 < result["mutual_information"] <= math.log(500)


def test_mutual_information_of_a_flow_guide():
    model = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(8,), guide="iaf")
    stats = latent_statistics(model.model, model.guide, torch.rand(100, 1, 4, 4).round())
    assert 0 <= stats["mutual_information"] <= math.log(64)


# ---------------------------------------------------------------------- CLI
def test_cli_encode(runs, tmp_path, mnist10k):
    assert main(["encode", str(runs["vae"]), "--out", str(tmp_path / "c.npz")]) == 0
    codes = np.load(tmp_path / "c.npz")
    model = Run.load(runs["vae"]).model
    assert codes["mean"].shape == codes["scale"].shape == (2000, 8)
    np.testing.assert_allclose(codes["mean"][:50], model.encode(mnist10k.x_test[:50]), atol=1e-5)
    np.testing.assert_array_equal(codes["label"], mnist10k.y_test.numpy())


def test_cli_interpolate_and_traverse(runs, tmp_path, mnist10k):
    out = tmp_path / "i.png"
    argv = ["interpolate", str(runs["vae"]), "--from", "4", "--to", "9", "--steps", "5"]
    assert main([*argv, "--path", "slerp", "--out", str(out)]) == 0
    images = np.load(tmp_path / "i.npy")
    assert out.read_bytes()[:4] == b"\x89PNG" and images.shape == (5, 1, 28, 28)
    x = mnist10k.x_test[[4, 9]]
    np.testing.assert_allclose(images[[0, -1]], Run.load(runs["vae"]).model.reconstruct(x),
                               atol=1e-5)
    assert main(["traverse", str(runs["vae"]), "--item", "2", "--steps", "4",
                 "--out", str(tmp_path / "t.png")]) == 0
    assert np.load(tmp_path / "t.npy").shape == (8, 4, 1, 28, 28)  # every dimension


def test_cli_labelled_and_stacked_models(runs, tmp_path):
    out = str(tmp_path / "t.png")
    assert main(["traverse", str(runs["cvae"]), "--steps", "3", "--out", out]) == 0
    assert np.load(tmp_path / "t.npy").shape == (10, 3, 3, 1, 28, 28)  # a block per class
    assert main(["traverse", str(runs["m2"]), "--label", "4", "--dims", "1", "--out", out]) == 0
    assert np.load(tmp_path / "t.npy").shape == (1, 1, 9, 1, 28, 28)
    # M2 on the VAE's codes: its decodes are drawn through that VAE
    assert main(["interpolate", str(runs["m1m2"]), "--from", "0", "--to", "1",
                 "--out", str(tmp_path / "i.png")]) == 0
    assert np.load(tmp_path / "i.npy").shape == (10, 1, 28, 28)
    assert main(["latent-map", str(runs["m1m2"]), "--num-images", "100", "--grid", "4",
                 "--out", str(tmp_path / "m.png")]) == 0
    assert np.load(tmp_path / "m_manifold.npy").shape == (4, 4, 1, 28, 28)


def test_cli_latent_map(runs, tmp_path, mnist10k):
    assert main(["latent-map", str(runs["cvae"]), "--num-images", "120",
                 "--out", str(tmp_path / "m.png")]) == 0
    coords = np.load(tmp_path / "m.npz")
    assert coords["pca"].shape == coords["tsne"].shape == (120, 2)
    np.testing.assert_array_equal(coords["label"], mnist10k.y_test[:120].numpy())
    assert not (tmp_path / "m_manifold.png").exists()  # z_dim 3: no manifold grid
    assert main(["latent-map", str(runs["m2"]), "--num-images", "50", "--grid", "3",
                 "--out", str(tmp_path / "v.png")]) == 0
    assert set(np.load(tmp_path / "v.npz")) == {"z", "label"}
    assert (tmp_path / "v_manifold.png").is_file()


def test_cli_complete(runs, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert main(["complete", str(runs["vae"]), "--mask", "left", "--num", "3",
                 "--samples", "2", "--particles", "16", "--out", str(out)]) == 0
    assert np.load(tmp_path / "c.npy").shape == (3, 2, 1, 28, 28) and out.is_file()
    assert "effective sample size" in capsys.readouterr().err


@pytest.mark.parametrize("run, argv, message", [
    ("vae", ["interpolate", "--from", "0", "--to", "2000"],
     "to: expected a test-set index in [0, 2000)"),
    ("vae", ["interpolate", "--from", "-1", "--to", "1"],
     "from: expected a test-set index in [0, 2000), got -1"),
    ("vae", ["interpolate", "--from", "0", "--to", "1", "--path", "cubic"],
     "path: expected one of"),
    ("vae", ["traverse", "--dims", "0,9"], "dims: expected dimensions in [0, 8), got [9]"),
    ("vae", ["traverse", "--label", "3"], "label: model 'vae' is not conditioned on a label"),
    ("cvae", ["traverse", "--label", "12"], "label: expected a class in [0, 10)"),
    ("vae", ["complete", "--mask", "diagonal"], "mask: expected one of top, left, random"),
    ("m1m2", ["complete"], "features: this run models another VAE's codes"),
    ("vae", ["encode", "--out", "codes.txt"], "out: expected a file ending in .npz"),
])
def test_bad_input_exits_2_naming_the_flag(runs, run, argv, message, tmp_path, capsys):
    command, *flags = argv
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "f.png")]
    assert main([command, str(runs[run]), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pyro-vae: error: ") and message in err


def test_cli_on_a_categorical_model(tmp_path):
    """Codes of N one-hot rows: traversals set one latent to each of its K classes."""
    run = tmp_path / "cat"
    assert main(["train", "--model", "categorical", "--num-latents", "4", "--num-categories",
                 "3", "--hidden", "32", "--epochs", "1", "--batch-size", "256", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["traverse", str(run), "--num-images", "50", "--out", str(tmp_path / "t.png")]) == 0
    rows = torch.as_tensor(np.load(tmp_path / "t.npy"))
    assert rows.shape == (4, 3, 1, 28, 28)  # every latent (fewer than --num-dims), K classes
    model = Run.load(run).model
    x = load_dataset("mnist-10k").x_test
    code = torch.nn.functional.one_hot(model.encode(x[:1])[0].argmax(-1), 3).float()
    n = categorical_order(model.encode(x[:50]))[0]
    code[n] = torch.tensor([0.0, 0.0, 1.0])
    assert torch.allclose(rows[0, 2], model.decode(code[None])[0], atol=1e-6)
    assert main(["interpolate", str(run), "--from", "0", "--to", "1", "--steps", "5",
                 "--out", str(tmp_path / "i.png")]) == 0
    assert np.load(tmp_path / "i.npy").shape == (5, 1, 28, 28)
    assert main(["latent-map", str(run), "--num-images", "60",
                 "--out", str(tmp_path / "m.png")]) == 0
    assert main(["traverse", str(run), "--dims", "7", "--out", str(tmp_path / "bad.png")]) == 2
