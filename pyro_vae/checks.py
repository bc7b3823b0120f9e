"""Argument checks shared by the Python API and the CLI.

Each check raises before any training step, with one line that names the argument,
what was expected and what came: ``TypeError`` for a value of the wrong kind,
``ValueError`` for a value of the right kind that cannot work.
"""

import difflib
import math
import numbers
from typing import Collection

import torch


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def integer(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``; booleans and floats are refused."""
    kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
        minimum, f"an integer >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected {kind}, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return int(value)


def positive_number(name: str, value) -> float:
    """``value`` as a finite ``float`` greater than zero."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number, got {_describe(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def one_of(name: str, value, valid: Collection) -> None:
    """Raise unless ``value`` is one of ``valid``; the message lists the valid names,
    in their order for a list or tuple, sorted for a registry (dict) or set, and the
    closest one when ``value`` looks like a typo of it."""
    if value not in valid:
        names = list(valid) if isinstance(valid, (list, tuple)) else sorted(valid)
        close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name}: expected one of {names}, got {value!r}{hint}")


def finite(name: str, x: torch.Tensor) -> None:
    """Raise unless every value of a floating-point tensor is finite (no NaN, no inf)."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf value(s)")
