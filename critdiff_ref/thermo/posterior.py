"""Diffusion as equilibrium statistical mechanics (THEORY 7): posterior ensemble and Curie–Weiss.

Three pictures of the same posterior ``p(y | x_t = x)`` over the clean data:

1. **Boltzmann ensemble** (data sets, two deltas, 1-D Gaussian mixtures; any process).  Completing the square in
   ``-|x - a y|^2 / (2 Xi)`` gives ``p(y | x) ∝ p_0(y) exp(-beta H(y; x))`` with the inverse
   temperature ``beta = 1/Xi(t)`` (Brownian: ``1/(t sigma^2)``) and the energy
   ``H(y; x) = a^2 |y|^2 / 2 - a x.y``.  The partition function ``Z = sum_j p_0(y_j) e^{-beta H_j}``
   and free energy ``F = -beta^{-1} ln Z`` then satisfy, exactly::

       ln p_t(x) = -|x|^2 / (2 Xi) - beta F - (D/2) ln(2 pi Xi),     -grad_x F = a <y>,
       score = (a <y> - x) / Xi,   d<y>/dx = beta a Cov_post   (fluctuation–dissipation),
       F = U - beta^{-1} (S - ln N)  with U = <H>, S = -sum w ln w   (empirical data, p_0 = 1/N).

   At ``a = 1`` (Brownian) this is THEORY 7's ``H = beta (|y|^2/2 - x.y)`` and ``<y> = -grad F``.
   Gaussian mixtures have a sampleable posterior (a Gaussian mixture again, :func:`mixture_posterior`),
   with ``sum_j`` replaced by ``int dy``; :func:`posterior_sample` draws from every posterior here.
2. **Curie–Weiss** (two deltas ``±mu``): ``<y> = mu tanh(beta a mu x)``; the modes of ``p_t`` solve
   ``m = tanh(K m)``, ``K = a^2 mu^2 / Xi``, branching at ``K = 1`` (Brownian: ``t_c = 1/sigma^2``).
   Fixed points, Landau landscape and exponents: :mod:`critdiff_ref.thermo.curie_weiss`.
3. The random-energy (condensation) picture of finite data sets lives in
   :mod:`critdiff_ref.thermo.condensation`.
"""

from __future__ import annotations

import argparse
import math
from typing import Sequence, Union

import numpy as np
import torch

from .._args import real as _real
from .curie_weiss import (
    _log_cosh,
    coupling,
    critical_time,
    curie_weiss_fixed_points,
    curie_weiss_magnetisation,
    curie_weiss_susceptibility,
)
from ..processes import Process
from ..targets.discrete import EmpiricalDataset, TwoDeltas, noise_level
from ..targets.mixtures import GaussianMixture1D, TwoGaussianMixture

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
    "mixture_posterior",
    "posterior_sample",
    "thermo_report",
    "format_thermo_report",
    "add_thermo_parser",
    "run_thermo",
]

Discrete = Union[EmpiricalDataset, TwoDeltas]
Mixture = Union[GaussianMixture1D, TwoGaussianMixture]
Target = Union[EmpiricalDataset, TwoDeltas, GaussianMixture1D, TwoGaussianMixture]
_TARGETS = (EmpiricalDataset, TwoDeltas, GaussianMixture1D, TwoGaussianMixture)


def _check_target(target: object, kinds: tuple[type, ...] = _TARGETS) -> None:
    if not isinstance(target, kinds):
        names = ", ".join(k.__name__ for k in kinds)
        raise TypeError(f"target must be one of {names}, got {type(target).__name__}")


def _check_x(x: object) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {x!r:.60}")




# --------------------------------------------------------------------------------------------
# 1. The posterior Boltzmann ensemble
# --------------------------------------------------------------------------------------------


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
    Gaussian mixtures (elementwise, ``ln Z = int p_0(y) e^{-beta H} dy``): ``ln Z = ln p_t(x) +
    x^2/(2 Xi) + ln(2 pi Xi)/2`` from the exact marginal mixture.
    """
    _check_target(target)
    _check_x(x)
    a, Xi = noise_level(process, t)
    if isinstance(target, (GaussianMixture1D, TwoGaussianMixture)):
        log_pt = _as_mixture(target).marginal(process, t).log_density(x)
        return log_pt + x * x / (2 * Xi) + 0.5 * math.log(2 * math.pi * Xi)
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


def _as_mixture(target: Mixture) -> GaussianMixture1D:
    return target.as_mixture() if isinstance(target, TwoGaussianMixture) else target


def mixture_posterior(target: Mixture, x: torch.Tensor, process: Process, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact posterior of a 1-D Gaussian mixture ``sum_k w_k N(m_k, s_k^2)`` given ``x_t = x`` (elementwise).

    A mixture again: responsibilities ``r_k ∝ w_k N(x; a m_k, a^2 s_k^2 + Xi)``, component means
    ``(m_k Xi + a s_k^2 x) / (Xi + a^2 s_k^2)`` and variances ``s_k^2 Xi / (Xi + a^2 s_k^2)``.
    Returns ``(log r, means, variances)``, each ``(*x.shape, K)``.
    """
    _check_target(target, (GaussianMixture1D, TwoGaussianMixture))
    _check_x(x)
    a, Xi = noise_level(process, t)
    mix = _as_mixture(target)
    log_r = torch.log_softmax(mix.marginal(process, t).component_log_densities(x), dim=-1)
    _, m, s = mix._params(x)
    denom = Xi + a * a * s * s
    means = (m * Xi + a * s * s * x.unsqueeze(-1)) / denom
    return log_r, means, (s * s * Xi / denom).expand_as(means)


