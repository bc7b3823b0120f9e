"""Every bad input tried on ``pyro-vae`` and on the Python API, and what the user sees.

Builds tiny MNIST-layout data folders (some damaged on purpose) and a finished run in
a temporary folder, runs ``pyro-vae`` on each bad input in this process and prints a
Markdown table: the input, the exit code and the line on stderr (temporary paths
shown as DATA, RUN and TMP). A second table gives the exception that the Python API
raises for each bad argument. docs/robustness.md holds the output.

    python benchmarks/bad_inputs.py
"""

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

import pyro

from pyro_vae import VAE, fit, load_dataset
from pyro_vae.checkpoint import CHECKPOINT
from pyro_vae.cli import main
from pyro_vae.data import IDX_FILES, check_labels, select_labels, write_idx


def data_folder(root: Path, name: str, **arrays) -> Path:
    """64 training and 32 test 8x8 images with labels; ``arrays`` replace (None: omit)."""
    rng = np.random.default_rng(0)
    default = {
        "x_train": rng.integers(0, 256, (64, 8, 8), dtype=np.uint8),
        "y_train": np.arange(64, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (32, 8, 8), dtype=np.uint8),
        "y_test": np.arange(32, dtype=np.uint8) % 10,
    }
    folder = root / name
    folder.mkdir()
    for key, stem in IDX_FILES.items():
        array = arrays.get(key, default[key])
        if array is not None:
            write_idx(folder / (stem + ".gz"), array)
    return folder


def floats(n: int, bad: float) -> np.ndarray:
    x = np.random.default_rng(0).random((n, 8, 8)).astype(np.float32)
    x[0, 0, :2] = 0.0, bad
    return x


def run(argv) -> tuple:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def main_table() -> None:
    logging.disable(logging.CRITICAL)
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    good = data_folder(root, "good")
    run_dir = root / "run"

    def train(data=good, *extra, out=root / "new"):
        return ["train", "--dataset", "mnist-10k", "--data-dir", data, "--z-dim", "2",
                "--hidden", "8", "--epochs", "1", "--device", "cpu", "--quiet",
                "--out", out, *extra]

    assert run(train(good, out=run_dir))[0] == 0
    (root / "a-file").write_text("")
    truncated = data_folder(root, "truncated")
    gz = truncated / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-20])

    def damaged_run(name, damage):
        folder = root / name
        folder.mkdir()
        for f in run_dir.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        path = folder / CHECKPOINT
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[:2000])
        else:
            torch.save({"params": {}, "code": Path("x")}, path)  # pickled globals
        return folder

    cases = [
        ("data with NaN (float32 IDX)",
         train(data_folder(root, "nan", x_train=floats(64, np.nan)))),
        ("data with inf", train(data_folder(root, "inf", x_test=floats(32, np.inf)))),
        ("data outside the likelihood's support",
         train(data_folder(root, "support", x_train=floats(64, 2.0)))),
        ("images of another size than the model's",
         train(data_folder(root, "size", x_test=np.zeros((32, 7, 7), np.uint8)))),
        ("images with the wrong number of dimensions",
         train(data_folder(root, "ndim", x_train=np.zeros((64, 64), np.uint8)))),
        ("empty data set", train(data_folder(root, "empty", x_train=np.zeros((0, 8, 8), np.uint8),
                                             y_train=np.zeros(0, np.uint8)))),
        ("batch size < 1", train(good, "--batch-size", 0)),
        ("z-dim < 1", train(good, "--z-dim", 0)),
        ("learning rate 0", train(good, "--lr", 0)),
        ("negative learning rate", train(good, "--lr", -0.1)),
        ("negative clip norm", train(good, "--clip-norm", -1)),
        ("negative checkpoint interval", train(good, "--checkpoint-steps", -1)),
        ("unknown model", train(good, "--model", "vea")),
        ("unknown guide", train(good, "--guide", "iaff")),
        ("unknown prior", train(good, "--prior", "vampp")),
        ("unknown likelihood", train(good, "--likelihood", "gauss")),
        ("unknown ELBO", train(good, "--elbo", "TraceELBO")),
        ("unknown dataset", train(good, "--dataset", "cifar")),
        ("unknown activation", train(good, "--activation", "sigmoidd")),
        ("data directory missing", train(root / "nowhere")),
        ("a data file missing", train(data_folder(root, "missing", y_test=None))),
        ("a data file truncated", train(truncated)),
        ("labels out of range",
         train(data_folder(root, "labels", y_train=np.arange(64, dtype=np.uint8) % 11))),
        ("labels of the wrong length",
         train(data_folder(root, "length", y_train=np.arange(63, dtype=np.uint8) % 10))),
        ("output folder under a file", train(good, out=root / "a-file" / "run")),
        ("output folder is a file", train(good, out=root / "a-file")),
        ("a finished run in --out", train(good, out=run_dir)),
        ("--resume with --overwrite", ["train", "--resume", run_dir, "--overwrite"]),
        ("--resume of a folder with no run", ["train", "--resume", root / "nowhere"]),
        ("truncated checkpoint (train --resume)",
         ["train", "--resume", damaged_run("run-truncated", "truncate"), "--epochs", 2]),
        ("checkpoint carrying pickled code (evaluate)",
         ["evaluate", damaged_run("run-pickle", "pickle")]),
        ("checkpoint of another configuration",
         ["train", "--resume", run_dir, "--z-dim", 3]),
    ]
    print("| bad input | exit | what the user sees on stderr |")
    print("| --- | --- | --- |")
    for name, argv in cases:
        code, line = run(argv)
        for path, label in ((root / "good", "DATA"), (run_dir, "RUN"), (root, "TMP")):
            line = line.replace(str(path), label)
        print(f"| {name} | {code} | `{line}` |")


