"""Model/guide pairs, one file each; :data:`MODELS` finds one by name.

A new model is one class following :class:`~pyro_vae.models.base.Model` and one call,
``register_model("name", MyModel)``; ``pyro-vae train --model package.module:MyModel``
imports and registers it from the shell.
"""

import importlib
import inspect
from typing import Any, Dict, Type

from .adgm import ADGM, SDGM
from .base import Model
from .categorical import CategoricalVAE
from .cvae import CVAE
from .hvae import HVAE
from .m2 import M2
from .sentence import SentenceVAE
from .vae import VAE
from .vaegan import VAEGAN
from .vqvae import VQVAE

MODELS: Dict[str, Type[Model]] = {
    "vae": VAE,
    "cvae": CVAE,
    "m2": M2,
    "adgm": ADGM,
    "sdgm": SDGM,
    "categorical": CategoricalVAE,
    "vqvae": VQVAE,
    "vaegan": VAEGAN,
    "hvae": HVAE,
    "sentence": SentenceVAE,
}


def register_model(name: str, cls: Type[Model]) -> Type[Model]:
    """Make ``cls`` known as ``name`` to :func:`~pyro_vae.train`, the CLI and ``load_run``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, Model)):
        raise TypeError(f"cls: expected a subclass of pyro_vae.models.Model, got {cls!r}")
    known = MODELS.get(name, cls)
    if known.__qualname__ != cls.__qualname__:  # the same class re-imported replaces itself
        raise ValueError(f"name: {name!r} already names {known.__name__}")
    MODELS[name] = cls
    return cls


def model_class(name: str) -> Type[Model]:
    """The model registered as ``name``, or imported from ``"package.module:Class"``."""
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        from ..checks import one_of

        one_of("model", name, MODELS)
    module_name, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model: cannot import {name!r} ({err})") from None
    return register_model(name, cls)


def model_defaults(cls: Type[Model]) -> Dict[str, Any]:
    """The constructor defaults of ``cls``, those it inherits through ``**options`` included."""
    out: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" not in vars(klass) or not issubclass(klass, Model):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.default is not p.empty:
                out[p.name] = p.default
    return out


__all__ = ["ADGM", "CVAE", "CategoricalVAE", "HVAE", "M2", "MODELS", "Model", "SDGM",
           "SentenceVAE", "VAE", "VAEGAN", "VQVAE", "model_class", "model_defaults",
           "register_model"]
