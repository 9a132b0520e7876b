"""critdiff_ref: reference diffusion models on statistical-field-theory targets with exact answers."""

import importlib

from . import _moved, lattice, processes, scores, targets, validate
from .processes import OU, VE, VP, Brownian, RectifiedFlow
from .scores import exact_score
from .targets import (
    Density1D,
    EmpiricalDataset,
    GaussianField,
    GaussianMixture1D,
    Phi4Lattice,
    Phi4ZeroD,
    TwoDeltas,
    TwoGaussianMixture,
)

__version__ = "0.1.0"

_moved.install()  # old import paths the README once gave (critdiff_ref.mutants, ...), deprecated


def __getattr__(name: str):
    """``from critdiff_ref import condensation`` etc.: the deprecated stand-ins of :mod:`._moved`."""
    full = f"{__name__}.{name}"
    if full in _moved.MOVED:
        return importlib.import_module(full)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "lattice",
    "processes",
    "scores",
    "targets",
    "validate",
    "OU",
    "VE",
    "VP",
    "Brownian",
    "RectifiedFlow",
    "exact_score",
    "GaussianField",
    "GaussianMixture1D",
    "TwoGaussianMixture",
    "TwoDeltas",
    "EmpiricalDataset",
    "Density1D",
    "Phi4ZeroD",
    "Phi4Lattice",
    "__version__",
]
