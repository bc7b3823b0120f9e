"""Bad input: one clear line naming the argument, what was expected and what came,
before any training step, through the Python API (ValueError/TypeError) and the CLI
(exit code 2). docs/robustness.md lists every case and its message."""

import logging
import re

import numpy as np
import pyro
import pytest
import torch

from pyro_vae import VAE, TrainConfig, fit, load_dataset, train
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.data import check_labels, select_labels
from pyro_vae.guides import GUIDES
from pyro_vae.infer import ELBOS, make_elbo
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.models import MODELS
from pyro_vae.priors import PRIORS

X = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _vae(**kw):
    return VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,), **kw)


def _no_step_taken():
    """fit creates parameters at its first step: an empty param store means none ran."""
    return not list(pyro.get_param_store().keys())


# ------------------------------------------------------------------------- Python API
def _with(x, index, value):
    x = x.clone()
    x.view(-1)[index] = value
    return x


FIT_CASES = {
    "nan": (dict(data=_with(X, 5, float("nan"))), ValueError,
            "data: expected finite values, got 1 NaN or inf value(s)"),
    "inf in test data": (dict(test_data=_with(X[:8], 0, float("inf"))), ValueError,
                         "test_data: expected finite values, got 1 NaN or inf value(s)"),
    "outside support": (dict(data=_with(_with(X, 0, 0.0), 3, 1.5)), ValueError,
                        "data: the bernoulli likelihood needs values in [0, 1], "
                        "got values in [0, 1.5]"),
    "flat images": (dict(data=X.reshape(64, 64)), ValueError,
                    "data: expected shape [N, 1, 8, 8], got [64, 64]"),
    "image size": (dict(data=X[..., :7, :7]), ValueError,
                   "data: expected shape [N, 1, 8, 8], got [64, 1, 7, 7]"),
    # integer images are cast to the model's dtype; booleans are refused
    "boolean images": (dict(data=X > 0.5), TypeError,
                       "data: expected real-valued images, got dtype torch.bool"),
    "empty": (dict(data=X[:0]), ValueError,
              "data: expected at least one example, got an empty data set"),
    "labels of other length": (dict(data=(X, torch.zeros(63, dtype=torch.long))), ValueError,
                               "data: expected tensors with one first dimension (one row "
                               "per example), got first dimensions [64, 63]"),
    "batch size 0": (dict(batch_size=0), ValueError, "batch_size: expected a positive integer, got 0"),
    "batch size text": (dict(batch_size="8"), TypeError,
                        "batch_size: expected a positive integer, got '8' (str)"),
    "batch size float": (dict(batch_size=8.0), TypeError,
                         "batch_size: expected a positive integer, got 8.0 (float)"),
    "epochs": (dict(epochs=-1), ValueError, "epochs: expected a non-negative integer, got -1"),
    "lr 0": (dict(lr=0.0), ValueError, "lr: expected a positive number, got 0.0"),
    "lr negative": (dict(lr=-1e-3), ValueError,
                    "lr: expected a positive number, got -0.001"),
    "lr nan": (dict(lr=float("nan")), ValueError, "lr: expected a positive number, got nan"),
    "clip_norm": (dict(clip_norm=-1.0), ValueError,
                  "clip_norm: expected a positive number, got -1.0"),
    "elbo": (dict(elbo="TraceELBO"), ValueError,
             f"elbo: expected one of {sorted(ELBOS)}, got 'TraceELBO' "
             "(did you mean 'Trace_ELBO'?)"),
    "checkpoint_steps": (dict(checkpoint_steps=-5), ValueError,
                         "checkpoint_steps: expected a non-negative integer, got -5"),
    "keep_checkpoints": (dict(keep_checkpoints=0), ValueError,
                         "keep_checkpoints: expected a positive integer, got 0"),
    "max_bad_steps": (dict(max_bad_steps=-1), ValueError,
                      "max_bad_steps: expected a non-negative integer, got -1"),
}


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_refuses(case):
    kwargs, error, message = FIT_CASES[case]
    vae = _vae()
    kwargs = {"data": X, "epochs": 1, **kwargs}
    with pytest.raises(error) as info:
        fit(vae.model, vae.guide, **kwargs)
    assert str(info.value) == message
    assert _no_step_taken()


def test_fit_refuses_an_unwritable_run_dir(tmp_path):
    (tmp_path / "file").write_text("")
    vae = _vae()
    with pytest.raises(ValueError, match=r"^run_dir: cannot write to .*/file/run \(Not a dir"):
        fit(vae.model, vae.guide, X, run_dir=tmp_path / "file" / "run")
    assert _no_step_taken()


