"""Data sets by name: the embedded mnist-10k, IDX files on disk, binarisation, batching."""

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import data as D
from pyro_vae.data import idx, named, splits


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


def test_the_package_exports_its_public_names():
    assert [name for name in D.__all__ if not hasattr(D, name)] == []
    assert {"ImageData", "load_dataset", "split_validation", "binarize", "batch_indices", "DATASETS",
            "IDX_FILES", "write_idx", "check_labels", "select_labels"} <= set(D.__all__)
    assert D.embedded_folder().is_dir()  # resources/ is found from the subpackage

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

    monkeypatch.setattr(named, "_download", offline)
    monkeypatch.setattr(named, "CACHE_DIR", tmp_path)
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


@pytest.mark.skipif(not idx._find(Path("/usr/share/datasets/fashion-mnist"), D.IDX_FILES["x_train"]),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found_without_data_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(named, "CACHE_DIR", tmp_path)
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


# ---------------------------------------------------------------- sources given as paths

from PIL import Image  # noqa: E402  (torchvision depends on Pillow)


def grey(value, size=(6, 5)):
    """A greyscale PIL image ``size = (W, H)`` whose pixel (row r, column c) is value + r + c."""
    w, h = size
    return Image.fromarray((value + np.add.outer(np.arange(h), np.arange(w))).astype(np.uint8))


def in_file_order(data, seed=0):
    """Train and test images of an unlabelled source put back in the order they were read."""
    n = len(data.x_train) + len(data.x_test)
    keep, held = splits._split_indices(torch.full((n,), -1), data.test_fraction, seed, "", "")
    x = torch.empty(n, *data.x_shape)
    x[keep], x[held] = data.x_train, data.x_test
    return x


def image_folder(root, classes=("cat", "dog", "owl"), per_class=5, size=(6, 5)):
    """``root/<class>/<i>.png``: ``per_class`` greyscale images per class."""
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey(40 * k + i, size).save(root / name / f"{i}.png")
    return root


def test_class_folders_give_labels_names_and_a_seeded_split(tmp_path, caplog):
    folder = image_folder(tmp_path / "pets")
    with caplog.at_level("INFO", logger="pyro_vae.data"):
        data = D.load_dataset(str(folder))
    assert data.x_train.shape == (12, 1, 5, 6) and data.x_test.shape == (3, 1, 5, 6)
    assert data.class_names == ["cat", "dog", "owl"] and data.num_classes == 3
    assert data.test_fraction == 0.2 and data.source == str(folder) and data.name == "pets"
    assert sorted(data.y_test.tolist()) == [0, 1, 2]  # stratified: one of each class
    assert "held out 3 of 15" in caplog.text
    x = torch.cat([data.x_train, data.x_test])[:, 0]
    y = torch.cat([data.y_train, data.y_test])
    first = x[(y == 1).nonzero()[0, 0]]  # a dog: 40 + i + r + c
    i = int(round(first[0, 0].item() * 255)) - 40
    expected = (40 + i + np.add.outer(np.arange(5), np.arange(6))) / 255
    np.testing.assert_allclose(first.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("image_size, shape", [(4, (4, 4)), ((3, 8), (3, 8)), ([10, 12], (10, 12))])
def test_image_size_resizes_every_image(tmp_path, image_size, shape):
    folder = image_folder(tmp_path / "pets")
    grey(0, (9, 7)).save(folder / "cat" / "big.png")  # another size is fine when resizing
    data = D.load_dataset(folder, image_size=image_size)
    assert data.x_shape == (1, *shape)
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(10):
        grey(i).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_text("skipped")
    data = D.load_dataset(str(tmp_path), test_fraction=0.3)
    assert data.x_train.shape == (7, 1, 5, 6) and data.x_test.shape == (3, 1, 5, 6)
    assert data.num_classes == 0 and not data.labelled and data.class_names is None
    assert (data.y_train == -1).all() and (data.y_test == -1).all()


def test_colour_images_give_three_channels(tmp_path):
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.jpg", quality=100)
    grey(100).save(tmp_path / "c.bmp")  # a grey image among colour ones is made RGB
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 0  # fully transparent green: black after compositing
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "d.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "e.gif")
    data = D.load_dataset(str(tmp_path), test_fraction=0.2, seed=0)
    assert data.x_shape == (3, 5, 6)
    by_file = in_file_order(data)
    assert torch.allclose(by_file[0, :, 2, 2], torch.tensor([1.0, 0.0, 0.2]))
    assert torch.allclose(by_file[1, :, 2, 2], torch.tensor([1.0, 0.0, 0.2]), atol=0.02)
    assert torch.allclose(by_file[2, :, 0, 0], torch.full((3,), 100 / 255))
    assert by_file[3, :, 1:].abs().max() == 0 and by_file[3, 1, 0, 0] == 1
    assert torch.allclose(by_file[4, :, 2, 2], torch.tensor([1.0, 0.0, 0.2]), atol=0.02)


def test_greyscale_with_alpha_and_palette_stay_one_channel(tmp_path):
    la = np.stack([np.full((5, 6), 200, np.uint8), np.full((5, 6), 255, np.uint8)], -1)
    la[0, 0, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "a.png")
    grey(10).convert("P").save(tmp_path / "b.png")
    data = D.load_dataset(str(tmp_path), test_fraction=0.5)
    x = torch.cat([data.x_train, data.x_test])
    assert x.shape == (2, 1, 5, 6)
    a = x[(x[:, 0, 1, 1] - 200 / 255).abs() < 1e-6][0, 0]
    assert a[0, 0] == 0 and a[1, 1] == pytest.approx(200 / 255)


def test_mismatched_sizes_name_two_files_and_suggest_image_size(tmp_path):
    image_folder(tmp_path)
    grey(0, (7, 5)).save(tmp_path / "dog" / "wide.png")
    with pytest.raises(ValueError, match=r"^data: images differ in size: .*cat.0\.png is \(5, 6\) "
                       r"but .*dog.wide\.png is \(5, 7\) \(H, W\); pass image_size \(--image-size\)"):
        D.load_dataset(str(tmp_path))


def test_train_and_test_folders_give_the_split(tmp_path):
    image_folder(tmp_path / "train", classes=("a", "b"), per_class=3)
    image_folder(tmp_path / "test", classes=("a", "b", "c"), per_class=2)  # c: unseen in training
    data = D.load_dataset(str(tmp_path))
    assert data.test_fraction is None and data.class_names == ["a", "b", "c"]
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1] and data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    grey(0).save(tmp_path / "flat.png")
    for f in list((tmp_path / "test").rglob("*.png")):
        f.rename(tmp_path / "test" / f"{f.parent.name}{f.name}")  # now a flat folder
    with pytest.raises(ValueError, match="must both hold class folders, or both hold images"):
        D.load_dataset(str(tmp_path))


# ---------------------------------------------------------------- arrays

@pytest.mark.parametrize("shape, expected", [
    ((10, 5, 6), (1, 5, 6)),          # [N, H, W]
    ((10, 3, 5, 6), (3, 5, 6)),       # [N, C, H, W]: dim 1 in 1..4
    ((10, 2, 5, 6), (2, 5, 6)),
    ((10, 5, 6, 3), (3, 5, 6)),       # [N, H, W, C]: last dim in 1, 3, 4
    ((10, 5, 6, 1), (1, 5, 6)),
    ((10, 3, 4, 4), (3, 4, 4)),       # both fit: channels-first wins
])
def test_npy_layouts(tmp_path, shape, expected):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    data = D.load_dataset(str(tmp_path / "x.npy"))
    assert data.x_shape == expected and len(data.x_train) + len(data.x_test) == 10
    assert data.num_classes == 0 and (data.y_train == -1).all()
    x_read = in_file_order(data)
    if len(shape) == 4 and shape[1] > 4:  # channels-last: the pixels moved, not reshaped
        x_read = x_read.permute(0, 2, 3, 1)
    np.testing.assert_allclose(x_read.reshape(shape).numpy(), x / 255, atol=1e-6)


@pytest.mark.parametrize("array, top", [
    (np.full((5, 4, 4), 255, np.uint8), 1.0),
    (np.full((5, 4, 4), 0.5, np.float64), 0.5),
    (np.full((5, 4, 4), 1.5, np.float32), 1.5),    # floats are taken as they are
    (np.ones((5, 4, 4), bool), 1.0),
    (np.full((5, 4, 4), 51, np.int64), 0.2),       # other integers in 0..255: bytes
])
def test_npy_dtypes(tmp_path, array, top):
    np.save(tmp_path / "x.npy", array)
    data = D.load_dataset(str(tmp_path / "x.npy"))
    assert data.x_train.dtype == torch.float32
    assert data.x_train.max().item() == pytest.approx(top)


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 4, 4), np.complex64), r"expected images of uint8, bool, float .* got dtype complex64"),
    (np.full((5, 4, 4), 300, np.int16), r"expected integer pixels in 0\.\.255, got values in \[300, 300\]"),
    (np.full((5, 4, 4), -1, np.int8), r"expected integer pixels in 0\.\.255, got values in \[-1, -1\]"),
    (np.zeros((5, 16)), r"expected images shaped \[N, H, W\].* got shape \[5, 16\]"),
    (np.zeros((5, 4, 4, 5, 1)), r"expected images shaped .* got shape \[5, 4, 4, 5, 1\]"),
    (np.zeros((5, 8, 8, 7)), r"expected images shaped .* got shape \[5, 8, 8, 7\]"),
    (np.zeros((0, 4, 4)), "expected at least one image"),
    (np.array([[[0.5, np.nan]]] * 3), "expected finite values, got NaN or inf in image 0"),
])
def test_npy_refusals_are_one_line(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(ValueError, match=r"^data: .*x\.npy: " + message) as err:
        D.load_dataset(str(tmp_path / "x.npy"))
    assert "\n" not in str(err.value)


def test_object_and_non_numpy_files_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{}, {}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"^data: .*o\.npy: expected images .* got dtype object"):
        D.load_dataset(str(tmp_path / "o.npy"))
    (tmp_path / "junk.npy").write_text("hello")
    with pytest.raises(ValueError, match=r"^data: .*junk\.npy: cannot be read as a NumPy \.npy file"):
        D.load_dataset(str(tmp_path / "junk.npy"))
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"cannot be read as a NumPy \.npz file"):
        D.load_dataset(str(tmp_path / "junk.npz"))
    (tmp_path / "table.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"^data: expected a folder, a \.npy or a \.npz file"):
        D.load_dataset(str(tmp_path / "table.csv"))


def test_npz_with_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((8, 5, 6, 3)), y_train=np.arange(8) % 4,
             x_test=rng.random((3, 5, 6, 3)), y_test=np.array([0, 1, 5]),
             class_names=np.array(list("abcdef")))
    data = D.load_dataset(str(tmp_path / "d.npz"))
    assert data.x_train.shape == (8, 3, 5, 6) and data.x_test.shape == (3, 3, 5, 6)
    assert data.test_fraction is None and data.num_classes == 6 and data.class_names == list("abcdef")
    assert data.y_test.tolist() == [0, 1, 5]
    np.savez(tmp_path / "u.npz", x_train=np.zeros((4, 4, 4)), x_test=np.zeros((2, 4, 4)))
    unlabelled = D.load_dataset(str(tmp_path / "u.npz"))
    assert unlabelled.num_classes == 0 and unlabelled.y_test.tolist() == [-1, -1]


