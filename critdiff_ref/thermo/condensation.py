"""Random-energy picture of a finite data set: condensation and memorisation (THEORY 7).

For ``N = 2^M`` points ``y_j`` on a sphere of radius ``R`` (``|y_j| = R`` for all j, so the
``a^2 |y|^2/2`` part of the energy is a constant) the posterior weights given ``x_t = x`` are
``w_j ∝ exp(beta a x.y_j)``.  For ``y`` uniform on the sphere in ``d_amb`` dimensions
``u = x.y / (|x| R)`` has density ``∝ (1 - u^2)^{(d_amb - 3)/2}`` and ``Var(x.y) = |x|^2 R^2 / d_amb``.

- **REM scaling.**  THEORY 7's energy variance ``|x|^2 nu^2 M / 2`` needs ``R = nu sqrt(M d_amb / 2)``
  (THEORY's ``nu sqrt(M / (2 d_amb))`` gives variance ``|x|^2 nu^2 M / (2 d_amb^2)``, off by a
  factor ``d_amb^2``); then ``ln w_j = beta_tilde sqrt(M/2) g_j + const`` with ``g_j -> N(0, 1)``
  as ``d_amb -> inf`` and ``beta_tilde = nu beta a |x|``.  As ``M -> inf``,
  ``E[Y] = max(0, 1 - beta_c / beta_tilde)`` with ``beta_c = 2 sqrt(ln 2)`` (Derrida).
- **Finite M, exactly.**  ``1/Z^2 = int_0^inf s e^{-s Z} ds`` and the independence of the ``y_j``
  given ``x`` give, with ``s = e^{-lam}``,

      E[Y] = N int dlam  E[exp(2 (l - lam) - e^{l - lam})] (1 - E[1 - exp(-e^{l - lam})])^{N - 1},

  a one-dimensional integral over one-level expectations (``l`` the log-weight of one level),
  computed by :func:`rem_participation_ratio_exact` for Gaussian levels or the exact sphere law.
- **Finite-size corrections.**  The extreme levels of ``N`` Gaussians of variance ``M/2`` sit
  where the log level density has slope ``beta_c(M) = beta_c - ln(4 pi M ln 2) / (2 M sqrt(ln 2))``
  (Gumbel scaling), so ``E[Y] ≈ 1 - beta_c(M)/beta_tilde`` above the transition: corrections
  ``O(ln M / M)``, 16% of ``beta_c`` at ``M = 10``.  Below ``beta_c`` the typical ``Y`` decays
  exponentially, ``ln Y ≈ -M r``: ``r = ln 2 - beta_tilde^2 / 2`` (annealed, ``beta_tilde <= beta_c/2``),
  ``r = (beta_c - beta_tilde)^2 / 2`` (largest level dominates, ``beta_c/2 <= beta_tilde <= beta_c``).
- **Memorisation along the reverse dynamics.**  With the exact empirical score the reverse path
  has the law of the forward one, ``x_t = y_s + sqrt(Xi) z`` for a uniformly drawn training point
  ``y_s``.  Brownian (``a = 1``), ``q = R^2 / Xi``: the self log-weight is ``q + sqrt(q) g``, the
  others form a REM of variance ``q (1 + q / d_amb)``, whose annealed ``ln Z`` is
  ``M ln 2 + q (1 + q/d_amb) / 2``.  The self point wins when ``q / 2 (1 - q / d_amb) > M ln 2``:
  for ``d_amb >> M`` at ``q = 2 ln N``, i.e. ``t_mem = R^2 / (2 sigma^2 ln N)``.  There the rest
  sits exactly at its REM transition (``beta_tilde = beta_c``), which is why THEORY 7 calls the
  condensation time ``t_cond = nu |x| / (2 sigma^2 sqrt(ln 2))`` the memorisation onset: with
  ``|x|^2 ≈ sigma^2 t d_amb`` the two agree.  Relative corrections: ``O(ln N / d_amb)`` from the
  ``q / d_amb`` terms and ``O(1/sqrt(ln N))`` from the self-weight fluctuation ``sqrt(q) g``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special, stats

from .._args import real as _real
from ..processes import Process
from ..targets.discrete import EmpiricalDataset, noise_level

__all__ = [
    "REM_BETA_C",
    "rem_radius",
    "sphere_dataset",
    "rescaled_beta",
    "rem_participation_ratio",
    "rem_beta_c_finite",
    "rem_participation_ratio_exact",
    "condensation_time",
    "memorisation_time",
]

REM_BETA_C: float = 2.0 * math.sqrt(math.log(2.0))
"""Critical rescaled inverse temperature of the random energy model, ``2 sqrt(ln 2)`` (THEORY 7)."""

_MAX_M = 24




def _int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {name}={value}")
    return int(value)


def rem_radius(M: int, nu: float, d_amb: int) -> float:
    """Sphere radius ``R = nu sqrt(M d_amb / 2)`` giving energies ``-x.y ~ N(0, |x|^2 nu^2 M / 2)``.

    For ``y`` uniform on the sphere ``Var(x.y) = |x|^2 R^2 / d_amb``; see the module docstring for
    why this differs from THEORY 7's ``nu sqrt(M / (2 d_amb))``.
    """
    M = _int("M", M, 1)
    d_amb = _int("d_amb", d_amb, 1)
    nu = _real("nu", nu, positive=True)
    return nu * math.sqrt(M * d_amb / 2.0)


def sphere_dataset(
    M: int,
    nu: float,
    d_amb: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> EmpiricalDataset:
    """``N = 2^M`` points uniform on the sphere of radius :func:`rem_radius` in ``d_amb`` dims (THEORY 7).

    ``M`` in ``[1, 24]``; points shape ``(2^M, d_amb)``.
    """
    R = rem_radius(M, nu, d_amb)
    _int("M", M, 1, _MAX_M)
    if generator is not None and device is None:
        device = generator.device
    z = torch.randn(2**M, d_amb, generator=generator, dtype=dtype, device=device)
    return EmpiricalDataset(R * z / z.norm(dim=-1, keepdim=True))


def rescaled_beta(nu: float, x_norm: float, process: Process, t: float) -> float:
    """``beta_tilde = nu a |x| / Xi`` (Brownian: ``nu |x| / (t sigma^2)``), the REM inverse temperature."""
    nu = _real("nu", nu, positive=True)
    x_norm = _real("x_norm", x_norm, positive=True)
    a, Xi = noise_level(process, t)
    return nu * a * x_norm / Xi


def rem_participation_ratio(beta_tilde):
    """``M -> inf`` limit ``E[Y] = max(0, 1 - beta_c / beta_tilde)``, ``beta_c = 2 sqrt(ln 2)`` (THEORY 7).

    Elementwise; float, numpy array or torch tensor in, same kind out.  ``beta_tilde > 0``.
    """
    if isinstance(beta_tilde, torch.Tensor):
        if not bool((beta_tilde > 0).all()):
            raise ValueError("beta_tilde must be > 0 (and not NaN)")
        return (1.0 - REM_BETA_C / beta_tilde).clamp(min=0.0)
    b = np.asarray(beta_tilde, dtype=np.float64)
    if np.any(~(b > 0)) or not np.all(np.isfinite(b)):
        raise ValueError(f"beta_tilde must be finite and > 0, got {beta_tilde!r}")
    out = np.clip(1.0 - REM_BETA_C / b, 0.0, None)
    return float(out) if out.ndim == 0 else out


def rem_beta_c_finite(M: int) -> float:
    """Finite-``M`` effective transition ``beta_c(M) = beta_c - ln(4 pi M ln 2) / (2 M sqrt(ln 2))``:
    the slope of the log level density at the expected maximum of ``2^M`` Gaussian levels of variance
    ``M/2`` (Gumbel scaling; module docstring).  ``E[Y] ≈ 1 - beta_c(M)/beta_tilde`` above it."""
    M = _int("M", M, 1)
    return REM_BETA_C - math.log(4 * math.pi * M * math.log(2.0)) / (2 * M * math.sqrt(math.log(2.0)))


def _level_masses(beta_tilde: float, M: int, d_amb: int | None, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and probability masses of one level's log-weight ``l`` on a grid of spacing ``h``.

    Gaussian: ``l ~ N(0, beta_tilde^2 M / 2)`` cut to ``[-8, 9]`` standard deviations: the mass
    beyond 9 is 1e-19, times ``N <= 2^24`` levels < 1e-12; levels below -8 carry weight ``e^{l}``
    negligible against the typical ones.
    Sphere: ``l = c u`` with ``c = beta_tilde sqrt(M d_amb / 2)`` and ``(u + 1)/2 ~ Beta(k, k)``,
    ``k = (d_amb - 1)/2``; bin masses from the CDF so the endpoint singularity (``d_amb = 2``) is exact.
    """
    if d_amb is None:
        s = beta_tilde * math.sqrt(M / 2.0)
        lo, hi = -8.0 * s, 9.0 * s
    else:
        c = beta_tilde * math.sqrt(M * d_amb / 2.0)
        lo, hi = -c, c
    n = max(int(math.ceil((hi - lo) / h)), 2)
    edges = np.linspace(lo, hi, n + 1)
    if d_amb is None:
        cdf_lo, sf_hi = stats.norm.cdf(edges[:-1] / s), stats.norm.sf(edges[1:] / s)
    else:
        k = (d_amb - 1) / 2.0
        u = np.clip(edges / c, -1.0, 1.0)
        cdf_lo, sf_hi = special.betainc(k, k, (u[:-1] + 1) / 2), special.betainc(k, k, (1 - u[1:]) / 2)
    mass = np.clip(1.0 - cdf_lo - sf_hi, 0.0, None)  # = P(bin); exact in both tails via cdf/sf
    return 0.5 * (edges[:-1] + edges[1:]), mass


