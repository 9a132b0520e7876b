"""Public Hypothesis strategies for invariant suites (valid values built directly, no ``assume``).

Sizes are kept small by default so a derandomized CI profile stays fast; pass larger bounds for
thorough runs.  Randomness inside a test comes from :func:`seeds` turned into a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from .processes import OU, VE, VP, Brownian, Process
from .targets import GaussianField, GaussianMixture1D, TwoGaussianMixture

__all__ = [
    "lattice_sizes",
    "dimensions",
    "lattices",
    "masses",
    "gaussian_fields",
    "processes",
    "diffusion_times",
    "gaussian_mixtures",
    "two_peak_mixtures",
    "seeds",
    "generators",
]

# Default largest L per dimension: V stays <= 4096 so exact per-mode work is instant.
_MAX_L = {1: 64, 2: 16, 3: 8}


def dimensions(min_d: int = 1, max_d: int = 3) -> st.SearchStrategy[int]:
    return st.integers(min_d, max_d)


def lattice_sizes(d: int = 2, min_L: int = 4, max_L: int | None = None) -> st.SearchStrategy[int]:
    """Even and odd L in ``[min_L, max_L]`` (default max keeps V = L^d <= 4096)."""
    return st.integers(min_L, max_L if max_L is not None else _MAX_L.get(d, 4))


@st.composite
def lattices(draw, min_d: int = 1, max_d: int = 3, min_L: int = 4) -> tuple[int, int]:
    """``(L, d)`` pairs."""
    d = draw(dimensions(min_d, max_d))
    return draw(lattice_sizes(d, min_L=min_L)), d


def masses(max_r: float = 4.0, allow_critical: bool = True) -> st.SearchStrategy[float]:
    """Masses ``r >= 0``: exactly 0 (critical) with high probability, else in ``[1e-3, max_r]``."""
    pos = st.floats(1e-3, max_r, allow_nan=False, allow_infinity=False)
    return st.one_of(st.just(0.0), pos) if allow_critical else pos


@st.composite
def gaussian_fields(draw, min_d: int = 1, max_d: int = 3, allow_critical: bool = True) -> GaussianField:
    L, d = draw(lattices(min_d, max_d))
    return GaussianField(L, d, draw(masses(allow_critical=allow_critical)))


@st.composite
def processes(draw, kinds: tuple[str, ...] = ("OU", "VE", "VP", "Brownian")) -> Process:
    """Forward processes with valid parameters (VE sigma in [2, 50], VP 0 < beta_min < beta_max)."""
    kind = draw(st.sampled_from(kinds))
    if kind == "OU":
        return OU(T=draw(st.floats(1.0, 8.0)))
    if kind == "VE":
        return VE(sigma=draw(st.floats(2.0, 50.0)), T=1.0)
    if kind == "VP":
        bmin = draw(st.floats(0.01, 1.0))
        return VP(beta_min=bmin, beta_max=bmin + draw(st.floats(1.0, 25.0)), T=1.0)
    return Brownian(sigma=draw(st.floats(0.2, 5.0)), T=draw(st.floats(0.5, 4.0)))


def diffusion_times(process: Process, min_fraction: float = 0.0, max_fraction: float = 1.0) -> st.SearchStrategy[float]:
    """Times in ``[min_fraction T, max_fraction T]``."""
    return st.floats(min_fraction * process.T, max_fraction * process.T, allow_nan=False)


@st.composite
def gaussian_mixtures(draw, max_components: int = 4) -> GaussianMixture1D:
    """Mixtures with weights >= 0.05 (normalised exactly), means in [-3, 3], stds in [0.2, 2]."""
    n = draw(st.integers(1, max_components))
    raw = draw(st.lists(st.floats(1.0, 20.0), min_size=n, max_size=n))
    total = math.fsum(raw)
    w = [x / total for x in raw]
    w[-1] = 1.0 - math.fsum(w[:-1])
    means = draw(st.lists(st.floats(-3.0, 3.0), min_size=n, max_size=n))
    stds = draw(st.lists(st.floats(0.2, 2.0), min_size=n, max_size=n))
    return GaussianMixture1D(tuple(w), tuple(means), tuple(stds))


@st.composite
def two_peak_mixtures(draw) -> TwoGaussianMixture:
    return TwoGaussianMixture(draw(st.floats(0.0, 3.0)), draw(st.floats(0.1, 2.0)))


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**31 - 1)


@st.composite
def generators(draw, device: str = "cpu") -> torch.Generator:
    """A seeded ``torch.Generator`` (Hypothesis seeds ``random``/numpy, not torch)."""
    return torch.Generator(device=device).manual_seed(draw(seeds()))