def test_npz_without_a_test_split(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4, 4), np.uint8), y=np.arange(20) // 5)
    data = D.load_dataset(str(tmp_path / "d.npz"), test_fraction=0.4)
    assert (len(data.x_train), len(data.x_test)) == (12, 8) and data.test_fraction == 0.4
    assert torch.bincount(data.y_test).tolist() == [2, 2, 2, 2] and data.num_classes == 4
    np.savez(tmp_path / "one.npz", np.zeros((10, 4, 4)))  # a single array of any name
    assert D.load_dataset(str(tmp_path / "one.npz")).x_train.shape == (8, 1, 4, 4)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 4, 4)), "labels": np.zeros(4, int)},
     r"holds keys \['images', 'labels'\]; expected x_train"),
    ({"x_train": np.zeros((4, 4, 4))}, r"holds keys \['x_train'\]"),
    ({"x": np.zeros((4, 4, 4)), "y_tarin": np.zeros(4, int)}, r"holds keys \['x', 'y_tarin'\]"),
    ({"x_train": np.zeros((4, 4, 4)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 4, 4))},
     r"has labels \['y_train'\] for images \['x_train', 'x_test'\]"),
    ({"x": np.zeros((4, 4, 4)), "y": np.zeros(3, int)},
     r"\[y\]: expected 4 labels \[N\], one per image, got shape \[3\]"),
    ({"x": np.zeros((4, 4, 4)), "y": np.zeros(4)}, r"\[y\]: expected integer labels, got dtype float64"),
    ({"x": np.zeros((4, 4, 4)), "y": -np.ones(4, int)}, r"\[y\]: expected labels >= 0, got -1"),
    ({"x_train": np.zeros((4, 4, 4)), "x_test": np.zeros((2, 5, 5))},
     r"training images are \[1, 4, 4\] but test images are \[1, 5, 5\]"),
    ({"x": np.zeros((4, 4, 4)), "y": np.arange(4), "class_names": np.array(["a", "b"])},
     "labels reach 3 but class_names has 2 names"),
])
def test_npz_refusals(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=r"^data: .*d\.npz.*" + message):
        D.load_dataset(str(tmp_path / "d.npz"))