def rem_participation_ratio_exact(beta_tilde: float, M: int, d_amb: int | None = None, *, h: float = 0.05) -> float:
    """Exact finite-``M`` mean participation ratio ``E[Y]`` of ``N = 2^M`` independent levels (module docstring).

    ``d_amb=None``: Gaussian levels of variance ``beta_tilde^2 M / 2`` (the REM); an integer
    ``d_amb >= 2``: the exact law of points uniform on the sphere of radius :func:`rem_radius`
    seen from a fixed ``x`` with ``nu beta a |x| = beta_tilde`` (what :func:`sphere_dataset` draws).
    One-level expectations use bins of width ``h`` in ``l`` (midpoint rule, error ``O(h^2)``); the
    outer integral uses the same spacing in ``lam`` (trapezoid on a smooth, rapidly decaying integrand).
    """
    beta_tilde = _real("beta_tilde", beta_tilde, positive=True)
    M = _int("M", M, 1, _MAX_M)
    if d_amb is not None:
        d_amb = _int("d_amb", d_amb, 2)
    h = _real("h", h, positive=True)
    if h > 0.25:
        raise ValueError(f"h must be in (0, 0.25] (bins narrower than the O(1) width of exp(2v - e^v)), got h={h}")
    N = 2**M
    l, mass = _level_masses(beta_tilde, M, d_amb, h)
    keep = mass > 0
    l, mass = l[keep], mass[keep]
    # Above lam the integrand dies like e^{-2 (lam - ln Z)} and ln Z <= max l + ln N: 20 units of
    # margin lose < e^{-40}.  Below the level q exceeded with probability 200/N,
    # C >= (1 - e^{-1}) 200/N so (1 - C)^{N-1} < e^{-63} (N >= 2): start there.
    tail = np.cumsum(mass[::-1])[::-1]  # P(l >= bin)
    q = l[tail >= min(1.0, 200.0 / N)].max() if 200.0 / N < 1.0 else l.min() - 20.0
    lam = np.arange(q, l.max() + M * math.log(2.0) + 20.0, h)
    integrand = np.empty_like(lam)
    chunk = max(1, 2_000_000 // l.size)
    for i in range(0, lam.size, chunk):
        v = np.minimum(l[None, :] - lam[i : i + chunk, None], 700.0)  # e^700 is finite; exp(-e^700) = 0
        ev = np.exp(v)
        A = (mass * np.exp(2 * v - ev)).sum(-1)
        C = (mass * -np.expm1(-ev)).sum(-1)
        with np.errstate(divide="ignore"):  # C = 1 (every level far above lam): log1p(-1) = -inf -> 0
            integrand[i : i + chunk] = A * np.exp((N - 1) * np.log1p(-np.minimum(C, 1.0)))
    return float(N * h * (integrand.sum() - 0.5 * (integrand[0] + integrand[-1])))  # trapezoid (numpy 1.x has no np.trapezoid)


def condensation_time(nu: float, x_norm: float, sigma: float) -> float:
    """Brownian condensation time ``t_cond = nu |x| / (2 sigma^2 sqrt(ln 2))`` (THEORY 7), where
    ``beta_tilde(t_cond) = beta_c``."""
    nu = _real("nu", nu, positive=True)
    x_norm = _real("x_norm", x_norm, positive=True)
    sigma = _real("sigma", sigma, positive=True)
    return nu * x_norm / (2 * sigma**2 * math.sqrt(math.log(2.0)))


def memorisation_time(R: float, N: int, sigma: float) -> float:
    """Onset of memorisation along the reverse dynamics, ``t_mem = R^2 / (2 sigma^2 ln N)`` (Brownian,
    points on a sphere of radius ``R`` in ``d_amb >> ln N`` dims; module docstring): the self
    weight of the training point a path ends on passes 1/2 there.  ``N >= 2``."""
    R = _real("R", R, positive=True)
    N = _int("N", N, 2)
    sigma = _real("sigma", sigma, positive=True)
    return R * R / (2 * sigma**2 * math.log(N))
