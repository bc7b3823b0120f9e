"""Every script in examples/ runs, with tiny flags, in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "swap_parts.py": ["--epochs", "1", "--num-train", "200", "--num-test", "10",
                      "--iw-samples", "5", "--z-dim", "4", "--hidden", "16"],
}


def test_every_example_has_a_test():
    scripts = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert scripts == set(EXAMPLES), f"examples without tiny flags here: {scripts - set(EXAMPLES)}"


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs(script):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *EXAMPLES[script]],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