# ---------------------------------------------------------------- split, filters, memory

def test_the_split_is_seeded_and_stratified(tmp_path):
    y = np.repeat(np.arange(3), [50, 30, 20])
    np.savez(tmp_path / "d.npz", x=np.arange(100, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2)),
             y=y)
    a, b = (D.load_dataset(str(tmp_path / "d.npz"), seed=1) for _ in range(2))
    c = D.load_dataset(str(tmp_path / "d.npz"), seed=2)
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)
    assert torch.bincount(a.y_test).tolist() == [10, 6, 4]
    ids = torch.cat([a.x_train, a.x_test])[:, 0, 0, 0].long()  # every image once
    assert sorted(ids.tolist()) == list(range(100))
    assert torch.equal(a.y_train, torch.from_numpy(y)[a.x_train[:, 0, 0, 0].long()])


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_test_fraction_outside_zero_one_is_refused(tmp_path, fraction):
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 4)))
    with pytest.raises(ValueError, match="^test_fraction: expected"):
        D.load_dataset(str(tmp_path / "x.npy"), test_fraction=fraction)


def test_a_split_that_leaves_a_side_empty_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="^test_fraction: 0.1 of 3 examples leaves the test set empty"):
        D.load_dataset(str(tmp_path / "x.npy"), test_fraction=0.1)


