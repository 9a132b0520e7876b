"""Adaptive ODE solvers on the critical Gaussian field: delivered error vs requested tolerance, function
evaluations vs tolerance and vs lattice size (THEORY 1, 2).

Exact, not Monte Carlo.  With the exact score the PF-ODE is linear and diagonal in Fourier space, and for a
fixed sequence of accepted steps so is any Runge-Kutta solver.  An adaptive solver chooses its steps from an
error norm over the whole batch, so the probe batch must look like real samples: ``V'`` (the number of kept
modes) rows of a random orthonormal basis of the kept-mode subspace, scaled by ``sqrt(V Xi(T))``.  Each row
is a typical white-noise start (a uniformly random direction at the typical radius), and the rows satisfy
``sum_i x_i x_i^T = V Xi(T) P`` exactly, so with the steps the solver chose for this batch the generated
covariance is ``Sigma = Y^T Y / V`` (``Y`` the outputs) with no sampling noise.  Per mode it is compared with
the exact flow ``Xi(T) C_{t_min}(k) / C_T(k)`` (THEORY 2): ``e(k) = v(k) / v_flow(k) - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ... import lattice
from ...processes import VE, Process, RectifiedFlow
from ...scores import exact_score, exact_velocity
from ...targets import GaussianField
from ..checks.result import CheckResult
from .flow_matching_ode import flow_matching_sample
from .odeint import ADAPTIVE_ERROR_ORDERS, odeint_probability_flow

__all__ = ["AdaptiveProbe", "adaptive_probe", "probe_starts"]


@dataclass(frozen=True)
class AdaptiveProbe:
    """One adaptive solve of the probe batch: the tolerances; ``state_error``, the global error in the solver's
    own units, ``rms((y - y_exact) / (atol + rtol |y_exact|))`` over the batch (1 = the requested tolerance);
    the worst per-mode relative variance error; the relative Frobenius error of the covariance; the number of
    drift evaluations (for the whole batch)."""

    method: str
    rtol: float
    atol: float
    state_error: float
    mode_error: float
    frobenius_error: float
    nfe: int


def probe_starts(field: GaussianField, Xi_T: float, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``(V', *lattice)`` orthonormal white-noise starts scaled by ``sqrt(V Xi_T)`` (module docstring)."""
    V = field.V
    g = torch.randn((V, *field.shape), generator=generator, dtype=torch.float64)
    if field.zero_mode_removed:
        g = lattice.remove_zero_mode(g, field.d)
    _, s, wt = torch.linalg.svd(g.reshape(V, V), full_matrices=False)
    rank = int((s > s[0] * 1e-10).sum())
    return (math.sqrt(V * Xi_T) * wt[:rank]).reshape(rank, *field.shape).to(dtype)


def _flow_matching_solve(field: GaussianField, x_T: torch.Tensor, method: str, rtol: float, atol: float, nfe: list):
    """flow_matching's ODESolver on the CondOT path from ``tau = 0`` (noise) to 1 (data), counting evaluations."""
    velocity = exact_velocity(field, RectifiedFlow(1.0))
    count = [0]

    def counted(x, t):
        count[0] += 1
        return velocity(x, t)

    sigmas = torch.tensor([1.0, 0.0], dtype=x_T.dtype)
    y = flow_matching_sample(counted, x_T, sigmas, method=method, rtol=rtol, atol=atol)
    nfe[:] = [count[0]]
    return y


