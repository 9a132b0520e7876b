"""Exact samplers and exact per-mode gains for Fourier-diagonal linear scores (THEORY 2).

For a Gaussian field the score is ``s_t(x)_k = K_t(k) x_k``, so every sampler of
:mod:`.reverse` acts on each Fourier mode as a scalar linear recursion:

- PF-ODE: ``dx/dt = lambda(t) x`` with ``lambda(t) = -gamma(t) - g(t)^2 K_t / 2``; one step of size
  ``dt = t_{i+1} - t_i < 0`` multiplies the mode by a polynomial in ``a = dt lambda(t_i)``,
  ``b = dt lambda(t_i + dt/2)``, ``c = dt lambda(t_{i+1})``:
  Euler ``1 + a``; Heun ``1 + (a + c)/2 + a c/2``;
  RK4 ``1 + (a + 4b + c)/6 + (ab + b^2 + bc)/6 + b^2 (a + c)/12 + a b^2 c/24``.
- Euler–Maruyama: ``x <- m_i x + g(t_i) sqrt(h) z`` with ``m_i = 1 + h (gamma + g^2 K)(t_i)``,
  ``h = -dt``; variance ``v_{i+1} = m_i^2 v_i + g(t_i)^2 h`` (noise only on fluctuating modes).

Exact continuous results with a start ``N(0, v_T)``, ``delta_T = v_T - C_T`` (THEORY 2):
ODE ``C_tmin + delta_T C_tmin / C_T``; SDE ``C_tmin + delta_T (C_tmin / C_T)^2 exp(-2 (Gamma(T) - Gamma(t_min)))``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .. import lattice
from ..processes import Process, check_time
from ..targets import GaussianField
from .grids import resolve_grid

__all__ = [
    "exact_start",
    "fourier_sample",
    "exact_flow",
    "apply_gain",
    "ode_gain",
    "sde_gain",
    "sde_variance",
    "ode_variance_limit",
    "sde_variance_limit",
]

Kernel = Callable[[float], torch.Tensor]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got n={n!r}")
    return n


def _check_field(field) -> None:
    if not isinstance(field, GaussianField):
        raise TypeError(f"field must be a GaussianField, got {type(field).__name__}")


# -- exact samplers ---------------------------------------------------------------------------
def fourier_sample(
    field: GaussianField,
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Exact data samples: white noise -> FFT -> ``* sqrt(c0)`` -> inverse FFT (THEORY 2). ``(n, *lattice)``."""
    _check_field(field)
    return field.sample(_check_n(n), generator, dtype=dtype, device=device)