def test_class_filters_touch_the_training_split_only(idx_folder):
    folder = str(idx_folder())
    full = D.load_dataset(folder)
    without7 = D.load_dataset(folder, exclude_classes=[7])
    assert 7 not in without7.y_train.tolist() and len(without7.y_train) == 64 - 6
    assert torch.equal(without7.y_test, full.y_test) and without7.num_classes == 10
    only = D.load_dataset(folder, classes=[2, 3])
    assert set(only.y_train.tolist()) == {2, 3} and torch.equal(only.x_test, full.x_test)
    both = D.load_dataset(folder, classes=[2, 3], exclude_classes=[3])
    assert set(both.y_train.tolist()) == {2}
    named = D.load_dataset("mnist-10k", data_dir=folder, exclude_classes=[0, 1])
    assert named.y_train.min() == 2 and len(named.y_test) == 32


def test_class_filters_accept_class_names(tmp_path):
    image_folder(tmp_path)
    data = D.load_dataset(str(tmp_path), classes=["owl", 0])
    assert set(data.y_train.tolist()) == {0, 2} and sorted(data.y_test.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("kwargs, message", [
    ({"classes": [10]}, r"^classes: expected labels in 0\.\.9, got 10"),
    ({"exclude_classes": ["seven"]}, r"^exclude_classes: expected labels in 0\.\.9, got 'seven'"),
    ({"classes": [True]}, r"^classes: expected labels in 0\.\.9, got True"),
    ({"exclude_classes": list(range(10))}, "^exclude_classes: no training images left"),
    ({"classes": []}, "^classes: no training images left"),
])
def test_class_filter_refusals(idx_folder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        D.load_dataset(str(idx_folder()), **kwargs)


def test_class_filters_refuse_unlabelled_data(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 4)))
    with pytest.raises(ValueError, match=r"^classes: the data is unlabelled \(num_classes 0\)"):
        D.load_dataset(str(tmp_path / "x.npy"), classes=[0])


