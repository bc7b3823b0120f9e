"""Every script in examples/ runs with tiny flags; a new example without a test fails here."""

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_FLAGS = {
    "beta_vae.py": ["--epochs", "1", "--num-train", "400", "--betas", "0.5", "4",
                    "--z-dim", "3", "--traversal-dims", "2"],
}


def test_every_example_has_tiny_flags():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TINY_FLAGS)


@pytest.mark.parametrize("name", sorted(TINY_FLAGS))
def test_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *TINY_FLAGS[name], "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert any(tmp_path.glob("*.png"))


def test_beta_vae_example_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["beta_vae.py", *TINY_FLAGS["beta_vae.py"], "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "beta_vae.py"), run_name="__main__")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["beta"] for r in results] == [0.5, 4.0]
    assert all(r["test_loss"] == pytest.approx(r["recon"] + r["kl"]) for r in results)
    names = {p.name for p in tmp_path.glob("*.png")}
    assert names == {"tradeoff.png", "traversal_beta0.5.png", "traversal_beta4.png"}
