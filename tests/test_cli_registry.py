"""The command line as a registry: help in groups, one-line errors with suggestions,
--version, any data from --data, compare, and the best checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image

from pyro_vae import __version__
from pyro_vae.cli import SUBCOMMANDS, build_parser, main

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "8", "--batch-size", "16", "--quiet"]


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_subcommand_is_registered_with_help():
    assert {"train", "evaluate", "sample", "reconstruct", "compare"} <= set(SUBCOMMANDS)
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(SUBCOMMANDS)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"pyro-vae {__version__}"


def test_help_is_grouped_and_lists_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for group in ("data:", "model (VAEConfig):", "optimisation:", "run:"):
        assert group in text
    assert "likelihood p(x|z); one of: bernoulli, continuous" in text and "(default: 400)" in text
    assert "--alpha" not in text
    with pytest.raises(SystemExit):
        main(["train", "--model", "m2", "--help"])
    text = capsys.readouterr().out
    assert "model (M2Config):" in text and "--alpha" in text


@pytest.mark.parametrize("argv, message", [
    (["train", "--z-dimm", "3"], "--z-dimm: no such option (did you mean --z-dim?)"),
    (["train", "--z-dim", "three"], "z_dim: expected an integer, got 'three'"),
    (["train", "--lr", "fast"], "lr: expected a number, got 'fast'"),
    (["train", "--hidden", "a,b"], "hidden: expected comma-separated integers, got 'a,b'"),
    (["train", "--prior", "gauss"], "prior: expected one of"),
    (["evaluate"], "the following arguments are required: run_dir"),
    (["trian"], "command: invalid choice: 'trian' (did you mean 'train'?)"),
])
def test_bad_command_lines_are_one_line(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and err.startswith(f"pyro-vae: error: {message}") and err.count("\n") == 1


def _images(folder):
    """A folder of 6x5 PNG digits in three class subfolders."""
    rng = np.random.default_rng(0)
    for k in range(3):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(
                folder / f"class{k}" / f"{i}.png")
    return folder


@pytest.mark.parametrize("kind", ["folder", "npy", "npz"])
def test_train_on_any_data(kind, tmp_path, capsys):
    rng = np.random.default_rng(0)
    if kind == "folder":
        data = _images(tmp_path / "images")
    elif kind == "npy":
        data = tmp_path / "x.npy"
        np.save(data, rng.integers(0, 256, (40, 6, 5), dtype=np.uint8))
    else:
        data = tmp_path / "x.npz"
        np.savez(data, x_train=rng.random((30, 1, 6, 5), dtype=np.float32),
                 y_train=np.arange(30) % 3, x_test=rng.random((10, 1, 6, 5), dtype=np.float32),
                 y_test=np.arange(10) % 3)
    out = tmp_path / "run"
    code, stdout, err = _run(["train", "--data", str(data), "--out", str(out), *TINY], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str(data) and config["x_shape"] == [1, 6, 5]
    assert _run(["evaluate", str(out), "--json"], capsys)[0] == 0


def test_exclude_class_and_image_size(tmp_path, capsys):
    data = _images(tmp_path / "images")
    out = tmp_path / "run"
    code, _, err = _run(["train", "--model", "cvae", "--data", str(data), "--exclude-class",
                         "2", "--image-size", "8", "--out", str(out), *TINY], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["exclude_class"] == [2] and config["x_shape"] == [1, 8, 8]


def test_resume_with_no_more_epochs_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (40, 6, 5), dtype=np.uint8))
    assert _run(["train", "--data", str(data), "--out", str(out), *TINY], capsys)[0] == 0
    code, _, err = _run(["train", "--resume", str(out), "--epochs", "1"], capsys)
    assert code == 0 and "has trained 1 epochs already; --epochs 1 asks for no more" in err


def test_compare_prints_what_differs_and_plots(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (40, 6, 5), dtype=np.uint8))
    for name, z in (("a", "2"), ("b", "3")):
        argv = ["train", "--data", str(data), "--out", str(tmp_path / name), *TINY]
        argv[argv.index("--z-dim") + 1] = z
        assert _run(argv, capsys)[0] == 0
    code, out, _ = _run(["compare", str(tmp_path / "a"), str(tmp_path / "b"),
                         "--out", str(tmp_path / "c.png")], capsys)
    assert code == 0 and (tmp_path / "c.png").is_file()
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["z_dim"] == ["2", "3"] and "lr" not in rows and "test_loss" in rows


def _trained(tmp_path, capsys, images, epochs, *flags):
    """A run of ``epochs`` epochs on ``images`` random 6 x 5 images, in tmp_path/run."""
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (images, 6, 5), dtype=np.uint8))
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), *flags, *TINY]
    argv[argv.index("--epochs") + 1] = str(epochs)
    assert _run(argv, capsys)[0] == 0
    return out


def test_evaluate_uses_the_best_checkpoint_and_says_which(tmp_path, capsys):
    out = _trained(tmp_path, capsys, 50, 2, "--val-fraction", "0.2")
    code, stdout, err = _run(["evaluate", str(out), "--json"], capsys)
    assert code == 0 and "best checkpoint" in err and json.loads(stdout)["checkpoint"] == "best.pt"
    code, stdout, err = _run(["evaluate", str(out), "--json", "--last"], capsys)
    assert "last checkpoint" in err and json.loads(stdout)["checkpoint"] == "checkpoint.pt"


def test_evaluate_reads_an_older_kept_checkpoint(tmp_path, capsys):
    out = _trained(tmp_path, capsys, 40, 3, "--keep-checkpoints", "3")
    code, stdout, err = _run(["evaluate", str(out), "--json", "--checkpoint",
                              "checkpoint-e1-s0.pt"], capsys)
    first = json.loads(stdout)
    assert code == 0 and "kept checkpoint, epoch 1" in err
    assert first["checkpoint"] == "checkpoint-e1-s0.pt" and first["epoch"] == 1
    last = json.loads(_run(["evaluate", str(out), "--json"], capsys)[1])
    assert last["epoch"] == 3 and last["test_loss"] != first["test_loss"]
    code, _, err = _run(["evaluate", str(out), "--checkpoint", "checkpoint-e9-s0.pt"], capsys)
    assert code != 0 and "checkpoint-e2-s0.pt" in err and "Traceback" not in err
    code, _, err = _run(["evaluate", str(out), "--checkpoint", "../x.npy"], capsys)
    assert code != 0 and "inside the run folder" in err
