"""The protocol every model follows, and what it declares to the runner and the CLI.

A model is an ``nn.Module`` with two Pyro functions, ``model(x=None, y=None, num=None)``
and ``guide(x, y=None, num=None)``, over one plate ``"data"``, and the utilities
``encode``, ``decode``, ``reconstruct`` and ``generate``, each taking an optional label
``y``. What the training loop and the CLI need to know about it is declared here as
class attributes, so they read declarations instead of probing:

=====================  ==========================================================
``uses_labels``        batches are ``(x, y)``; labels are checked before training
``semi_supervised``    labels may be missing (``-1``); :meth:`batching` mixes them
``elbo``               the Pyro ELBO used when none is named
``classifies``         :meth:`classify` gives ``q(y | x)``: ``test_accuracy`` is logged
``data_kind``          ``"image"`` (``x: [N, C, H, W]``) or ``"text"`` (``x: [N, T]`` token indices)
``capturable``         its loss can be captured once as a graph of tensor operations
``latent_kind``        ``"continuous"`` (codes in R^D) or ``"categorical"`` (one-hot rows);
                       codes have the shape :attr:`latent_shape`
``config_class``       its config: :class:`~pyro_vae.TrainConfig` plus its own options
=====================  ==========================================================

Each instance registers its networks in Pyro's global param store under its own
:attr:`name` (``"vae"``, then ``"vae_2"``, ...), so two models train side by side in
one process; checkpoints hold ``state_dict()`` and do not depend on that name.
"""

import itertools
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

import pyro

from ..checks import finite
from ..config import TrainConfig

# name -> the live model registered under it
_LIVE: "weakref.WeakValueDictionary[str, Model]" = weakref.WeakValueDictionary()


def _store_holds(scope: str) -> bool:
    return any(key.startswith(scope + ".") for key in pyro.get_param_store().keys())


def unique_name(base: str, name: Optional[str] = None) -> str:
    """``name`` if it is free, else the first free one of ``base``, ``base_2``, ...

    A name is taken while a live model holds it or Pyro's param store has entries under
    it (a model that was deleted without ``pyro.clear_param_store()``). An explicit
    ``name`` that is taken is refused: sharing it would share parameters silently.
    """
    if name is not None:
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(f"name: expected a non-empty string without '$$$', got {name!r}")
        if name in _LIVE or _store_holds(name):
            raise ValueError(
                f"name: {name!r} is already used by another model in Pyro's param store; "
                "pick another name, or call pyro.clear_param_store() first"
            )
        return name
    for candidate in itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2))):
        if candidate not in _LIVE and not _store_holds(candidate):
            return candidate
    raise AssertionError("unreachable")