@pytest.mark.parametrize("make", ["npy", "npz", "folder", "idx", "named"])
def test_memory_is_refused_before_decoding(tmp_path, idx_folder, make):
    if make == "npy":
        np.save(tmp_path / "x.npy", np.zeros((10, 5, 6, 3), np.uint8))
        source, expected = str(tmp_path / "x.npy"), "10 images of [3, 5, 6]"
    elif make == "npz":
        np.savez(tmp_path / "x.npz", x_train=np.zeros((10, 4, 4)), x_test=np.zeros((5, 4, 4)))
        source, expected = str(tmp_path / "x.npz"), "15 images of [1, 4, 4]"
    elif make == "folder":
        source, expected = str(image_folder(tmp_path / "pets")), "15 images of [1, 5, 6]"
    elif make == "idx":
        source, expected = str(idx_folder()), "96 images of [1, 8, 8]"
    else:
        source, expected = "mnist-10k", "10000 images of [1, 28, 28]"
    with pytest.raises(ValueError, match=rf"^data: .* holds {re.escape(expected)}, [0-9.e-]+ GiB as "
                       r"float32, above max_memory [0-9.e-]+ GiB \(pass max_memory"):
        D.load_dataset(source, max_memory=100)


def test_memory_default_is_half_the_available_ram():
    limit = D.default_max_memory()
    assert 0 < limit < 2 ** 50


def test_idx_files_of_any_size(idx_folder):
    folder = idx_folder(x_train=np.zeros((64, 12, 9), np.uint8),
                        x_test=np.full((32, 12, 9), 255, np.uint8))
    data = D.load_dataset(str(folder))
    assert data.x_train.shape == (64, 1, 12, 9) and data.x_test.shape == (32, 1, 12, 9)
    assert data.num_classes == 10 and data.test_fraction is None and data.x_test.min() == 1
    assert D.load_dataset("mnist-10k", data_dir=str(folder)).x_shape == (1, 12, 9)
    assert D.load_dataset(str(folder), image_size=16).x_shape == (1, 16, 16)
    assert D.load_idx_folder(folder, "mine").x_shape == (1, 12, 9)
    assert D.read_idx(folder / "train-images-idx3-ubyte.gz").shape == (64, 12, 9)


def test_idx_image_sizes_of_train_and_test_must_match(idx_folder):
    folder = idx_folder(x_test=np.zeros((32, 7, 7), np.uint8))
    with pytest.raises(ValueError, match=r"training images are \[1, 8, 8\] but test images are \[1, 7, 7\]"):
        D.load_dataset(str(folder))


def test_split_validation():
    x, y = torch.arange(40.0)[:, None], torch.arange(40) % 4
    x_train, y_train, x_val, y_val = D.split_validation(x, y, 0.25, seed=3)
    assert (len(x_train), len(x_val)) == (30, 10)
    assert torch.bincount(y_val).tolist() == [3, 3, 2, 2]  # 2.5 each: ties go to the lower labels
    assert torch.equal(y_train, y[x_train[:, 0].long()]) and torch.equal(y_val, y[x_val[:, 0].long()])
    assert sorted(torch.cat([x_train, x_val])[:, 0].tolist()) == list(range(40))
    again = D.split_validation(x, y, 0.25, seed=3)
    assert torch.equal(again[2], x_val)
    assert not torch.equal(D.split_validation(x, y, 0.25, seed=4)[2], x_val)
    unlabelled = D.split_validation(x, None, 0.1)
    assert unlabelled[1] is None and len(unlabelled[2]) == 4


