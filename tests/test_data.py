"""Data sets by name: the embedded mnist-10k, IDX files on disk, binarisation, batching."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from pyro_vae import data as D


def write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def fake_idx_folder(folder, n_train=6, n_test=4, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28)), "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, 28, 28)), "y_test": rng.integers(0, 10, n_test),
    }
    for key, stem in D.IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key], gz)
    return arrays


def test_embedded_mnist10k(mnist10k):
    assert mnist10k.x_train.shape == (8000, 1, 28, 28) and mnist10k.x_test.shape == (2000, 1, 28, 28)
    assert mnist10k.x_train.dtype == torch.float32
    assert 0 <= mnist10k.x_train.min() and mnist10k.x_train.max() == 1
    assert torch.bincount(mnist10k.y_train).tolist() == [784, 882, 805, 828, 789, 679, 811, 882, 755, 785]
    assert torch.bincount(mnist10k.y_test).tolist() == [217, 245, 186, 204, 191, 184, 203, 188, 189, 193]


def test_embedded_files_match_their_checksums():
    folder = D.embedded_folder()
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert "CC BY-SA 3.0" in (folder / "README.md").read_text()


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["", "raw", "FashionMNIST/raw"])
def test_idx_folder_layouts(tmp_path, gz, layout):
    arrays = fake_idx_folder(tmp_path / layout, gz=gz)
    data = D.load_dataset("fashion-mnist", data_dir=str(tmp_path), download=False)
    assert data.x_train.shape == (6, 1, 28, 28) and data.y_test.shape == (4,)
    np.testing.assert_array_equal((data.x_train[:, 0] * 255).round().numpy(), arrays["x_train"])
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["y_train"])


def test_missing_files_say_which_and_where(tmp_path):
    fake_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        D.load_dataset("kmnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match=r"no IDX files found in .*empty.*train-images-idx3-ubyte\.gz"):
        (tmp_path / "empty").mkdir()
        D.load_dataset("mnist", data_dir=str(tmp_path / "empty"), download=False)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        D.load_dataset("mnist", data_dir=str(tmp_path / "nowhere"))


def test_failed_download_explains_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(D, "_download", offline)
    monkeypatch.setattr(D, "CACHE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="download failed: network unreachable.*--data-dir"):
        D.load_dataset("kmnist")


def test_truncated_idx_file_is_refused(tmp_path):
    fake_idx_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        D.load_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"dataset: expected one of .*mnist-10k.*fashion-mnist"):
        D.load_dataset("cifar")


@pytest.mark.skipif(not D._find(D.Path("/usr/share/datasets/fashion-mnist"), D.IDX_FILES["x_train"]),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found_without_data_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "CACHE_DIR", tmp_path)
    data = D.load_dataset("fashion-mnist", download=False)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)


def test_binarize_is_a_bernoulli_sample():
    x = torch.full((20000,), 0.3)
    b = D.binarize(x, torch.Generator().manual_seed(0))
    assert set(b.unique().tolist()) <= {0.0, 1.0} and abs(b.mean().item() - 0.3) < 0.01
    again = D.binarize(x, torch.Generator().manual_seed(0))
    assert torch.equal(b, again)


def test_batch_indices_cover_every_item_once():
    batches = D.batch_indices(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
