"""Every script in examples/ runs with tiny flags, and none is left without a test."""

import json

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTS = Path(__file__).resolve().parent


def run_example(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    return runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_train_vae(tmp_path, monkeypatch):
    run_example("train_vae.py", ["--epochs", "1", "--num-train", "512", "--hidden", "32",
                                 "--z-dim", "4", "--out", str(tmp_path)], monkeypatch)
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "checkpoint.pt").is_file()


def test_swap_parts(monkeypatch, capsys):
    run_example("swap_parts.py", ["--epochs", "1", "--num-train", "200", "--num-test", "10",
                                  "--iw-samples", "5", "--z-dim", "4", "--hidden", "16"], monkeypatch)
    assert capsys.readouterr().out.strip()


def test_beta_vae(tmp_path, monkeypatch):
    run_example("beta_vae.py", ["--epochs", "1", "--num-train", "400", "--betas", "0.5", "4",
                                "--z-dim", "3", "--traversal-dims", "2", "--out", str(tmp_path)],
                monkeypatch)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["beta"] for r in results] == [0.5, 4.0]
    assert all(r["test_loss"] == pytest.approx(r["recon"] + r["kl"]) for r in results)
    names = {p.name for p in tmp_path.glob("*.png")}
    assert names == {"tradeoff.png", "traversal_beta0.5.png", "traversal_beta4.png"}


def test_custom_model_through_fit_train_and_the_shell(tmp_path, monkeypatch, capsys):
    import numpy as np

    from pyro_vae.cli import main

    run_example("custom_model.py", ["--epochs", "1", "--train-size", "256",
                                              "--out", str(tmp_path / "run")], monkeypatch)
    assert "test -ELBO" in capsys.readouterr().out
    assert (tmp_path / "run" / "samples.png").is_file()
    monkeypatch.syspath_prepend(str(EXAMPLES))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 1, 6, 5), np.float32))
    assert main(["train", "--model", "custom_model:StudentTVAE", "--data", str(tmp_path / "x.npy"),
                 "--epochs", "1", "--z-dim", "2", "--df", "5", "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0
    assert main(["sample", str(tmp_path / "cli"), "--num", "4",
                 "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 6, 5)


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_run_by_a_test(script):
    mentioned = any(f'"{script}"' in t.read_text() for t in TESTS.glob("test_*.py"))
    assert mentioned, f"examples/{script} is run by no test: add one with tiny flags"


def test_anomaly(tmp_path, monkeypatch, capsys):
    run_example("anomaly.py", ["--epochs", "1", "--num-train", "400", "--num-test", "200",
                               "--out", str(tmp_path)], monkeypatch)
    out = capsys.readouterr().out
    assert "classifier  AUROC" in out and "combined    AUROC" in out
    assert (tmp_path / "roc.png").is_file() and (tmp_path / "histograms.png").is_file()


def test_categorical_vae(tmp_path, monkeypatch, capsys):
    run_example("categorical_vae.py", ["--epochs", "1", "--num-train", "256", "--hidden", "32",
                                       "--out", str(tmp_path)], monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["relaxed", "straight-through", "score-function"]
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "traversal.png").is_file()


def test_vqvae(tmp_path, monkeypatch, capsys):
    run_example("vqvae.py", ["--epochs", "1", "--num-train", "256", "--num-codes", "16",
                             "--prior-epochs", "1", "--out", str(tmp_path)], monkeypatch)
    assert capsys.readouterr().out.startswith("test reconstruction MSE ")
    assert (tmp_path / "samples-transformer.png").is_file()
    assert (tmp_path / "samples-uniform.png").is_file()


def test_vaegan(tmp_path, monkeypatch, capsys):
    run_example("vaegan.py", ["--epochs", "1", "--num-train", "256", "--disc-channels",
                             "8", "16", "--out", str(tmp_path)], monkeypatch)
    assert "test -ELBO" in capsys.readouterr().out
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "reconstructions.png").is_file()