def test_batch_larger_than_the_data_is_one_full_batch(tmp_path, caplog):
    vae = _vae()
    with caplog.at_level(logging.WARNING, logger="pyro_vae.infer"):
        fit(vae.model, vae.guide, X, epochs=2, batch_size=100, run_dir=tmp_path)
    assert "batch_size 100 exceeds the 64 examples: one full batch per epoch" in caplog.text
    assert load_checkpoint(tmp_path / CHECKPOINT)["global_step"] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(z_dim=0), "z_dim: expected a positive integer, got 0"),
    (dict(guide="iaff"), f"guide: expected one of {sorted(GUIDES)}, got 'iaff'"),
    (dict(prior="vampp"), f"prior: expected one of {sorted(PRIORS)}, got 'vampp'"),
    (dict(likelihood="gauss"), f"likelihood: expected one of {sorted(LIKELIHOODS)}, got 'gauss'"),
    (dict(activation="sigmoidd"), "activation: expected one of"),
])
def test_model_refuses(kwargs, message):
    with pytest.raises(ValueError) as info:
        VAE(x_shape=(1, 8, 8), **kwargs)
    assert str(info.value).startswith(message)


def test_unknown_elbo_and_dataset():
    with pytest.raises(ValueError, match=r"^elbo: expected one of \[.*'Trace_ELBO'\], got 'ELBO' \(did you mean '\w+'\?\)$"):
        make_elbo("ELBO")
    with pytest.raises(ValueError, match=r"^dataset: expected one of \['mnist-10k', 'coloured-mnist-10k', 'mnist', "
                                         r"'fashion-mnist', 'kmnist'\] or a path to a folder, .npy or .npz file, got 'cifar'$"):
        load_dataset("cifar")