def magnetisation(target: Target, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``<y>_{x,t}`` (THEORY 7): softmax mean for data sets, ``mu tanh(beta a mu x)`` for two deltas,
    ``sum_k r_k m_k`` for Gaussian mixtures (:func:`mixture_posterior`)."""
    _check_target(target)
    _check_x(x)
    if isinstance(target, (GaussianMixture1D, TwoGaussianMixture)):
        log_r, means, _ = mixture_posterior(target, x, process, t)
        return (log_r.exp() * means).sum(-1)
    return target.posterior_mean(x, process, t)


def posterior_covariance(target: Discrete, x: torch.Tensor, process: Process, t: float) -> torch.Tensor:
    """``Cov_post(y | x)``: ``(*batch, D, D)`` for data sets; per-site variance ``mu^2 sech^2(beta a mu x)``
    (shape like ``x``) for two deltas and Gaussian mixtures (``sum_k r_k (v_k + m_k^2) - <y>^2``),
    whose sites are independent."""
    _check_target(target)
    _check_x(x)
    if isinstance(target, (GaussianMixture1D, TwoGaussianMixture)):
        log_r, means, var = mixture_posterior(target, x, process, t)
        r = log_r.exp()
        mean = (r * means).sum(-1)
        return (r * (var + (means - mean.unsqueeze(-1)) ** 2)).sum(-1)  # centred: no cancellation
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
    for two deltas (discrete targets only)."""
    _check_target(target, (EmpiricalDataset, TwoDeltas))
    _check_x(x)
    if isinstance(target, TwoDeltas):
        return 0.5 * (1 + (target.posterior_mean(x, process, t) / target.mu) ** 2)
    return target.participation_ratio(x, process, t)


def _count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got n={n!r}")
    return int(n)


def posterior_sample(
    target: Target, x: torch.Tensor, process: Process, t: float, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` exact draws of the clean data from ``p(y | x_t = x)`` (THEORY 7), shape ``(n, *x.shape)``.

    Data sets: indices from the posterior weights; two deltas: ``+mu`` with probability
    ``(1 + tanh(beta a mu x))/2`` per site; Gaussian mixtures: a component from ``r_k`` then
    ``N(m_k, v_k)`` (:func:`mixture_posterior`).  dtype/device follow ``x``.
    """
    _check_target(target)
    _check_x(x)
    n = _count(n)
    kw = dict(dtype=x.dtype, device=x.device)
    if isinstance(target, TwoDeltas):
        p_plus = 0.5 * (1 + target.posterior_mean(x, process, t) / target.mu)
        u = torch.rand((n, *x.shape), generator=generator, **kw)
        return torch.where(u < p_plus, target.mu, -target.mu).to(x.dtype)
    if isinstance(target, EmpiricalDataset):
        w = target.log_weights(x, process, t).exp().reshape(-1, target.N)
        idx = torch.multinomial(w, n, replacement=True, generator=generator)  # (B, n)
        y = target.points.to(**kw)[idx.T]  # (n, B, *event)
        return y.reshape(n, *x.shape)
    log_r, means, var = mixture_posterior(target, x, process, t)
    K = log_r.shape[-1]
    idx = torch.multinomial(log_r.exp().reshape(-1, K), n, replacement=True, generator=generator)  # (P, n)
    m = means.reshape(-1, K).gather(1, idx)
    v = var.reshape(-1, K).gather(1, idx)
    y = m + v.sqrt() * torch.randn(m.shape, generator=generator, **kw)
    return y.T.reshape(n, *x.shape)


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
    from ..processes import Brownian

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


def add_thermo_parser(sub) -> argparse.ArgumentParser:
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
    from .._io import atomic_write_text, strict_json

    report = thermo_report(args.sigma, args.times, args.M, args.ratios)
    print(format_thermo_report(report))
    if args.json:
        atomic_write_text(args.json, strict_json(report))
    return 0
