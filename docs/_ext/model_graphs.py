"""``pyro.render_model`` graphs of every model in ``pyro_vae.models.MODELS``.

``python docs/_ext/model_graphs.py docs/graphs`` (``make graphs``) writes, for each
registered name, ``NAME-model.gv`` / ``NAME-guide.gv`` (Graphviz source, compared with a
fresh rendering by ``tests/test_docs.py``) and the ``.svg`` the docs show, drawn by
Graphviz's ``dot``. The docs build only reads the committed SVGs, so it needs no ``dot``.
"""

import shutil
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch

import pyro

PARTS = ("model", "guide")


def example_args(model) -> Tuple[torch.Tensor, ...]:
    """A batch of two the model takes: ``(x, y)`` for a model of labelled data,
    ``(x,)`` for the others (a semi-supervised model then shows its label as latent)."""
    x = torch.zeros(2, *model.x_shape)
    if model.uses_labels and not model.semi_supervised:
        return x, torch.zeros(2, dtype=torch.long)
    return (x,)


def graphs(name: str, cls) -> Dict[str, "graphviz.Digraph"]:  # noqa: F821
    """``{"model": ..., "guide": ...}``: the plate, the sites, their distributions."""
    model = cls()
    args = example_args(model)
    return {part: pyro.render_model(getattr(model, part), model_args=args,
                                    render_distributions=True)
            for part in PARTS}


def sources() -> Dict[str, str]:
    """``{"NAME-PART": Graphviz source}`` for every registered model."""
    from pyro_vae.models import MODELS

    return {f"{name}-{part}": graph.source
            for name, cls in MODELS.items() for part, graph in graphs(name, cls).items()}


def write(folder: Path) -> None:
    """Write ``.gv`` and ``.svg`` for every registered model into ``folder``."""
    from pyro_vae.models import MODELS

    if shutil.which("dot") is None:
        sys.exit("make graphs: Graphviz's dot is not installed (Debian: apt-get install graphviz)")
    folder.mkdir(parents=True, exist_ok=True)
    for name, cls in MODELS.items():
        for part, graph in graphs(name, cls).items():
            stem = folder / f"{name}-{part}"
            stem.with_suffix(".gv").write_text(graph.source)
            stem.with_suffix(".svg").write_bytes(graph.pipe(format="svg"))
            print(f"wrote {stem}.gv and .svg")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "graphs"))