def test_train_refuses_unknown_model_before_touching_disk(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"model: expected one of {sorted(MODELS)}, got 'vea'")):
        train(TrainConfig(model="vea", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_data_folder_missing_or_incomplete(tmp_path, idx_folder):
    with pytest.raises(FileNotFoundError, match=r"^data_dir: .*/nowhere is not a folder$"):
        load_dataset("mnist-10k", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"^data_dir: .*/nowhere is not a folder$"):
        load_dataset("fashion-mnist", str(tmp_path / "nowhere"))
    folder = idx_folder(y_test=None)
    with pytest.raises(FileNotFoundError, match=r"^dataset 'mnist-10k': missing "
                                                r"t10k-labels-idx1-ubyte\[\.gz\] in .*/data$"):
        load_dataset("mnist-10k", folder)


def test_damaged_data_file(idx_folder):
    folder = idx_folder()
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: cannot be read \("):
        load_dataset("mnist-10k", folder)


# ------------------------------------------------------------------------ labels
def test_check_labels():
    y = torch.arange(20) % 10
    check_labels(y, 10, 20)
    with pytest.raises(ValueError, match=r"^labels: expected classes in \[0, 9\], got values "
                                         r"in \[-1, 9\]$"):
        check_labels(torch.cat([y, torch.tensor([-1])]), 10)
    with pytest.raises(ValueError, match=r"^labels: expected classes in \[0, 9\], got values "
                                         r"in \[0, 10\]$"):
        check_labels(torch.cat([y, torch.tensor([10])]), 10)
    with pytest.raises(ValueError, match=r"^labels: expected 21 labels, one per example, got 20$"):
        check_labels(y, 10, 21)
    with pytest.raises(ValueError, match=r"^labels: expected one dimension \[N\], got shape "
                                         r"\[20, 1\]$"):
        check_labels(y[:, None], 10)
    with pytest.raises(TypeError, match=r"^labels: expected an integer tensor, got torch.float32$"):
        check_labels(y.float(), 10)


def test_select_labels_is_balanced_seeded_and_checked():
    y = torch.arange(1000) % 10
    idx = select_labels(y, 100, seed=3)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert torch.bincount(y[idx], minlength=10).tolist() == [10] * 10
    assert torch.equal(idx, select_labels(y, 100, seed=3))
    assert not torch.equal(idx, select_labels(y, 100, seed=4))
    counts = torch.bincount(y[select_labels(y, 25, seed=0)], minlength=10)
    assert sorted(counts.tolist()) == [2] * 5 + [3] * 5
    with pytest.raises(ValueError, match=r"^num_labels: expected at most the 1000 examples "
                                         r"there are, got 1001$"):
        select_labels(y, 1001)
    short = torch.cat([y[y != 3], y[y == 3][:5]])  # class 3 has 5 examples
    with pytest.raises(ValueError, match=r"^num_labels: 100 labels spread over 10 classes need "
                                         r"10 examples of class 3, but there are 5$"):
        select_labels(short, 100)
    with pytest.raises(ValueError, match=r"^y: expected classes in \[0, 9\], got values in "
                                         r"\[0, 11\]"):
        select_labels(torch.tensor([0, 11]), 1)


# ------------------------------------------------------------------------------ CLI
def _cli(argv, capsys):
    """Run ``pyro-vae``; return its exit code and its stderr."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _train_argv(data, out, *extra):
    return ["train", "--dataset", "mnist-10k", "--data-dir", data, "--z-dim", "2",
            "--hidden", "8", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--quiet", "--out", out, *extra]


def _float_images(n, size=8, bad=None):
    x = np.random.default_rng(0).random((n, size, size)).astype(np.float32)
    x[0, 0, 1] = 0.0
    if bad is not None:
        x[0, 0, 0] = bad
    return x


# name -> (files of the data folder, extra flags, the message after "pyro-vae: error: ")
CLI_CASES = {
    "nan": (dict(x_train=_float_images(64, bad=np.nan)), [],
            "{data}/train-images-idx3-ubyte.gz: expected finite values, got NaN or inf in image 0"),
    "inf": (dict(x_test=_float_images(32, bad=np.inf)), [],
            "{data}/t10k-images-idx3-ubyte.gz: expected finite values, got NaN or inf in image 0"),
    "outside support": (dict(x_train=_float_images(64, bad=2.0)), [],
                        "train data: the bernoulli likelihood needs values in [0, 1], "
                        "got values in [0, 2]"),
    "image size": (dict(x_test=np.zeros((32, 7, 7), np.uint8)), [],
                   "test data: expected shape [N, 1, 8, 8], got [32, 1, 7, 7]"),
    "flat images": (dict(x_train=np.zeros((64, 64), np.uint8)), [],
                    "{data}/train-images-idx3-ubyte.gz: expected images shaped [N, H, W], "
                    "[N, C, H, W] with C in 1..4 or [N, H, W, C] with C in 1, 3, 4, "
                    "got shape [64, 64]"),
    "empty": (dict(x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.uint8)), [],
              "{data}/train-images-idx3-ubyte.gz: expected at least one image, got shape [0, 8, 8]"),
    "batch size 0": ({}, ["--batch-size", 0], "batch_size: expected a positive integer, got 0"),
    "z-dim 0": ({}, ["--z-dim", 0], "z_dim: expected a positive integer, got 0"),
    "lr 0": ({}, ["--lr", 0], "lr: expected a positive number, got 0.0"),
    "lr negative": ({}, ["--lr", -0.1], "lr: expected a positive number, got -0.1"),
    "clip-norm negative": ({}, ["--clip-norm", -1],
                           "clip_norm: expected a positive number, got -1.0"),
    "model": ({}, ["--model", "vea"], f"model: expected one of {sorted(MODELS)}, got 'vea' "
                                      "(did you mean 'vae'?)"),
    "guide": ({}, ["--guide", "iaff"], f"guide: expected one of {sorted(GUIDES)}, got 'iaff' "
                                       "(did you mean 'iaf'?)"),
    "prior": ({}, ["--prior", "vampp"], f"prior: expected one of {sorted(PRIORS)}, got 'vampp' "
                                        "(did you mean 'vamp'?)"),
    "likelihood": ({}, ["--likelihood", "gauss"],
                   f"likelihood: expected one of {sorted(LIKELIHOODS)}, got 'gauss'"),
    "elbo": ({}, ["--elbo", "TraceELBO"],
             f"elbo: expected one of {['auto', *sorted(ELBOS)]}, got 'TraceELBO' "
             "(did you mean 'Trace_ELBO'?)"),
    "dataset": ({}, ["--dataset", "cifar"],
                "dataset: expected one of ['mnist-10k', 'coloured-mnist-10k', 'mnist', 'fashion-mnist', 'kmnist'] "
                "or a path to a folder, .npy or .npz file, got 'cifar'"),
    "data dir missing": ({}, ["--data-dir", "/nonexistent/mnist"],
                         "data_dir: /nonexistent/mnist is not a folder"),
    "file missing": (dict(y_test=None), [],
                     "dataset 'mnist-10k': missing t10k-labels-idx1-ubyte[.gz] in {data}"),
    "label out of range": (dict(y_train=np.arange(64, dtype=np.uint8) % 11), [],
                           "dataset 'mnist-10k': train labels: expected classes in [0, 9], "
                           "got values in [0, 10]"),
    "labels too few": (dict(y_train=np.arange(63, dtype=np.uint8) % 10), [],
                       "dataset 'mnist-10k': train labels: expected 64 labels, one per "
                       "example, got 63"),
    "not writable": ({}, ["--out", "{tmp}/a-file/run"],
                     "out: cannot write to {tmp}/a-file/run (Not a directory)"),
    "out is a file": ({}, ["--out", "{tmp}/a-file"],
                      "out: expected a folder, got the file {tmp}/a-file"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses(case, tmp_path, idx_folder, capsys):
    files, extra, message = CLI_CASES[case]
    data, out = idx_folder(**files), tmp_path / "run"
    (tmp_path / "a-file").write_text("")
    extra = [str(a).format(tmp=tmp_path) for a in extra]
    code, err = _cli(_train_argv(data, out, *extra), capsys)
    assert code == 2
    assert err == "pyro-vae: error: " + message.format(data=data, tmp=tmp_path) + "\n"
    assert not (out / "config.json").exists() and not (out / CHECKPOINT).exists()


@pytest.fixture
def finished_run(tmp_path, idx_folder, capsys):
    data, out = idx_folder(), tmp_path / "run"
    assert _cli(_train_argv(data, out), capsys)[0] == 0
    return data, out


def test_cli_keeps_a_finished_run_unless_overwrite(finished_run, capsys):
    data, out = finished_run
    before = (out / CHECKPOINT).read_bytes()
    code, err = _cli(_train_argv(data, out), capsys)
    assert code == 2
    assert err == (f"pyro-vae: error: out: {out} already holds a run; pass --resume to continue "
                   "it or --overwrite to replace it\n")
    assert (out / CHECKPOINT).read_bytes() == before
    code, err = _cli(["train", "--resume", out, "--overwrite"], capsys)
    assert (code, err) == (2, "pyro-vae: error: overwrite: cannot be combined with resume "
                              "(resume continues the run in out, overwrite replaces it)\n")
    # --overwrite replaces the run, old checkpoints included.
    (out / "checkpoint-e0-s3.pt").write_bytes(before)
    argv = _train_argv(data, out, "--overwrite", "--epochs", "2", "--seed", "1")
    assert _cli(argv, capsys)[0] == 0
    state = load_checkpoint(out / CHECKPOINT)
    assert state["epoch"] == 2 and state["config"]["seed"] == 1
    assert sorted(p.name for p in out.glob("checkpoint*")) == ["checkpoint-e1-s0.pt", CHECKPOINT]


def test_cli_resume_continues_a_finished_run(finished_run, capsys):
    data, out = finished_run
    assert _cli(["train", "--resume", out, "--epochs", "2", "--quiet"], capsys)[0] == 0
    assert load_checkpoint(out / CHECKPOINT)["epoch"] == 2


@pytest.mark.parametrize("damage", ["truncate", "pickle"])
def test_cli_refuses_a_damaged_checkpoint(finished_run, damage, capsys):
    reasons = {
        "truncate": "PytorchStreamReader failed reading zip archive: failed finding central "
                    "directory",
        "pickle": "it refers to the Python object re._compile; a checkpoint holds only tensors "
                  "and plain data",
    }
    data, out = finished_run
    path = out / CHECKPOINT
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:2000])
    else:
        torch.save({"params": {}, "code": re.compile("x")}, path)  # a pickled global
    for argv in (["train", "--resume", out, "--epochs", "2"], ["evaluate", out]):
        code, err = _cli(argv, capsys)
        assert code == 2
        assert err == (f"pyro-vae: error: checkpoint: {path} is corrupt, truncated or unsafe; "
                       f"refusing to load it ({reasons[damage]})\n")


def test_cli_refuses_a_checkpoint_of_another_configuration(finished_run, capsys):
    data, out = finished_run
    before = (out / CHECKPOINT).read_bytes()
    code, err = _cli(["train", "--resume", out, "--z-dim", "3", "--lr", "0.01"], capsys)
    assert code == 2
    assert err == (f"pyro-vae: error: checkpoint: {out / CHECKPOINT} was written by another "
                   "configuration (lr is 0.001 there, 0.01 here; z_dim is 2 there, 3 here); "
                   "resume with its own settings, or start a new run\n")
    assert (out / CHECKPOINT).read_bytes() == before


def test_cli_resume_needs_a_run(tmp_path, capsys):
    code, err = _cli(["train", "--resume", tmp_path / "none"], capsys)
    assert (code, err) == (2, f"pyro-vae: error: resume: {tmp_path / 'none'} holds no run to "
                              "continue (no config.json); start one with --out\n")