def exact_start(
    field: GaussianField,
    process: Process,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``x_T ~ N(0, C_T)`` per mode, ``C_T(k) = a(T)^2 c0(k) + Xi(T)`` (zero mode 0 at ``r = 0``). ``(n, *lattice)``."""
    _check_field(field)
    n = _check_n(n)
    if generator is not None and device is None:
        device = generator.device
    z = torch.randn((n, *field.shape), generator=generator, dtype=dtype, device=device)
    C_T = field.mode_variance(process, float(process.T), dtype=dtype, device=device)
    return apply_gain(z, C_T.sqrt(), field.d)


def apply_gain(x: torch.Tensor, gain: torch.Tensor, d: int) -> torch.Tensor:
    """``F^-1[gain(k) F[x]]`` over the last ``d`` axes (real part); ``gain`` has shape ``(L,)*d``."""
    gain = gain.to(device=x.device)
    return lattice.ifft(lattice.fft(x, d) * gain, d).real.to(x.dtype)


def exact_flow(field: GaussianField, process: Process, x_s: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """Exact PF-ODE map from time ``s`` to time ``t``: ``x_t = F^-1[sqrt(C_t / C_s) F[x_s]]`` (THEORY 2).

    The zero mode at ``r = 0`` is mapped to 0.  ``x_s`` is ``(*batch, *lattice)``.
    """
    _check_field(field)
    check_time(process, s, name="s")
    check_time(process, t, name="t")
    C_s = field.mode_variance(process, float(s))
    C_t = field.mode_variance(process, float(t))
    mask = field.mode_mask()
    if bool((C_s[mask] <= 0).any()):
        raise ValueError(f"C_s(k) = 0 for some fluctuating mode at s={s}: the flow from s is undefined")
    ratio = torch.where(mask, C_t / torch.where(mask, C_s, torch.ones_like(C_s)), torch.zeros_like(C_s))
    return apply_gain(x_s, ratio.sqrt(), field.d)


# -- per-mode gains of the discretised samplers -----------------------------------------------
def _rate(kernel: Kernel, process: Process, t: float, factor: float) -> torch.Tensor:
    """``-gamma(t) - factor g(t)^2 K_t`` in float64 (factor 1/2 for the ODE, 1 for the SDE)."""
    K = torch.as_tensor(kernel(t), dtype=torch.float64)
    return -float(process.gamma(t)) - factor * float(process.g(t)) ** 2 * K


def ode_gain(kernel: Kernel, process: Process, grid_times, method: str = "rk4") -> torch.Tensor:
    """Exact per-mode multiplier of the discretised PF-ODE sampler on the grid (module docstring).

    ``kernel(t)`` gives ``K_t(k)`` per mode (e.g. ``lambda t: field.score_kernel(process, t)``);
    ``grid_times`` a decreasing 1-D tensor.  The sampler maps ``F[x_T] -> gain * F[x_T]``.
    """
    times = [float(t) for t in resolve_grid(process, None, grid_times)]
    if method not in ("euler", "heun", "rk4"):
        raise ValueError(f"method must be one of ('euler', 'heun', 'rk4'), got method={method!r}")
    gain = None
    for t, t_next in zip(times[:-1], times[1:]):
        dt = t_next - t
        a = dt * _rate(kernel, process, t, 0.5)
        if method == "euler":
            factor = 1.0 + a
        elif method == "heun":
            c = dt * _rate(kernel, process, t_next, 0.5)
            factor = 1.0 + 0.5 * (a + c) + 0.5 * a * c
        else:
            b = dt * _rate(kernel, process, t + 0.5 * dt, 0.5)
            c = dt * _rate(kernel, process, t_next, 0.5)
            factor = (
                1.0 + (a + 4.0 * b + c) / 6.0 + (a * b + b * b + b * c) / 6.0
                + b * b * (a + c) / 12.0 + a * b * b * c / 24.0
            )
        gain = factor if gain is None else gain * factor
    return gain


def _em_factors(kernel: Kernel, process: Process, grid_times):
    times = [float(t) for t in resolve_grid(process, None, grid_times)]
    for t, t_next in zip(times[:-1], times[1:]):
        h = t - t_next
        # x <- x - h (-gamma x - g^2 K x) + g sqrt(h) z  =>  m = 1 - h (-gamma - g^2 K)
        yield 1.0 - h * _rate(kernel, process, t, 1.0), float(process.g(t)) ** 2 * h


def sde_gain(kernel: Kernel, process: Process, grid_times) -> torch.Tensor:
    """Per-mode product ``prod_i m_i`` of the Euler–Maruyama mean map (the sampler with zero noise)."""
    gain = None
    for m, _ in _em_factors(kernel, process, grid_times):
        gain = m if gain is None else gain * m
    return gain


def sde_variance(
    kernel: Kernel, process: Process, grid_times, v_T, mode_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact per-mode variance after Euler–Maruyama from ``N(0, v_T)``: ``v <- m_i^2 v + g(t_i)^2 h``.

    ``mode_mask`` (bool, per mode) marks modes that receive noise (the zero mode at ``r = 0`` does not).
    """
    v = None
    for m, q in _em_factors(kernel, process, grid_times):
        if v is None:
            v = torch.as_tensor(v_T, dtype=torch.float64) * torch.ones_like(m)
            noise = torch.ones_like(m) if mode_mask is None else mode_mask.to(torch.float64)
        v = m * m * v + q * noise
    return v


# -- exact continuous limits ------------------------------------------------------------------
def _limit_parts(field: GaussianField, process: Process, v_T, t_min: float):
    _check_field(field)
    check_time(process, t_min, name="t_min")
    C_T = field.mode_variance(process, float(process.T))
    C_min = field.mode_variance(process, float(t_min))
    mask = field.mode_mask()
    delta_T = torch.as_tensor(v_T, dtype=torch.float64) - C_T
    ratio = torch.where(mask, C_min / torch.where(mask, C_T, torch.ones_like(C_T)), torch.zeros_like(C_T))
    return C_min, delta_T, ratio, mask


def ode_variance_limit(field: GaussianField, process: Process, v_T, t_min: float = 0.0) -> torch.Tensor:
    """Exact PF-ODE end variance from ``N(0, v_T)``: ``C_tmin + delta_T C_tmin / C_T`` (THEORY 2)."""
    C_min, delta_T, ratio, mask = _limit_parts(field, process, v_T, t_min)
    return torch.where(mask, C_min + delta_T * ratio, torch.zeros_like(C_min))


def sde_variance_limit(field: GaussianField, process: Process, v_T, t_min: float = 0.0) -> torch.Tensor:
    """Exact reverse-SDE end variance: ``C_tmin + delta_T (C_tmin/C_T)^2 exp(-2 (Gamma(T) - Gamma(t_min)))`` (THEORY 2)."""
    C_min, delta_T, ratio, mask = _limit_parts(field, process, v_T, t_min)
    decay = math.exp(-2.0 * (float(process.Gamma(float(process.T))) - float(process.Gamma(float(t_min)))))
    return torch.where(mask, C_min + delta_T * ratio * ratio * decay, torch.zeros_like(C_min))
