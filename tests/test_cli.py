"""`pyro-vae` end to end on a tiny configuration: train, evaluate, sample, reconstruct."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pyro_vae.cli import main

TINY = ["--epochs", "2", "--hidden", "32", "--z-dim", "4", "--batch-size", "256", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt",
            "samples.png", "reconstructions.png", "curves.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["z_dim"] == 4 and config["hidden"] == [32] and config["data"] == "mnist-10k"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "test_loss", "recon", "kl", "epoch_s", "images_per_s"} <= set(rows[0])
    assert rows[1]["test_loss"] == pytest.approx(rows[1]["recon"] + rows[1]["kl"])


def test_evaluate_json(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"test_loss", "recon", "kl"} <= set(result)
    # the checkpoint reproduces the run's last test loss up to Monte-Carlo noise
    assert result["test_loss"] == pytest.approx(last["test_loss"], rel=0.01)


def test_sample_png_and_npy(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "--num", "10", "--out", str(tmp_path / "s.npy")]) == 0
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (10, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert main(["sample", str(run_dir), "--num", "10", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_reconstruct(run_dir, tmp_path):
    assert main(["reconstruct", str(run_dir), "--num", "8", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_resume_continues_a_run(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "3", "--quiet"]) == 0
    rows = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_finished_run_is_not_overwritten(run_dir, capsys):
    assert main(["train", "--out", str(run_dir), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [
    (["--dataset", "cifar"], "dataset: expected one of"),
    (["--z-dim", "0"], "z_dim: expected a positive integer"),
    (["--lr", "-1"], "lr: expected a positive number"),
    (["--elbo", "Nope"], "elbo: expected one of"),
    (["--hidden", "a,b"], "hidden"),
])
def test_bad_flags_exit_2_with_one_line(flags, match, tmp_path, capsys):
    try:
        code = main(["train", "--out", str(tmp_path / "r"), *TINY, *flags])
    except SystemExit as exit:  # argparse rejects a flag's type itself
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and match in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_module_entry_point_reports_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pyro_vae", "sample", str(tmp_path), "--out", "x.png"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("pyro-vae: error: checkpoint:")
