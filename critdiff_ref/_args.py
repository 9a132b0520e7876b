"""Argument checks shared by the public functions: ValueError/TypeError naming the parameter and its range."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch


def real(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite float (``> 0`` when ``positive``); TypeError for non-reals (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {name}={value}")
    return value


def integer(name: str, value: object, lower: int, upper: int | None = None) -> int:
    """``value`` as an int in ``[lower, upper]`` (no upper bound when ``None``); TypeError for non-ints (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < lower or (upper is not None and value > upper):
        rng = f">= {lower}" if upper is None else f"in [{lower}, {upper}]"
        raise ValueError(f"{name} must be {rng}, got {name}={value}")
    return value


def float_tensor(x: object, name: str = "x") -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``: torch tensors pass (floating only); array-likes become float64."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
        return x, False
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or a real array, got {type(x).__name__}") from err
    return torch.from_numpy(arr), True


# -- command-line types: argparse reports "argument --flag: <message>" and exits 2 -----------------------
def cli_int(lower: int):
    """An argparse ``type`` accepting integers ``>= lower`` (the message states the minimum)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lower}, got {text!r}") from None
        if value < lower:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lower}, got {value}")
        return value

    parse.__name__ = f"integer >= {lower}"
    return parse


def cli_positive_float(text: str) -> float:
    """An argparse ``type`` accepting finite reals ``> 0``."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def cli_device(text: str) -> str:
    """An argparse ``type`` accepting a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ...)."""
    import argparse

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: critdiff runs on cpu, cuda or mps")
    return text


# -- settings objects: errors that know their field, so a command can name the flag the user typed ---------
class ConfigError(ValueError):
    """A bad setting: ValueError naming ``field``, its ``value`` and the ``allowed`` range (structured, so a
    command-line front end can re-word it with the flag the user typed: :func:`flag_errors`)."""

    def __init__(self, field: str, value: object, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field} must be {allowed}, got {field}={value!r}")


@contextlib.contextmanager
def flag_errors(flags: dict[str, str]) -> Iterator[None]:
    """Inside, a :class:`ConfigError` whose ``field`` is in ``flags`` (``{field: "--flag"}``) leaves as
    ``ValueError("--flag VALUE: must be ALLOWED")``; other errors pass unchanged."""
    try:
        yield
    except ConfigError as err:
        if err.field not in flags:
            raise
        value = " ".join(map(str, err.value)) if isinstance(err.value, (tuple, list)) else err.value
        raise ValueError(f"{flags[err.field]} {value}: must be {err.allowed}") from None