def adaptive_probe(method: str, field: GaussianField, process: Process | None = None, *, rtol: float,
                   atol: float | None = None, t_min: float = 0.0, seed: int = 0, library: str = "torchdiffeq",
                   sampler: Callable = odeint_probability_flow, dtype: torch.dtype = torch.float64) -> AdaptiveProbe:
    """Run an adaptive solve of the probe batch; exact errors (module docstring).

    ``library="torchdiffeq"``: ``sampler(score, process, x_T, method=, rtol=, atol=, t_min=, nfe=)`` on the PF-ODE
    (default :func:`.odeint.odeint_probability_flow`, ``process`` default validate()'s ``VE(25, 1)``);
    ``"flow_matching"``: ``ODESolver`` on the CondOT path (the rectified flow from ``t = 1`` to 0; ``process``
    and ``t_min`` are then fixed).  ``atol`` defaults to ``rtol``.
    """
    if method not in ADAPTIVE_ERROR_ORDERS:
        raise ValueError(f"method must be one of {tuple(ADAPTIVE_ERROR_ORDERS)}, got method={method!r}")
    if library not in ("torchdiffeq", "flow_matching"):
        raise ValueError(f"library must be 'torchdiffeq' or 'flow_matching', got library={library!r}")
    atol = rtol if atol is None else atol
    if library == "flow_matching":
        process, t_min = RectifiedFlow(1.0), 0.0
    process = VE(sigma=25.0, T=1.0) if process is None else process
    T = float(process.T)
    Xi_T = float(process.Xi(T))
    x_T = probe_starts(field, Xi_T, torch.Generator().manual_seed(seed), dtype)
    nfe: list = []
    if library == "flow_matching":
        y = _flow_matching_solve(field, x_T, method, rtol, atol, nfe)
    else:
        y = sampler(exact_score(field, process), process, x_T, method=method, rtol=rtol, atol=atol, t_min=t_min,
                    nfe=nfe)
    gain = (field.mode_variance(process, t_min) / field.mode_variance(process, T)).sqrt()
    if field.zero_mode_removed:
        gain = torch.where(field.mode_mask(), gain, torch.zeros_like(gain))
    x_hat = lattice.fft(x_T.to(torch.float64), field.d)
    y_exact = lattice.ifft(x_hat * gain, field.d).real
    state = float(((y.to(torch.float64) - y_exact) / (atol + rtol * y_exact.abs())).pow(2).mean().sqrt())
    y_hat = lattice.fft(y.to(torch.float64), field.d)
    v = (y_hat.abs() ** 2).sum(0) / field.V
    v_flow = Xi_T * field.mode_variance(process, t_min) / field.mode_variance(process, T)
    mask = field.mode_mask()
    rel = (v[mask] / v_flow[mask] - 1.0).abs()
    # Frobenius error of the (diagonal-in-Fourier) covariance; the off-diagonal part is zero up to rounding
    frob = float(((v - v_flow)[mask] ** 2).sum().sqrt() / (v_flow[mask] ** 2).sum().sqrt())
    return AdaptiveProbe(method, float(rtol), float(atol), state, float(rel.max()), frob, int(nfe[0]))


