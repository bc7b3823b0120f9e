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


@pytest.fixture(scope="session")
def mnist10k():
    from pyro_vae.data import load_dataset

    return load_dataset("mnist-10k")