class Model(nn.Module):
    """Base of every model: declarations, a scope in the param store, data checks.

    Subclasses set the class attributes they change and implement ``model``, ``guide``
    and the utilities. ``name`` scopes this instance's entries in Pyro's param store
    (default: the class name in lower case, made unique in this process).
    """

    uses_labels: bool = False
    semi_supervised: bool = False
    elbo: str = "Trace_ELBO"
    classifies: bool = False
    data_kind: str = "image"
    capturable: bool = True
    latent_kind: str = "continuous"
    config_class = TrainConfig

    def __init__(self, name: Optional[str] = None):
        super().__init__()
        self.name = unique_name(type(self).__name__.lower(), name)
        _LIVE[self.name] = self

    def register(self, *parts: str) -> None:
        """``pyro.module("<name>.<part>", self.<part>)`` for each of ``parts``."""
        for part in parts:
            pyro.module(f"{self.name}.{part}", getattr(self, part))

    def store_name(self, param: str) -> str:
        """Param-store name of ``named_parameters()`` entry ``param``:
        ``"decoder.net.0.weight"`` -> ``"vae_2.decoder$$$net.0.weight"``."""
        part, _, rest = param.partition(".")
        return f"{self.name}.{part}$$${rest}"

    def param_name(self, store_name: str) -> str:
        """The inverse of :meth:`store_name`; other names are returned as they are."""
        prefix = self.name + "."
        if not store_name.startswith(prefix):
            return store_name
        return store_name[len(prefix):].replace("$$$", ".", 1)

    @property
    def latent_shape(self) -> Tuple[int, ...]:
        """The shape of one code ``z`` that ``decode`` reads: ``(D,)``, or ``(N, K)``."""
        raise NotImplementedError(f"{type(self).__name__} does not declare its latent_shape")

    # ------------------------------------------------ what the runner asks for
    def batching(self, batch_size: int) -> Optional[Callable]:
        """The batching policy ``fit`` uses by default; ``None``: shuffled slices."""
        return None

    def svi_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """The parameters the SVI step optimises: all, less those of :meth:`extra_steps`."""
        return self.named_parameters()

    def extra_steps(self, optimizer: Callable) -> Dict[str, Any]:
        """Steps taken after each SVI step, each with its own optimiser built by
        ``optimizer(params)`` (e.g. a discriminator's; see
        :class:`~pyro_vae.steps.OptimizerStep`): name -> step. None by default."""
        return {}

    def callbacks(self, config: TrainConfig, x_train: torch.Tensor) -> List[Any]:
        """Callbacks that ``pyro-vae train`` adds to a run of this model, built from
        its ``config`` and training images ``x_train`` (e.g. a phase after the last
        epoch); raise ``ValueError`` for a config they cannot serve. None by default."""
        return []

    def metrics(self, x: torch.Tensor) -> Dict[str, float]:
        """Figures of this model beyond the ELBO on images ``x: [N, C, H, W]`` (e.g. a
        codebook's usage), which ``pyro-vae evaluate`` reports. None by default."""
        return {}

    def check_elbo(self, elbo) -> None:
        """Refuse an ELBO this model cannot be trained with (one line, before any step)."""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, K]``; only where ``classifies`` is declared."""
        raise NotImplementedError(f"{type(self).__name__} does not classify")

    def prepare_data(self, x: torch.Tensor, name: str = "data") -> torch.Tensor:
        """``x`` in this model's floating-point dtype, checked (see :meth:`check_data`).

        Integer and lower- or higher-precision floating-point arrays (numpy's float64
        among them) are cast once here, never inside a training step.
        """
        if not torch.is_tensor(x):
            raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name}: expected real-valued images, got dtype {x.dtype}")
        dtype = next(iter(self.parameters()), torch.empty(0)).dtype
        x = x.to(dtype)
        self.check_data(x, name)
        return x

    def prepare_labels(self, y: torch.Tensor, num: int, name: str = "labels",
                       allow_missing: bool = False) -> torch.Tensor:
        """``y`` as int64 labels, checked by :meth:`check_labels`."""
        if torch.is_tensor(y) and not (y.is_floating_point() or y.is_complex()
                                       or y.dtype == torch.bool):
            y = y.long()
        self.check_labels(y, num, name, allow_missing)
        return y

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise naming ``name`` unless ``x`` fits this model: dtype, shape, finite."""
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point tensor, got "
                f"{x.dtype if torch.is_tensor(x) else type(x).__name__}"
            )
        shape = tuple(getattr(self, "x_shape", x.shape[1:]))
        if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{name}: expected shape [N, {', '.join(map(str, shape))}], got {list(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one example, got an empty data set")
        finite(name, x)

    def check_labels(self, y: torch.Tensor, num: int, name: str = "labels",
                     allow_missing: bool = False) -> None:
        """Raise unless ``y`` holds ``num`` labels this model can use."""
        if self.uses_labels:
            raise NotImplementedError(f"{type(self).__name__} uses labels but cannot check them")


def batch_size_of(x: Optional[torch.Tensor], y: Optional[torch.Tensor],
                  num: Optional[int]) -> int:
    """The size of the ``"data"`` plate: ``len(x)``, else ``len(y)``, else ``num`` (default 1)."""
    for value in (x, y):
        if value is not None:
            if num is not None and num != len(value):
                raise ValueError(f"num: {num} disagrees with the {len(value)} items given")
            return len(value)
    return 1 if num is None else int(num)


def call(net: nn.Module, inputs: torch.Tensor, condition: Optional[torch.Tensor]) -> torch.Tensor:
    """``net(inputs)``, or ``net(inputs, condition)`` for a conditioned network."""
    return net(inputs) if condition is None else net(inputs, condition)


def check_output(part: str, net: nn.Module, inputs: Sequence[torch.Tensor],
                 expected: Sequence[int]) -> None:
    """Run ``net`` once on a dummy batch of two and refuse an output of the wrong shape.

    In eval mode, on the network's own device: a batch norm's statistics stay untouched."""
    device = next(iter(net.parameters()), torch.empty(0)).device
    training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(*(t.to(device) for t in inputs))
    except Exception as err:  # a user's network: say which part failed, and how
        raise ValueError(
            f"{part}: calling it on a batch of shape {list(inputs[0].shape)} failed "
            f"({type(err).__name__}: {err})"
        ) from None
    finally:
        net.train(training)
    if not torch.is_tensor(out) or tuple(out.shape) != tuple(expected):
        got = list(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"{part}: expected an output of shape {list(expected)}, got {got}")
