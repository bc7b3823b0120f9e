"""Sphinx extension: pages whose parts are generated from the package at build time.

A line ``<!-- generated: NAME -->`` in a page is replaced, when Sphinx reads the page,
by the Markdown that ``GENERATORS[NAME]`` returns:

``cli-reference``   one section per subcommand of ``pyro-vae``, from ``build_parser()``
``model-graphs``    the committed ``render_model`` graphs of every registered model
``more-modules``    ``automodule`` blocks for the modules the page does not document yet

Such pages are read again on every build, so a new subcommand, model or module shows
up without touching the docs.
"""

import pkgutil
import re
from pathlib import Path
from typing import Callable, Dict

from sphinx.application import Sphinx
from sphinx.util import logging

import cli_reference
import model_graphs

logger = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


def rst_to_markdown(text: str) -> str:
    """One line of a docstring in Markdown: roles (``:class:`~a.B` ``) and double
    backquotes become code spans; everything else is escaped."""
    text = re.sub(r":[\w:]+:`~?([^`]+)`", lambda m: f"`{m[1].rpartition('.')[2]}`"
                  if m[0].count("~") else f"`{m[1]}`", text)
    return cli_reference.escape(re.sub(r"``([^`]+)``", r"`\1`", text))


def model_graphs_page(app: Sphinx, docname: str, source: str) -> str:
    """A section per entry of ``MODELS``: its first docstring line and two graphs."""
    from pyro_vae.models import MODELS

    folder = Path(app.srcdir) / "graphs"
    fresh = model_graphs.sources()
    lines = []
    for name, cls in MODELS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[:1] or [""]
        lines += [f"## `{name}`: {cls.__name__}", "", rst_to_markdown(summary[0]), "",
                  "| model | guide |", "| --- | --- |"]
        cells = []
        for part in model_graphs.PARTS:
            stem = f"{name}-{part}"
            svg, gv = folder / f"{stem}.svg", folder / f"{stem}.gv"
            if not svg.is_file():
                logger.warning(f"docs/graphs/{stem}.svg is missing: run `make graphs`",
                               location=docname)
                cells.append("(not drawn yet)")
                continue
            if not gv.is_file() or gv.read_text() != fresh[stem]:
                logger.warning(f"docs/graphs/{stem}.svg is out of date with {cls.__name__}: "
                               "run `make graphs`", location=docname)
            cells.append(f"![{name} {part}](graphs/{stem}.svg)")
        lines += ["| " + " | ".join(cells) + " |", ""]
    return "\n".join(lines)


def more_modules(app: Sphinx, docname: str, source: str) -> str:
    """``automodule`` for every public ``pyro_vae`` module the page leaves out."""
    import pyro_vae

    documented = set(re.findall(r"automodule::\s*(\S+)", source))
    names = [m.name for m in pkgutil.walk_packages(pyro_vae.__path__, "pyro_vae.")
             if not any(p.startswith("_") for p in m.name.split("."))]
    lines = []
    for name in sorted(set(names) - documented):
        lines += [f"### `{name}`", "", "```{eval-rst}", f".. automodule:: {name}",
                  "   :members:", "```", ""]
    return "\n".join(lines) or "Every module is documented above."


GENERATORS: Dict[str, Callable[[Sphinx, str, str], str]] = {
    "cli-reference": lambda app, docname, source: cli_reference.reference(),
    "model-graphs": model_graphs_page,
    "more-modules": more_modules,
}


def fill(app: Sphinx, docname: str, source: list) -> None:
    def generate(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            logger.warning(f"no generator named {name!r}; known: {sorted(GENERATORS)}",
                           location=docname)
            return ""
        return GENERATORS[name](app, docname, source[0])

    source[0] = PLACEHOLDER.sub(generate, source[0])


def always_outdated(app: Sphinx, env, added, changed, removed) -> list:
    """Pages with generated parts, so that they follow the code even when unedited."""
    return [doc for doc in sorted(env.found_docs)
            if Path(env.doc2path(doc)).is_file()
            and PLACEHOLDER.search(Path(env.doc2path(doc)).read_text())]


def setup(app: Sphinx) -> dict:
    app.connect("source-read", fill)
    app.connect("env-get-outdated", always_outdated)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
