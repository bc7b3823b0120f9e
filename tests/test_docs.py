"""The docs stay true: every Python snippet of every page runs, the generated pages cover
what the package has, and the code the pages include still exists.

Snippets run as written, in order, one namespace per page, in a temporary folder (so run
folders they write land there). A block that cannot run in a quick test (long training,
several processes) opts out with the line ``<!-- docs-test: skip (why) -->`` right above
its fence; the reason shows in the page's source.
"""

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

SNIPPET = re.compile(r"^(?:[ \t]*<!-- docs-test: skip \((?P<why>[^)]+)\) -->\n)?"
                     r"[ \t]*```python\n(?P<code>.*?)^[ \t]*```", re.S | re.M)
PAGES = sorted(p.name for p in DOCS.glob("*.md") if "```python" in p.read_text())


def snippets(page: str):
    """``(code, why_skipped)`` of each Python block of ``docs/page``."""
    return [(m["code"], m["why"]) for m in SNIPPET.finditer((DOCS / page).read_text())]


def test_every_python_block_is_collected():
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        assert len(snippets(page.name)) == text.count("```python"), page.name
        assert text.count("<!-- docs-test: skip") == sum(
            why is not None for _, why in snippets(page.name)), \
            f"docs/{page.name}: a skip marker must sit right above a ```python fence"
    assert {"quickstart.md", "math.md", "extending.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_snippets_run(page, tmp_path, monkeypatch):
    from pyro_vae.likelihoods import LIKELIHOODS
    from pyro_vae.models import MODELS

    monkeypatch.chdir(tmp_path)
    registered = dict(LIKELIHOODS), dict(MODELS)
    namespace = {"__name__": "snippet"}
    try:
        for i, (code, why) in enumerate(snippets(page)):
            if why is None:
                exec(compile(textwrap.dedent(code), f"docs/{page} snippet {i}", "exec"),
                     namespace)
    finally:  # snippets register parts; leave the registries as they were
        LIKELIHOODS.clear(), LIKELIHOODS.update(registered[0])
        MODELS.clear(), MODELS.update(registered[1])


def test_cli_reference_has_a_section_per_subcommand():
    import cli_reference
    from pyro_vae.cli import SUBCOMMANDS

    text = cli_reference.reference()
    headings = re.findall(r"^## `pyro-vae (\S+)`$", text, re.M)
    assert headings == list(SUBCOMMANDS)
    sections = dict(zip(headings, re.split(r"^## .*$", text, flags=re.M)[1:]))
    for name, section in sections.items():
        assert f"usage: pyro-vae {name}" in section
    assert "`--z-dim Z_DIM" in sections["train"]            # a config field's flag
    assert "with `--model m2`, also" in sections["train"]   # M2 adds its own flags
    assert "`--alpha ALPHA`" in sections["train"]


def test_cli_reference_walks_nested_subcommands_and_escapes_help():
    import argparse

    import cli_reference

    def build(model=None):
        parser = argparse.ArgumentParser(prog="tool")
        sub = parser.add_subparsers()
        outer = sub.add_parser("outer", description="a `code` span and $5 *not* emphasis")
        outer.add_argument("--rate", type=float, default=0.5, help="rate (default: %(default)s)")
        inner = outer.add_subparsers().add_parser("inner")
        inner.add_argument("path", help="where")
        if model == "big":
            outer.add_argument("--extra", help="only for big")
        return parser

    text = cli_reference.reference(build, models=["big"])
    assert "## `tool outer`" in text and "### `tool outer inner`" in text
    assert "a `code` span and \\$5 \\*not\\* emphasis" in text
    assert "`--rate RATE`\n: rate (default: 0.5)" in text
    assert "**with `--model big`, also**\n\n`--extra EXTRA`" in text


def test_included_code_exists():
    """Each ``literalinclude`` with ``:pyobject:`` names a function or class that exists."""
    assert "{literalinclude}" in (DOCS / "math.md").read_text()
    for page in DOCS.glob("*.md"):
        includes = re.findall(r"```\{literalinclude\} (\S+)\n(?::.*\n)*?:pyobject: (\S+)\n",
                              page.read_text())
        for path, name in includes:
            tree = ast.parse((page.parent / path).read_text())
            nodes = tree.body
            for part in name.split("."):
                found = [n for n in nodes if getattr(n, "name", None) == part]
                assert found, f"docs/{page.name}: {path} has no {name}"
                nodes = found[0].body


def test_every_registered_model_has_a_current_graph():
    pytest.importorskip("graphviz")
    import model_graphs

    for stem, source in model_graphs.sources().items():
        assert (DOCS / "graphs" / f"{stem}.svg").is_file(), f"no docs/graphs/{stem}.svg: make graphs"
        gv = DOCS / "graphs" / f"{stem}.gv"
        assert gv.is_file() and gv.read_text() == source, f"docs/graphs/{stem} is stale: make graphs"