def _slope(x, y) -> float:
    """Least-squares slope of ``log y`` on ``log x``."""
    lx = torch.tensor([math.log(v) for v in x], dtype=torch.float64)
    ly = torch.tensor([math.log(v) for v in y], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def adaptive_checks(method: str, *, field: GaussianField | None = None, tolerances=(1e-3, 1e-4, 1e-5, 1e-6),
                    sizes=(4, 8, 16), size_tolerance: float = 1e-5, d: int = 2, process: Process | None = None,
                    library: str = "torchdiffeq", sampler: Callable = odeint_probability_flow) -> list:
    """Three validation rows for an adaptive method (module docstring), as ``validate.CheckResult``:

    - ``tolerance``: the global error in the solver's own norm (1 = the requested tolerance) at every
      tolerance must stay below the number of steps, bounded by the smallest NFE: each accepted step
      contributes a local error <= 1 in that norm, and the PF-ODE contracts every mode (gain
      ``sqrt(C_t / C_T)`` decreasing in ``T - t``), so propagated local errors do not grow.  The worst
      per-mode relative variance error, in units of the tolerance, is in ``data["mode_error_over_tol"]``.
    - ``nfe_vs_tol``: slope of ``ln NFE`` on ``ln(1/tol)``, expected ``1/(q + 1)`` (``q`` the order of the
      embedded error estimate, :data:`ADAPTIVE_ERROR_ORDERS`); band +-50%: constant overhead (initial step
      selection, the forced last step onto ``t_min``) flattens a slope fitted over 3 decades.
    - ``nfe_vs_L``: exponent ``z`` of NFE ~ L^z on the critical ``d``-dimensional field at ``size_tolerance``;
      the PF-ODE's stiffness is set by the hardest mode (``c0 = 1/(4d)``) whatever L, so NFE must not grow as a
      power of L: passed when ``z <= 0.25`` (a factor 1.7 over L = 4 -> 32 is then the most allowed).

    ``library`` and ``sampler`` as in :func:`adaptive_probe` (a planted bug replaces ``sampler``).
    """
    if method not in ADAPTIVE_ERROR_ORDERS:
        raise ValueError(f"method must be one of {tuple(ADAPTIVE_ERROR_ORDERS)}, got method={method!r}")
    tolerances = tuple(float(t) for t in tolerances)
    if len(tolerances) < 2 or any(not (0 < t < 1) for t in tolerances):
        raise ValueError(f"tolerances must be >= 2 numbers in (0, 1), got tolerances={tolerances!r}")
    field = GaussianField(8, d, 0.0) if field is None else field

    def solve(m, f, rtol):
        return adaptive_probe(m, f, process, rtol=rtol, library=library, sampler=sampler)

    label = f"{library}[{method}]/adaptive"
    probes = [solve(method, field, t) for t in tolerances]
    worst = max(probes, key=lambda p: p.state_error)
    bound = min(p.nfe for p in probes)
    rows = [CheckResult(
        f"{label}/tolerance", worst.state_error, 1.0, float(bound),
        "global error <= number of accepted steps x local tolerance (PF-ODE contracts every mode); steps <= NFE",
        worst.state_error <= bound,
        f"global error / tolerance {[f'{p.state_error:.3g}' for p in probes]} at rtol = atol = "
        f"{list(tolerances)}; worst per-mode variance error / tol {[f'{p.mode_error / p.rtol:.3g}' for p in probes]}",
        data={"state_error": [p.state_error for p in probes], "nfe": [p.nfe for p in probes],
              "mode_error_over_tol": [p.mode_error / p.rtol for p in probes], "tolerances": list(tolerances)},
        target=label, kind="tolerance",
    )]
    q = ADAPTIVE_ERROR_ORDERS[method][1]
    slope = _slope([1.0 / t for t in tolerances], [p.nfe for p in probes])
    expected = 1.0 / (q + 1)
    rows.append(CheckResult(
        f"{label}/nfe_vs_tol", slope, expected, 0.5 * expected,
        "NFE ~ tol^(-1/(q+1)) for error-per-step control with an O(h^(q+1)) error estimate; +-50% for overhead",
        abs(slope - expected) <= 0.5 * expected,
        f"NFE {[p.nfe for p in probes]} at tolerances {list(tolerances)}",
        data={"nfe": [p.nfe for p in probes]},
        target=label, kind="nfe_vs_tol",
    ))
    sized = [solve(method, GaussianField(L, d, 0.0), size_tolerance) for L in sizes]
    z = _slope(list(sizes), [p.nfe for p in sized])
    rows.append(CheckResult(
        f"{label}/nfe_vs_L", z, 0.0, 0.25,
        "stiffness set by the hardest mode c0 = 1/(4d), independent of L: no power-law growth of NFE",
        z <= 0.25,
        f"NFE {[p.nfe for p in sized]} at L = {list(sizes)} (d = {d}, r = 0, rtol = atol = {size_tolerance:g}); "
        f"global error / tol {[f'{p.state_error:.3g}' for p in sized]}",
        data={"nfe": [p.nfe for p in sized], "sizes": list(sizes)},
        target=label, kind="nfe_vs_L",
    ))
    return rows
