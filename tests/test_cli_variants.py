"""The variants from the command line: cvae, m2 with --labels, M1+M2 stacking, warm-up."""

import json

import numpy as np
import pytest

from pyro_vae.cli import main

TINY = ["--epochs", "1", "--z-dim", "4", "--hidden", "32", "--batch-size", "500", "--quiet"]


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cvae_train_and_sample_a_class(tmp_path, capsys):
    run = tmp_path / "cvae"
    assert main(["train", "--model", "cvae", "--out", str(run), *TINY]) == 0
    assert (run / "class_samples.png").is_file()
    assert main(["sample", str(run), "--label", "5", "--num", "6", "--out", str(tmp_path / "five.npy")]) == 0
    images = np.load(tmp_path / "five.npy")
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert main(["sample", str(run), "--label", "5", "--num", "6", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "10", "--out", str(tmp_path / "x.npy")]) == 2
    assert "y: expected labels in [0, 10), got values in [10, 10]" in capsys.readouterr().err


def test_m2_with_100_labels_logs_and_reports_test_accuracy(tmp_path, capsys):
    run = tmp_path / "m2"
    assert main(["train", "--model", "m2", "--labels", "100", "--out", str(run), *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == 100 and config["elbo"] == "auto"
    row = read_metrics(run)[-1]
    assert 0.0 <= row["test_accuracy"] <= 1.0 and np.isfinite(row["test_loss"])
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == pytest.approx(row["test_accuracy"])


def test_m1_m2_stacking_and_warmup(tmp_path, capsys):
    m1 = tmp_path / "m1"
    assert main(["train", "--out", str(m1), "--warmup", "linear", "--warmup-epochs", "2", *TINY]) == 0
    assert read_metrics(m1)[-1]["beta"] == pytest.approx(0.5)
    run = tmp_path / "m1m2"
    argv = ["train", "--model", "m2", "--labels", "50", "--features", str(m1), "--out", str(run)]
    capsys.readouterr()
    assert main([*argv, *TINY]) == 2
    assert "use --likelihood normal" in capsys.readouterr().err
    assert main([*argv, "--likelihood", "normal", *TINY]) == 0
    assert "test_accuracy" in read_metrics(run)[-1]
    assert main(["sample", str(run), "--label", "3", "--num", "2", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (2, 1, 28, 28)  # codes decoded by M1


@pytest.mark.parametrize("argv, message", [
    (["--model", "vae", "--labels", "100"], "labels: no such option here; --labels is an "
                                            "option of --model adgm or m2 or sdgm"),
    (["--model", "cvae", "--labels", "100"], "labels: no such option here; --labels is an "
                                             "option of --model adgm or m2 or sdgm"),
    (["--model", "m2", "--labels", "100000"], "labels: asked for 100000 labels, the training set has 8000"),
    (["--model", "m2", "--elbo", "Trace_ELBO"], "elbo: model 'm2' enumerates its label"),
    (["--model", "m2", "--enum-discrete", "exact"], "enum_discrete: expected one of"),
    (["--warmup", "cosine"], "warmup: expected one of ['cyclical', 'linear', 'none']"),
    (["--warmup", "linear", "--warmup-epochs", "0"], "warmup_epochs: expected a positive number"),
    (["--model", "m2", "--alpha", "-1"], "alpha: expected a non-negative weight"),
])
def test_bad_variant_flags_name_the_problem(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "run"), *argv, *TINY]) == 2
    assert message in capsys.readouterr().err


def test_label_for_an_unconditional_model_is_refused(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "5", "--out", str(tmp_path / "s.png")]) == 2
    assert "label: model 'vae' is not conditioned on a label" in capsys.readouterr().err
