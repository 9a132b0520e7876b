"""Argument checks shared by the public functions: ValueError/TypeError naming the parameter and its range."""

from __future__ import annotations

import math

import numpy as np


def real(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite float (``> 0`` when ``positive``); TypeError for non-reals (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {name}={value}")
    return value
