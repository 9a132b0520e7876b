"""critdiff_ref: reference diffusion models on statistical-field-theory targets with exact answers."""

from . import lattice, processes, scores, targets, validate
from .processes import OU, VE, VP, Brownian
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
