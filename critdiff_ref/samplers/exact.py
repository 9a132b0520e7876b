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

The gains are computed for a whole grid at once (``(N, *modes)`` step factors) from a kernel
``t -> K_t(k)``; :func:`score_kernel_fn` gives the exact one, vectorised over times.
:func:`ode_log_gain` sums ``log1p`` of the step increments, so discretisation errors far below
``N eps`` (RK4) stay measurable; :func:`measured_order` fits convergence orders from such errors.

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
from .guard import check_start

__all__ = [
    "exact_start",
    "fourier_sample",
    "exact_flow",
    "apply_gain",
    "score_kernel_fn",
    "stiffness",
    "ode_step_factors",
    "ode_gain",
    "ode_log_gain",
    "sde_gain",
    "sde_variance",
    "measured_order",
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
    C_T = field.mode_variance(process, float(process.T), dtype=dtype, device=device)
    gain = lattice.half_spectrum(C_T.sqrt())
    return lattice.filtered_noise(gain, (n,), field.L, field.d, generator, dtype=dtype, device=device)


def apply_gain(x: torch.Tensor, gain: torch.Tensor, d: int) -> torch.Tensor:
    """``F^-1[gain(k) F[x]]`` over the last ``d`` axes (real part); ``gain`` has shape ``(L,)*d``."""
    gain = gain.to(device=x.device)
    return lattice.ifft(lattice.fft(x, d) * gain, d).real.to(x.dtype)


def exact_flow(field: GaussianField, process: Process, x_s: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """Exact PF-ODE map from time ``s`` to time ``t``: ``x_t = F^-1[sqrt(C_t / C_s) F[x_s]]`` (THEORY 2).

    The zero mode at ``r = 0`` is mapped to 0.  ``x_s`` is ``(*batch, *lattice)``.
    """
    _check_field(field)
    check_start(x_s, "x_s")
    check_time(process, s, name="s")
    check_time(process, t, name="t")
    C_s = field.mode_variance(process, float(s))
    C_t = field.mode_variance(process, float(t))
    mask = field.mode_mask()
    if bool((C_s[mask] <= 0).any()):
        raise ValueError(f"C_s(k) = 0 for some fluctuating mode at s={s}: the flow from s is undefined")
    ratio = torch.where(mask, C_t / torch.where(mask, C_s, torch.ones_like(C_s)), torch.zeros_like(C_s))
    gain = ratio.sqrt().to(dtype=x_s.dtype, device=x_s.device)  # even in k: the real FFT pair suffices
    return lattice.real_filter(x_s, gain, field.d)


# -- per-mode gains of the discretised samplers -----------------------------------------------
def score_kernel_fn(field: GaussianField, process: Process) -> Kernel:
    """``t -> K_t(k) = -1 / (a(t)^2 c0(k) + Xi(t))`` per mode (float64, 0 on a removed zero mode) (THEORY 2).

    The same values as ``field.score_kernel(process, t)`` with ``c0`` computed once.  ``t`` a float
    gives ``(L,)*d``; a 1-D float64 tensor of times gives ``(len(t), *lattice)`` (the kernel is marked
    ``vectorized`` so :func:`ode_gain` / :func:`sde_variance` evaluate a whole grid in one call).
    """
    _check_field(field)
    c0 = field.c0()
    mask = field.mode_mask()

    def kernel(t) -> torch.Tensor:
        if isinstance(t, torch.Tensor) and t.ndim == 1:
            tt = t.to(torch.float64).reshape(-1, *([1] * field.d))
            C = process.a(tt) ** 2 * c0 + process.Xi(tt)
        else:
            C = float(process.a(float(t))) ** 2 * c0 + float(process.Xi(float(t)))
        return torch.where(mask, -1.0 / torch.where(mask, C, torch.ones_like(C)), torch.zeros_like(C))

    kernel.vectorized = True
    return kernel


def _rates(kernel: Kernel, process: Process, times: torch.Tensor, factor: float) -> torch.Tensor:
    """``-gamma(t) - factor g(t)^2 K_t`` in float64 for a 1-D tensor of times: ``(len(times), *modes)``.

    ``factor`` is 1/2 for the PF-ODE and 1 for the reverse SDE.  A kernel marked ``vectorized`` is
    called once with the whole tensor; any other callable once per time.
    """
    if getattr(kernel, "vectorized", False):
        K = torch.as_tensor(kernel(times), dtype=torch.float64)
    else:
        K = torch.stack([torch.as_tensor(kernel(float(t)), dtype=torch.float64) for t in times])
    shape = (-1,) + (1,) * (K.ndim - 1)
    gamma = torch.as_tensor(process.gamma(times), dtype=torch.float64).reshape(shape)
    g2 = torch.as_tensor(process.g(times), dtype=torch.float64).reshape(shape) ** 2
    return -gamma - factor * g2 * K


def _grid(process: Process, grid_times) -> torch.Tensor:
    return resolve_grid(process, None, grid_times)


def stiffness(kernel: Kernel, process: Process, *, sde: bool = False, t_min: float = 0.0, n_probe: int = 257) -> float:
    """``max_{t, k} |gamma(t) + f g(t)^2 K_t(k)|``, the largest per-mode rate of the linear sampler ODE/SDE
    (``f = 1/2`` PF-ODE, ``f = 1`` reverse SDE), probed at ``n_probe`` uniform times in ``[t_min, T]``.

    Step sizes with ``h * stiffness << 1`` put the discretised samplers in their asymptotic regime.
    """
    check_time(process, t_min, name="t_min")
    if isinstance(n_probe, bool) or not isinstance(n_probe, int) or n_probe < 2:
        raise ValueError(f"n_probe must be an int >= 2, got n_probe={n_probe!r}")
    ts = torch.linspace(float(t_min), float(process.T), n_probe, dtype=torch.float64)
    return float(_rates(kernel, process, ts, 1.0 if sde else 0.5).abs().max())


def _ode_increments(kernel: Kernel, process: Process, grid_times, method: str) -> torch.Tensor:
    """``factor - 1`` of every PF-ODE step, ``(N, *modes)``, without the rounding of adding 1."""
    if method not in ("euler", "heun", "rk4"):
        raise ValueError(f"method must be one of ('euler', 'heun', 'rk4'), got method={method!r}")
    t = _grid(process, grid_times)
    rate = _rates(kernel, process, t[:-1], 0.5)
    dt = torch.diff(t).reshape((-1,) + (1,) * (rate.ndim - 1))
    a = dt * rate
    if method == "euler":
        return a
    c = dt * _rates(kernel, process, t[1:], 0.5)
    if method == "heun":
        return 0.5 * (a + c) + 0.5 * a * c
    b = dt * _rates(kernel, process, 0.5 * (t[:-1] + t[1:]), 0.5)
    return (a + 4.0 * b + c) / 6.0 + (a * b + b * b + b * c) / 6.0 + b * b * (a + c) / 12.0 + a * b * b * c / 24.0


def ode_step_factors(kernel: Kernel, process: Process, grid_times, method: str = "rk4") -> torch.Tensor:
    """Per-step, per-mode multipliers of the discretised PF-ODE (module docstring): ``(N, *modes)``."""
    return 1.0 + _ode_increments(kernel, process, grid_times, method)


def ode_gain(kernel: Kernel, process: Process, grid_times, method: str = "rk4") -> torch.Tensor:
    """Exact per-mode multiplier of the discretised PF-ODE sampler on the grid (module docstring).

    ``kernel(t)`` gives ``K_t(k)`` per mode (:func:`score_kernel_fn`, or any callable
    ``float -> tensor``); ``grid_times`` a decreasing 1-D tensor.  The sampler maps
    ``F[x_T] -> gain * F[x_T]``; the generated mode variance from ``N(0, v_T)`` is ``gain^2 v_T``.
    """
    return torch.prod(ode_step_factors(kernel, process, grid_times, method), dim=0)


def ode_log_gain(kernel: Kernel, process: Process, grid_times, method: str = "rk4") -> torch.Tensor:
    """``log |ode_gain|`` as ``sum_i log|1 + (factor_i - 1)|`` with ``log1p`` for small increments: accurate
    to about ``eps * sum_i |log |factor_i||`` instead of ``N eps``, so tiny (RK4) discretisation errors stay
    measurable against the exact ``log sqrt(C_tmin / C_T)``.  The generated variance from ``N(0, v_T)``
    is ``exp(2 log_gain) v_T`` (the sign of an overshooting step, factor < 0, does not matter there)."""
    inc = _ode_increments(kernel, process, grid_times, method)
    return torch.where(inc > -0.5, torch.log1p(inc.clamp(min=-0.5)), torch.log((1.0 + inc).abs())).sum(dim=0)


def _em_factors(kernel: Kernel, process: Process, grid_times) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler–Maruyama mean factors ``m_i = 1 + h_i (gamma + g^2 K)(t_i)`` ``(N, *modes)`` and noise
    variances ``q_i = g(t_i)^2 h_i`` ``(N,)``: the step ``x <- x - h (-gamma x - g^2 K x) + g sqrt(h) z``."""
    t = _grid(process, grid_times)
    h = -torch.diff(t)
    rate = _rates(kernel, process, t[:-1], 1.0)
    m = 1.0 - h.reshape((-1,) + (1,) * (rate.ndim - 1)) * rate
    q = torch.as_tensor(process.g(t[:-1]), dtype=torch.float64) ** 2 * h
    return m, q


def sde_gain(kernel: Kernel, process: Process, grid_times) -> torch.Tensor:
    """Per-mode product ``prod_i m_i`` of the Euler–Maruyama mean map (the sampler with zero noise)."""
    return torch.prod(_em_factors(kernel, process, grid_times)[0], dim=0)


def sde_variance(
    kernel: Kernel, process: Process, grid_times, v_T, mode_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact per-mode variance after Euler–Maruyama from ``N(0, v_T)``: ``v <- m_i^2 v + g(t_i)^2 h_i``.

    ``mode_mask`` (bool, per mode) marks modes that receive noise (the zero mode at ``r = 0`` does not).
    """
    m, q = _em_factors(kernel, process, grid_times)
    noise = torch.ones_like(m[0]) if mode_mask is None else mode_mask.to(torch.float64)
    # unrolled recursion: v_N = P_0 v_T + sum_i q_i P_{i+1} noise, P_i = prod_{j >= i} m_j^2, P_N = 1
    P = torch.flip(torch.cumprod(torch.flip(m * m, (0,)), dim=0), (0,))
    P_next = torch.cat([P[1:], torch.ones_like(P[:1])])
    q = q.reshape((-1,) + (1,) * (m.ndim - 1))
    return torch.as_tensor(v_T, dtype=torch.float64) * P[0] + (q * P_next).sum(dim=0) * noise


def measured_order(errors, steps) -> float:
    """Convergence order from global errors at several step counts: the least-squares slope of
    ``log error`` against ``log(1/steps)`` (diffrax-style).  ``errors`` and ``steps`` are equal-length
    sequences (>= 2 entries) of positive numbers; for a method of order ``p``, ``error ~ C N^-p`` gives ``p``."""
    e = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
    n = torch.as_tensor(steps, dtype=torch.float64).reshape(-1)
    if e.numel() != n.numel() or e.numel() < 2:
        raise ValueError(f"errors and steps must have the same length >= 2, got {e.numel()} and {n.numel()}")
    if not bool(((e > 0) & torch.isfinite(e)).all()):
        raise ValueError(f"errors must be finite and > 0, got {e.tolist()}")
    if not bool(((n > 0) & torch.isfinite(n)).all()) or torch.unique(n).numel() != n.numel():
        raise ValueError(f"steps must be distinct positive numbers, got {n.tolist()}")
    x, y = -torch.log(n), torch.log(e)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


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
