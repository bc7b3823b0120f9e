"""Every Python snippet in the docs runs as written, in order, one namespace per page."""

import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["extending.md", "networks.md", "training.md"]


@pytest.mark.parametrize("page", PAGES)
def test_snippets_run(page):
    from pyro_vae.likelihoods import LIKELIHOODS
    from pyro_vae.models import MODELS

    snippets = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert snippets, f"docs/{page} has no Python snippet"
    registered = dict(LIKELIHOODS), dict(MODELS)
    namespace = {"__name__": "snippet"}
    try:
        for i, code in enumerate(snippets):
            exec(compile(textwrap.dedent(code), f"docs/{page} snippet {i}", "exec"), namespace)
    finally:  # snippets register parts; leave the registries as they were
        LIKELIHOODS.clear(), LIKELIHOODS.update(registered[0])
        MODELS.clear(), MODELS.update(registered[1])