def api_table() -> None:
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def with_value(index, value, base=x):
        out = base.clone()
        out.view(-1)[index] = value
        return out

    def fit_with(data=x, **kwargs):
        def call():
            pyro.clear_param_store()
            vae = VAE(x_shape=(1, 8, 8), z_dim=2, hidden=(8,))
            fit(vae.model, vae.guide, data, epochs=1, **kwargs)
        return call

    root = Path(tempfile.mkdtemp())
    (root / "a-file").write_text("")
    y = torch.arange(100) % 10
    cases = [
        ("data with NaN", fit_with(with_value(5, float("nan")))),
        ("test data with inf", fit_with(test_data=with_value(0, float("inf"))[:8])),
        ("data outside the support", fit_with(with_value(3, 1.5, with_value(0, 0.0)))),
        ("flattened images", fit_with(x.reshape(64, 64))),
        ("images of another size", fit_with(x[..., :7, :7])),
        ("integer images", fit_with((x > 0.5).long())),
        ("empty data set", fit_with(x[:0])),
        ("labels of another length", fit_with((x, torch.zeros(63, dtype=torch.long)))),
        ("batch_size=0", fit_with(batch_size=0)),
        ("batch_size='8'", fit_with(batch_size="8")),
        ("lr=0", fit_with(lr=0.0)),
        ("lr=-1e-3", fit_with(lr=-1e-3)),
        ("clip_norm=-1", fit_with(clip_norm=-1.0)),
        ("elbo='TraceELBO'", fit_with(elbo="TraceELBO")),
        ("run_dir under a file", fit_with(run_dir=root / "a-file" / "run")),
        ("VAE(z_dim=0)", lambda: VAE(z_dim=0)),
        ("VAE(guide='iaff')", lambda: VAE(guide="iaff")),
        ("load_dataset('cifar')", lambda: load_dataset("cifar")),
        ("load_dataset('mnist', missing folder)", lambda: load_dataset("mnist", root / "none")),
        ("check_labels(y with a 10, 10)", lambda: check_labels(torch.tensor([0, 10]), 10)),
        ("check_labels(y, 10, n=101)", lambda: check_labels(y, 10, 101)),
        ("select_labels(y, 101)", lambda: select_labels(y, 101)),
        ("select_labels(y, 90) with 5 of class 3",
         lambda: select_labels(torch.cat([y[y != 3], y[y == 3][:5]]), 90)),
    ]
    print("| bad argument | exception |")
    print("| --- | --- |")
    for name, call in cases:
        try:
            call()
            result = "(no error)"
        except Exception as err:  # the table shows whatever comes
            result = f"{type(err).__name__}: {err}".replace(str(root), "TMP")
        print(f"| {name} | `{result}` |")


if __name__ == "__main__":
    main_table()
    print()
    api_table()
