"""Two deltas under diffusion are the Curie–Weiss magnet (THEORY 7).

Two deltas ``±mu``:  ``<y> = mu tanh(beta a mu x)``; in ``m = x/(a mu)`` the
zeros of the score (the modes of ``p_t``; for ``gamma = 0`` the fixed points of the reverse
drift) solve ``m = tanh(K m)`` with the coupling ``K = a^2 mu^2 / Xi`` (Brownian, ``mu = 1``:
``K = 1/(t sigma^2)``, critical at ``t_c = 1/sigma^2``).  With a field,
``m = tanh(K (m + h))``; these are the stationary points of the Landau landscape
``f(m) = m^2/2 - K^{-1} ln cosh(K (m + h))``  (``f'(m) = m - tanh(K (m + h))``,
``f'' = 1 - K (1 - m^2)`` at a fixed point), which at ``h = 0`` is ``-K^{-1} ln p_t`` up to a
constant.  Expanding, ``f = (1 - K) m^2/2 + K^3 m^4/12 + O(m^6)``: ``m^2 -> 3 (K - 1)`` and
``chi = K (1 - m^2) / (1 - K (1 - m^2))`` diverges as ``|K - 1|^{-1}`` (amplitude 1 above,
1/2 below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from scipy import optimize

from .._args import real as _real
from ..processes import Process
from ..targets.discrete import noise_level

__all__ = [
    "FixedPoint",
    "coupling",
    "critical_time",
    "curie_weiss_fixed_points",
    "curie_weiss_magnetisation",
    "curie_weiss_susceptibility",
    "landau_free_energy",
    "two_delta_fixed_points",
]

Array = Union[float, np.ndarray, torch.Tensor]




def _log_cosh(u: Array) -> Array:
    """``ln cosh u = logaddexp(u, -u) - ln 2``: no overflow, no threshold cut-off, smooth at 0 under autograd."""
    xp = torch if isinstance(u, torch.Tensor) else np
    return xp.logaddexp(u, -u) - math.log(2.0)




@dataclass(frozen=True)
class FixedPoint:
    """A solution of ``m = tanh(K (m + h))``: ``curvature = f''(m) = 1 - K sech^2(K (m + h))``
    (stable iff > 0), Landau ``free_energy = f(m)``, ``susceptibility = dm/dh``."""

    m: float
    stable: bool
    curvature: float
    free_energy: float
    susceptibility: float


def coupling(process: Process, t: float, mu: float = 1.0) -> float:
    """Curie–Weiss coupling ``K = a(t)^2 mu^2 / Xi(t)`` of two deltas ``±mu`` (Brownian: ``mu^2/(t sigma^2)``)."""
    mu = _real("mu", mu, positive=True)
    a, Xi = noise_level(process, t)
    return a * a * mu * mu / Xi


def critical_time(process: Process, mu: float = 1.0) -> float:
    """Symmetry-breaking time ``t_c``: ``K(t_c) = 1`` (Brownian: ``mu^2/sigma^2``, THEORY 7's ``1/sigma^2``).

    ``K = a^2 mu^2 / Xi`` decreases in ``t`` for every process here, so the root is unique; brentq
    on ``ln K``.  Returns ``inf`` when ``K > 1`` on all of ``(0, T]`` (symmetry never restored).
    """
    mu = _real("mu", mu, positive=True)

    def log_K(t: float) -> float:
        return 2 * math.log(float(process.a(t)) * mu) - math.log(float(process.Xi(t)))

    if log_K(process.T) > 0:
        return math.inf
    lo = process.T
    while log_K(lo) <= 0:  # K -> inf as t -> 0 since Xi -> 0
        lo *= 0.5
    return optimize.brentq(log_K, lo, process.T, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


def landau_free_energy(m: Array, beta: float, h: float = 0.0) -> Array:
    """Landau landscape ``f(m) = m^2/2 - beta^{-1} ln cosh(beta (m + h))`` (THEORY 7; module docstring).

    Stationary points are the fixed points ``m = tanh(beta (m + h))``; ``f(0) = 0`` at ``h = 0`` (the
    ``-beta^{-1} ln 2`` constant of ``-beta^{-1} ln p_t`` is dropped).  Elementwise, numpy or torch.
    """
    beta = _real("beta", beta, positive=True)
    h = _real("h", h)
    return 0.5 * m * m - _log_cosh(beta * (m + h)) / beta


def _fixed_point(m: float, beta: float, h: float) -> FixedPoint:
    sech2 = 1.0 - math.tanh(beta * (m + h)) ** 2
    curv = 1.0 - beta * sech2
    chi = beta * sech2 / curv if curv != 0 else math.inf
    return FixedPoint(m, curv > 0, curv, float(landau_free_energy(m, beta, h)), chi)


def curie_weiss_fixed_points(beta: float, h: float = 0.0) -> tuple[FixedPoint, ...]:
    """All solutions of ``m = tanh(beta (m + h))`` in increasing ``m`` (THEORY 7).

    ``G(m) = m - tanh(beta (m + h))`` has ``G(-1) < 0 < G(1)`` and, for ``beta > 1``, turning points
    at ``m = -h ± arccosh(sqrt(beta))/beta``; brentq on each of the <= 3 monotone pieces with a sign
    change (a tangent root at a turning point is kept).  One root for ``beta <= 1`` or a strong field.
    """
    beta = _real("beta", beta, positive=True)
    h = _real("h", h)

    def G(m: float) -> float:
        return m - math.tanh(beta * (m + h))

    edges = [-1.0, 1.0]
    if beta > 1.0:
        c = math.acosh(math.sqrt(beta)) / beta
        edges = sorted({-1.0, 1.0, *(min(1.0, max(-1.0, -h + s * c)) for s in (-1, 1))})
    tol = 4 * np.finfo(float).eps
    roots: list[float] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        g_lo, g_hi = G(lo), G(hi)
        if g_lo == 0.0:
            roots.append(lo)
        elif g_lo * g_hi < 0:
            roots.append(optimize.brentq(G, lo, hi, xtol=1e-300, rtol=tol, maxiter=500))
    if G(edges[-1]) == 0.0:
        roots.append(edges[-1])
    roots = sorted(set(roots))
    return tuple(_fixed_point(m, beta, h) for m in roots)


def curie_weiss_magnetisation(beta: float, h: float = 0.0) -> float:
    """Equilibrium ``m(beta, h)``: the global minimum of ``f``, i.e. the outermost root on the side of ``h``.

    ``f(m; h) - f(-m; h) = -beta^{-1} [ln cosh(beta (m + h)) - ln cosh(beta (m - h))] < 0`` for
    ``m h > 0``, so the largest root (``h >= 0``; at ``h = 0`` the ``m >= 0`` branch) or the smallest
    (``h < 0``) is the minimum; no comparison of nearly equal ``f`` values is needed.
    """
    fps = curie_weiss_fixed_points(beta, h)
    return fps[-1].m if float(h) >= 0 else fps[0].m


def curie_weiss_susceptibility(beta: float, h: float = 0.0) -> float:
    """``chi = dm/dh = beta (1 - m^2) / (1 - beta (1 - m^2))`` on the equilibrium branch (THEORY 7)."""
    m = curie_weiss_magnetisation(beta, h)
    q = float(beta) * (1.0 - m * m)
    return q / (1.0 - q)


def two_delta_fixed_points(process: Process, t: float, mu: float = 1.0) -> tuple[float, ...]:
    """Zeros of the exact two-delta score at time ``t``: ``x* = a mu m`` with ``m = tanh(K m)``,
    ``K = a^2 mu^2 / Xi`` (THEORY 7); for ``gamma = 0`` (Brownian, VE) the reverse-drift fixed points."""
    a = noise_level(process, t)[0]
    mu = _real("mu", mu, positive=True)
    return tuple(a * mu * fp.m for fp in curie_weiss_fixed_points(coupling(process, t, mu)))
