import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_pyro():
    """Every test starts with an empty param store, fixed seeds and validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    torch.set_num_threads(1)
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def registries():
    """Parts and models a test registers are gone after it."""
    from pyro_vae.likelihoods import LIKELIHOODS
    from pyro_vae.models import MODELS
    from pyro_vae.priors import PRIORS

    saved = [(r, dict(r)) for r in (LIKELIHOODS, MODELS, PRIORS)]
    yield
    for registry, items in saved:
        registry.clear()
        registry.update(items)


@pytest.fixture(scope="session")
def mnist10k():
    from pyro_vae.data import load_dataset

    return load_dataset("mnist-10k")


@pytest.fixture
def idx_folder(tmp_path):
    """``make(name="data", **arrays)``: a folder of tiny MNIST-layout IDX files.

    64 training and 32 test images of 8 x 8 pixels (uint8) with labels 0..9; any of
    ``x_train``, ``y_train``, ``x_test``, ``y_test`` given replaces the default, and
    ``None`` leaves that file out. Read it with ``--dataset mnist-10k --data-dir``.
    """
    import numpy as np

    from pyro_vae.data import IDX_FILES, write_idx

    def make(name="data", **arrays):
        rng = np.random.default_rng(0)
        default = {
            "x_train": rng.integers(0, 256, (64, 8, 8), dtype=np.uint8),
            "y_train": np.arange(64, dtype=np.uint8) % 10,
            "x_test": rng.integers(0, 256, (32, 8, 8), dtype=np.uint8),
            "y_test": np.arange(32, dtype=np.uint8) % 10,
        }
        folder = tmp_path / name
        folder.mkdir()
        for key, stem in IDX_FILES.items():
            array = arrays.get(key, default[key])
            if array is not None:
                write_idx(folder / (stem + ".gz"), array)
        return folder

    return make
