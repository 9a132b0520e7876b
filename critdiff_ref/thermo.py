"""Diffusion as equilibrium statistical mechanics (THEORY 7): posterior ensemble and Curie–Weiss.

Three pictures of the same posterior ``p(y | x_t = x)`` over the clean data:

1. **Boltzmann ensemble** (any discrete ``p_0``, any process).  Completing the square in
   ``-|x - a y|^2 / (2 Xi)`` gives ``p(y | x) ∝ p_0(y) exp(-beta H(y; x))`` with the inverse
   temperature ``beta = 1/Xi(t)`` (Brownian: ``1/(t sigma^2)``) and the energy
   ``H(y; x) = a^2 |y|^2 / 2 - a x.y``.  The partition function ``Z = sum_j p_0(y_j) e^{-beta H_j}``
   and free energy ``F = -beta^{-1} ln Z`` then satisfy, exactly,

       ln p_t(x) = -|x|^2 / (2 Xi) - beta F - (D/2) ln(2 pi Xi),     -grad_x F = a <y>,
       score = (a <y> - x) / Xi,   d<y>/dx = beta a Cov_post   (fluctuation–dissipation),
       F = U - beta^{-1} (S - ln N)  with U = <H>, S = -sum w ln w   (empirical data, p_0 = 1/N).

   At ``a = 1`` (Brownian) this is THEORY 7's ``H = beta (|y|^2/2 - x.y)`` and ``<y> = -grad F``.
2. **Curie–Weiss** (two deltas ``±mu``).  ``<y> = mu tanh(beta a mu x)``; in ``m = x/(a mu)`` the
   zeros of the score (the modes of ``p_t``; for ``gamma = 0`` the fixed points of the reverse
   drift) solve ``m = tanh(K m)`` with the coupling ``K = a^2 mu^2 / Xi`` (Brownian, ``mu = 1``:
   ``K = 1/(t sigma^2)``, critical at ``t_c = 1/sigma^2``).  With a field,
   ``m = tanh(K (m + h))``; these are the stationary points of the Landau landscape
   ``f(m) = m^2/2 - K^{-1} ln cosh(K (m + h))``  (``f'(m) = m - tanh(K (m + h))``,
   ``f'' = 1 - K (1 - m^2)`` at a fixed point), which at ``h = 0`` is ``-K^{-1} ln p_t`` up to a
   constant.  Expanding, ``f = (1 - K) m^2/2 + K^3 m^4/12 + O(m^6)``: ``m^2 -> 3 (K - 1)`` and
   ``chi = K (1 - m^2) / (1 - K (1 - m^2))`` diverges as ``|K - 1|^{-1}`` (amplitude 1 above,
   1/2 below).
3. The random-energy (condensation) picture of finite data sets lives in
   :mod:`critdiff_ref.condensation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from scipy import optimize

from .processes import Process
from .targets.discrete import EmpiricalDataset, TwoDeltas, noise_level

__all__ = [
    "inverse_temperature",
    "log_partition_function",
    "free_energy",
    "internal_energy",
    "posterior_entropy",
    "magnetisation",
    "posterior_covariance",
    "susceptibility",
    "participation_ratio",
    "FixedPoint",
    "coupling",
    "critical_time",
    "curie_weiss_fixed_points",
    "curie_weiss_magnetisation",
    "curie_weiss_susceptibility",
    "landau_free_energy",
    "two_delta_fixed_points",
    "thermo_report",
    "format_thermo_report",
    "add_thermo_parser",
    "run_thermo",
]

Discrete = Union[EmpiricalDataset, TwoDeltas]
Array = Union[float, np.ndarray, torch.Tensor]


def _check_target(target: object) -> None:
    if not isinstance(target, (EmpiricalDataset, TwoDeltas)):
        raise TypeError(f"target must be an EmpiricalDataset or TwoDeltas (a discrete p_0), got {type(target).__name__}")


def _check_x(x: object) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {x!r:.60}")


def _real(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {name}={value}")
    return value


# --------------------------------------------------------------------------------------------
# 1. The posterior Boltzmann ensemble
# --------------------------------------------------------------------------------------------


def _log_cosh(u: Array) -> Array:
    """``ln cosh u = logaddexp(u, -u) - ln 2``: no overflow, no threshold cut-off, smooth at 0 under autograd."""
    xp = torch if isinstance(u, torch.Tensor) else np
    return xp.logaddexp(u, -u) - math.log(2.0)


def inverse_temperature(process: Process, t: float) -> float:
    """``beta = 1 / Xi(t)`` (THEORY 7; Brownian ``1/(t sigma^2)``); ``t > 0``."""
    return 1.0 / noise_level(process, t)[1]


def _energies(target: EmpiricalDataset, x: torch.Tensor, a: float) -> torch.Tensor:
    """``H_j(x) = a^2 |y_j|^2 / 2 - a x.y_j``, shape ``(*batch, N)``."""
    xf, y, batch = target._flat(x)
    H = 0.5 * a * a * (y * y).sum(-1) - a * (xf @ y.T)
    return H.reshape(*batch, target.N)


def log_partition_function(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``ln Z = ln sum_j p_0(y_j) exp(-beta H_j)``, ``H_j = a^2 |y_j|^2/2 - a x.y_j`` (THEORY 7).

    Empirical data: shape ``(*batch,)``.  Two deltas act per site: ``ln Z = ln cosh(beta a mu x) -
    beta a^2 mu^2 / 2`` elementwise, shape like ``x`` (sites are independent; sum for the total).
    """
    _check_target(target)
    _check_x(x)
    a, Xi = noise_level(process, t)
    if isinstance(target, TwoDeltas):
        u = (a * target.mu / Xi) * x
        return _log_cosh(u) - 0.5 * a * a * target.mu**2 / Xi
    return torch.logsumexp(-_energies(target, x, a) / Xi, dim=-1) - math.log(target.N)


