"""Targets with exactly known facts (THEORY 2, 6, 7, 8)."""

from .discrete import EmpiricalDataset, TwoDeltas
from .gaussian_field import GaussianField
from .mixtures import GaussianMixture1D, TwoGaussianMixture
from .phi4 import Density1D, Phi4Lattice, Phi4ZeroD

__all__ = [
    "GaussianField",
    "GaussianMixture1D",
    "TwoGaussianMixture",
    "TwoDeltas",
    "EmpiricalDataset",
    "Density1D",
    "Phi4ZeroD",
    "Phi4Lattice",
]