@pytest.mark.parametrize("fraction, message", [
    (0.0, r"^val_fraction: expected a positive number, got 0\.0"),
    (1.0, r"^val_fraction: expected a fraction in \(0, 1\), got 1\.0"),
    (0.01, "^val_fraction: 0.01 of 10 examples leaves the validation set empty"),
    (0.99, "^val_fraction: 0.99 of 10 examples leaves the training set empty"),
])
def test_split_validation_refusals(fraction, message):
    with pytest.raises(ValueError, match=message):
        D.split_validation(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long), fraction,
                           name="val_fraction")
    with pytest.raises(ValueError, match="^y: expected 10 labels, one per example, got 9"):
        D.split_validation(torch.zeros(10, 2), torch.zeros(9, dtype=torch.long), 0.5)


# ---------------------------------------------------------------- what a bad source says

def test_missing_paths_and_unknown_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^data: .*nowhere\.npz is no file or folder$"):
        D.load_dataset(str(tmp_path / "nowhere.npz"))
    with pytest.raises(FileNotFoundError, match=r"^data: \./digits is no file or folder$"):
        D.load_dataset("./digits")
    with pytest.raises(ValueError, match=r"^dataset: expected one of .* or a path .*, got "
                       r"'fashion_mnist' \(did you mean 'fashion-mnist'\?\)$"):
        D.load_dataset("fashion_mnist")
    with pytest.raises(ValueError, match=r"got 'cifar10'$"):  # nothing close: no guess
        D.load_dataset("cifar10")
    with pytest.raises(TypeError, match="^dataset: expected a name or a path, got 3"):
        D.load_dataset(3)


def test_empty_and_odd_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^data: .*empty holds no images \(\.png.*IDX files"):
        D.load_dataset(str(tmp_path / "empty"))
    mixed = image_folder(tmp_path / "mixed")
    grey(0).save(mixed / "stray.png")
    with pytest.raises(ValueError, match=r"mixes images \(stray\.png\) and class folders \(cat/\)"):
        D.load_dataset(str(mixed))
    with pytest.raises(ValueError, match=r"^data_dir: only used with a dataset name"):
        D.load_dataset(str(mixed), data_dir=str(mixed))


def test_unreadable_image_is_named(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"^data: cannot read image .*dog.broken\.png \(") as err:
        D.load_dataset(str(tmp_path))
    assert "\n" not in str(err.value)
    truncated = tmp_path / "dog" / "broken.png"
    full = (tmp_path / "cat" / "0.png").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])  # the header reads, the pixels do not
    with pytest.raises(ValueError, match=r"^data: cannot read image .*dog.broken\.png"):
        D.load_dataset(str(tmp_path))


@pytest.mark.parametrize("image_size", [0, (2, 3, 4), "big", (4, 0)])
def test_bad_image_size_is_refused(tmp_path, image_size):
    image_folder(tmp_path)
    with pytest.raises((ValueError, TypeError), match="^image_size: expected"):
        D.load_dataset(str(tmp_path), image_size=image_size)


def test_train_size_keeps_a_seeded_subset_of_the_training_set(tmp_path, capsys):
    from pyro_vae import TrainConfig
    from pyro_vae.cli import main
    from pyro_vae.train import prepare_data

    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((50, 1, 4, 4), np.float32))
    whole = prepare_data(TrainConfig(data=str(path), seed=3))
    some = prepare_data(TrainConfig(data=str(path), train_size=12, seed=3))
    again = prepare_data(TrainConfig(data=str(path), train_size=12, seed=3))
    assert len(some.x_train) == 12 and torch.equal(some.x_train, again.x_train)
    assert torch.equal(some.x_test, whole.x_test)
    rows = {tuple(r.flatten().tolist()) for r in whole.x_train}
    assert all(tuple(r.flatten().tolist()) in rows for r in some.x_train)
    other = prepare_data(TrainConfig(data=str(path), train_size=40, seed=3))
    assert torch.equal(other.x_train, whole.x_train)
    assert main(["train", "--data", str(path), "--train-size", "41", "--seed", "3", "--out",
                 str(tmp_path / "run")]) == 2
    assert "train_size: 41 exceeds the 40 training images" in capsys.readouterr().err