def free_energy(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``F(x, t) = -beta^{-1} ln Z`` with ``beta = 1/Xi`` (THEORY 7); ``-grad_x F = a <y>``.

    Related to the noised density by ``ln p_t(x) = -|x|^2/(2 Xi) - beta F - (D/2) ln(2 pi Xi)``.
    """
    Xi = noise_level(process, t)[1]
    return -Xi * log_partition_function(target, x, process, t)


def internal_energy(target: EmpiricalDataset, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``U = <H> = sum_j w_j H_j`` (THEORY 7), shape ``(*batch,)``."""
    if not isinstance(target, EmpiricalDataset):
        raise TypeError(f"target must be an EmpiricalDataset, got {type(target).__name__}")
    _check_x(x)
    a, _ = noise_level(process, t)
    return (target.log_weights(x, process, t).exp() * _energies(target, x, a)).sum(-1)


def posterior_entropy(target: EmpiricalDataset, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """Shannon entropy of the posterior weights ``S = -sum_j w_j ln w_j`` (0 condensed, ln N uniform)."""
    if not isinstance(target, EmpiricalDataset):
        raise TypeError(f"target must be an EmpiricalDataset, got {type(target).__name__}")
    _check_x(x)
    lw = target.log_weights(x, process, t)
    return -(lw.exp() * lw).sum(-1)


def magnetisation(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``<y>_{x,t}`` (THEORY 7): softmax mean for data sets, ``mu tanh(beta a mu x)`` for two deltas."""
    _check_target(target)
    _check_x(x)
    return target.posterior_mean(x, process, t)


def posterior_covariance(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``Cov_post(y | x)``: ``(*batch, D, D)`` for data sets; per-site variance ``mu^2 sech^2(beta a mu x)``
    (shape like ``x``) for two deltas, whose sites are independent."""
    _check_target(target)
    _check_x(x)
    if isinstance(target, TwoDeltas):
        a, Xi = noise_level(process, t)
        return target.mu**2 / torch.cosh(a * target.mu * x / Xi) ** 2
    return target.posterior_covariance(x, process, t)


def susceptibility(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``chi = d<y>/dx = beta a Cov_post`` (fluctuation–dissipation, THEORY 7); shapes as
    :func:`posterior_covariance`."""
    a, Xi = noise_level(process, t)
    return (a / Xi) * posterior_covariance(target, x, process, t)


def participation_ratio(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``Y = sum_j w_j^2`` (THEORY 7): ``(*batch,)`` for data sets; per site ``(1 + tanh^2(beta a mu x))/2``
    for two deltas."""
    _check_target(target)
    _check_x(x)
    if isinstance(target, TwoDeltas):
        return 0.5 * (1 + (target.posterior_mean(x, process, t) / target.mu) ** 2)
    return target.participation_ratio(x, process, t)


# --------------------------------------------------------------------------------------------
# 2. Two deltas: Curie–Weiss mean field
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# `critdiff thermo`: Curie–Weiss bifurcation data and REM participation ratios
# --------------------------------------------------------------------------------------------


def thermo_report(
    sigma: float = 1.0,
    times: Sequence[float] | None = None,
    Ms: Sequence[int] = (4, 8, 12, 16),
    ratios: Sequence[float] = (0.5, 0.8, 1.5, 2.0, 3.0),
) -> dict:
    """Two deltas ``±1`` under Brownian noise and the REM, as plain data (THEORY 7).

    ``t_c`` from :func:`critical_time`; ``curie_weiss``: per time ``t`` (default ``t_c`` times 0.25,
    0.5, 0.9, 0.99, 1.01, 1.1, 2) the coupling ``K = 1/(t sigma^2)``, all fixed points ``x* = m``
    (``a = mu = 1``) with stability, and ``m``, ``chi`` of the
    equilibrium branch.  ``rem``: per ``M`` and ``beta_tilde = ratio beta_c`` the exact finite-M
    ``E[Y]``, the ``M -> inf`` limit and the Gumbel-corrected ``1 - beta_c(M)/beta_tilde``.
    """
    from . import condensation
    from .processes import Brownian

    sigma = _real("sigma", sigma, positive=True)
    t_c = 1.0 / sigma**2
    times = [t_c * f for f in (0.25, 0.5, 0.9, 0.99, 1.01, 1.1, 2.0)] if times is None else [_real("times", t, positive=True) for t in times]
    p = Brownian(sigma, T=max(max(times), 2 * t_c))
    rows = []
    for t in times:
        K = coupling(p, t)
        rows.append(
            {
                "t": t,
                "K": K,
                "fixed_points": [{"x": fp.m, "stable": fp.stable, "free_energy": fp.free_energy} for fp in curie_weiss_fixed_points(K)],
                "m": curie_weiss_magnetisation(K),
                "chi": curie_weiss_susceptibility(K),
            }
        )
    rem = []
    for M in Ms:
        for r in ratios:
            bt = _real("ratios", r, positive=True) * condensation.REM_BETA_C
            rem.append(
                {
                    "M": int(M),
                    "beta_tilde_over_beta_c": float(r),
                    "E_Y": condensation.rem_participation_ratio_exact(bt, M),
                    "limit": condensation.rem_participation_ratio(bt),
                    "gumbel": max(0.0, 1.0 - condensation.rem_beta_c_finite(M) / bt),
                }
            )
    return {"sigma": sigma, "t_c": critical_time(p), "curie_weiss": rows, "rem": rem}


def format_thermo_report(report: dict) -> str:
    """Human-readable tables of :func:`thermo_report`."""
    out = [f"Curie-Weiss (two deltas +-1, Brownian sigma={report['sigma']:g}): t_c = 1/sigma^2 = {report['t_c']:.12g}"]
    out.append(f"{'t':>12} {'K':>10} {'m':>12} {'chi':>12}  fixed points x* (s = stable, u = unstable)")
    for row in report["curie_weiss"]:
        fps = "  ".join(f"{fp['x']:+.6f}{'s' if fp['stable'] else 'u'}" for fp in row["fixed_points"])
        out.append(f"{row['t']:12.6g} {row['K']:10.6g} {row['m']:12.6g} {row['chi']:12.6g}  {fps}")
    out.append("")
    out.append("REM participation ratio E[Y] of N = 2^M points (exact finite M; limit 1 - beta_c/beta_tilde)")
    out.append(f"{'M':>4} {'bt/bc':>7} {'E[Y]':>10} {'limit':>10} {'1-bc(M)/bt':>11}")
    for row in report["rem"]:
        out.append(f"{row['M']:4d} {row['beta_tilde_over_beta_c']:7.3g} {row['E_Y']:10.6f} {row['limit']:10.6f} {row['gumbel']:11.6f}")
    return "\n".join(out)


def add_thermo_parser(sub) -> "argparse.ArgumentParser":
    """``critdiff thermo``: Curie–Weiss bifurcation data and REM participation ratios (THEORY 7)."""
    p = sub.add_parser("thermo", help="print Curie-Weiss fixed points / exponents data and REM participation ratios")
    p.add_argument("--sigma", type=float, default=1.0, help="Brownian noise scale (t_c = 1/sigma^2)")
    p.add_argument("--times", type=float, nargs="+", default=None, help="diffusion times (default: multiples of t_c)")
    p.add_argument("--M", type=int, nargs="+", default=[4, 8, 12, 16], help="log2 of the number of data points")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.8, 1.5, 2.0, 3.0], help="beta_tilde / beta_c")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    return p


def run_thermo(args) -> int:
    """Run ``critdiff thermo``; returns the exit status."""
    import json

    report = thermo_report(args.sigma, args.times, args.M, args.ratios)
    print(format_thermo_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0
