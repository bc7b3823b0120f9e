"""Sphinx configuration: ``make docs`` builds the site into docs/_build/html."""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]

import pyro_vae  # noqa: E402

project = "pyro_vae"
author = "the pyro_vae authors"
copyright = "the pyro_vae authors, Apache-2.0"
release = version = pyro_vae.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "pyro_vae_docs",  # docs/_ext: the CLI reference, model graphs, module list
]
source_suffix = {".md": "markdown"}
root_doc = "index"

# Markdown: $...$ and $$...$$ math, amsmath environments, definition lists (the CLI
# reference), ::: fences; headings get anchors down to ### for links into pages.
myst_enable_extensions = ["dollarmath", "amsmath", "deflist", "colon_fence"]
myst_heading_anchors = 3
# Curly quotes, but "--" stays two hyphens: it is how flags are spelt.
smartquotes_action = "qe"


def _toctree_pages(index: Path) -> set:
    """The documents listed in the toctrees of ``index``."""
    pages = set()
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index.read_text(), re.S):
        pages.update(line.strip() for line in block.splitlines()
                     if line.strip() and not line.lstrip().startswith(":"))
    return pages


# A page in docs/ that the index does not list yet (one being written) is not built,
# so it cannot fail the build; its snippets still run in tests/test_docs.py.
exclude_patterns = ["_build", "_ext", "graphs/*.gv", "Thumbs.db", ".DS_Store"] + sorted(
    page.name for page in HERE.glob("*.md")
    if page.stem != root_doc and page.stem not in _toctree_pages(HERE / "index.md"))

# API reference: members in source order, signatures with their type hints, docstrings
# in reST field lists (``:param x:``) or Google/NumPy sections (napoleon).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True, "ignore-module-all": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = f"pyro_vae {release}"
html_theme_options = {"description": "Variational autoencoders written the Pyro way",
                      "fixed_sidebar": True, "page_width": "1240px",
                      "sidebar_width": "240px", "body_max_width": "none"}
html_static_path = []
