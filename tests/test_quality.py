"""Sample quality: the Frechet distance against its closed form for Gaussians, k-NN
precision/recall, the cached feature classifier, ``evaluate --sample-quality``."""

import json

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.data import ImageData
from pyro_vae.quality import (
    Classifier, frechet_distance, identity_features, load_or_train, precision_recall,
)
from pyro_vae.quality import classifier as judge_module

TINY = ["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--batch-size", "256", "--quiet"]


def gaussian_frechet(m1, s1, m2, s2) -> float:
    """|m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), by symmetric eigendecompositions."""
    w, v = torch.linalg.eigh(s1)
    root1 = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    return float((m1 - m2).square().sum() + s1.trace() + s2.trace() - 2 * cross)


# ------------------------------------------------------------------- Frechet distance
def test_frechet_distance_matches_the_gaussians_closed_form():
    g = torch.Generator().manual_seed(0)
    m1 = torch.zeros(3, dtype=torch.float64)
    m2 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    a1 = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, -0.3, 0.7]], dtype=torch.float64)
    a2 = torch.tensor([[2.0, 0.0, 0.0], [-0.4, 0.5, 0.0], [0.0, 0.6, 1.2]], dtype=torch.float64)
    n = 50_000
    x1 = m1 + torch.randn(n, 3, generator=g, dtype=torch.float64) @ a1.T
    x2 = m2 + torch.randn(n, 3, generator=g, dtype=torch.float64) @ a2.T
    exact = gaussian_frechet(m1, a1 @ a1.T, m2, a2 @ a2.T)  # about 6.9
    # Sample means and covariances of 50k draws are off by O(1/sqrt(n)) ~ 0.5%; 2% is ample.
    assert frechet_distance(identity_features(3), x1, x2) == pytest.approx(exact, rel=0.02)


def test_frechet_distance_is_zero_for_identical_sets_and_symmetric():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 8, generator=g)
    b = 0.5 + 2 * torch.randn(400, 8, generator=g)
    f = identity_features(8)
    assert abs(frechet_distance(f, a, a)) < 1e-4
    ab, ba = frechet_distance(f, a, b), frechet_distance(f, b, a)
    assert ab > 1 and ab == pytest.approx(ba, rel=1e-5)


def test_frechet_distance_refuses_a_single_item():
    with pytest.raises(ValueError, match="b: the Frechet distance needs at least 2"):
        frechet_distance(identity_features(2), torch.zeros(5, 2), torch.zeros(1, 2))


# ----------------------------------------------------------------- precision / recall
def test_precision_and_recall_are_one_for_identical_sets():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}


def test_precision_and_recall_drop_for_a_shifted_set():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(500, 4, generator=g), torch.randn(500, 4, generator=g)
    near, far = precision_recall(real, fake), precision_recall(real, fake + 3)
    assert near["precision"] > 0.8 and near["recall"] > 0.8
    assert far["precision"] < 0.2 and far["recall"] < 0.2


def test_a_collapsed_set_is_precise_but_recalls_little():
    g = torch.Generator().manual_seed(0)
    real, collapsed = torch.randn(500, 4, generator=g), 0.1 * torch.randn(500, 4, generator=g)
    scores = precision_recall(real, collapsed)
    assert scores["precision"] > 0.95 and scores["recall"] < 0.3


def test_precision_recall_checks_k_and_shapes():
    with pytest.raises(ValueError, match="k: expected 0 < k < 3"):
        precision_recall(torch.zeros(3, 2), torch.zeros(3, 2), k=3)
    with pytest.raises(ValueError, match="fake: expected features of"):
        precision_recall(torch.zeros(5, 2), torch.zeros(5, 3))


# ------------------------------------------------------------------------ classifier
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 28, 28), (1, 8, 8)])
def test_classifier_takes_any_image_shape(shape):
    net = Classifier(num_classes=5, channels=shape[0]).eval()
    x = torch.rand(2, *shape)
    assert net(x).shape == (2, 5) and net.features(x).shape == (2, net.num_features)


def small_data(mnist10k, n=256) -> ImageData:
    return ImageData("mnist-small", mnist10k.x_train[:n], mnist10k.y_train[:n],
                     mnist10k.x_test[:n], mnist10k.y_test[:n])


def test_classifier_is_cached_and_training_is_deterministic(mnist10k, tmp_path):
    data = small_data(mnist10k)
    first = load_or_train(data, epochs=1, cache=tmp_path / "a")
    assert first.path.is_file() and first.path.name.endswith("-seed0-e1-v2.pt")
    assert "trained" in first.summary and 0 <= first.test_accuracy <= 1
    again = load_or_train(data, epochs=1, cache=tmp_path / "a")
    assert "loaded" in again.summary and again.test_accuracy == first.test_accuracy
    retrained = load_or_train(data, epochs=1, cache=tmp_path / "b")
    x = data.x_test[:16]
    with torch.no_grad():
        assert torch.equal(first.net(x), again.net(x))
        assert torch.equal(first.net(x), retrained.net(x))  # seeded, one thread


def test_classifier_refuses_unlabelled_data(mnist10k, tmp_path):
    data = small_data(mnist10k)
    data.num_classes, data.y_train = 0, torch.full_like(data.y_train, -1)
    with pytest.raises(ValueError, match="data: mnist-small is unlabelled"):
        load_or_train(data, epochs=1, cache=tmp_path)


# -------------------------------------------------------- evaluate --sample-quality
def test_evaluate_sample_quality_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(judge_module, "CACHE", tmp_path / "classifiers")
    monkeypatch.setattr(judge_module, "EPOCHS", 1)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--sample-quality",
                 "--quality-samples", "64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["quality_samples"] == 64 and 0.5 < result["quality_classifier_accuracy"] <= 1
    for name in ("samples", "reconstructions", "train_floor"):
        assert result[f"fid_{name}"] >= 0
        assert 0 <= result[f"precision_{name}"] <= 1 and 0 <= result[f"recall_{name}"] <= 1
    # One epoch of a tiny VAE draws blurry digits: further from the test set than real ones.
    assert result["fid_samples"] > result["fid_train_floor"]
    assert list((tmp_path / "classifiers").glob("mnist-10k-*-e1-v2.pt"))


def test_evaluate_refuses_too_few_quality_samples(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--sample-quality", "--quality-samples", "3"]) == 2
    assert "quality_samples: expected an integer >= 4" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--quality-samples", "64"]) == 2
    assert "quality_samples: only used with --sample-quality" in capsys.readouterr().err
