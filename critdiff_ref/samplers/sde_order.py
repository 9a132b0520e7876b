"""Weak and strong order of stochastic reverse-time samplers (THEORY 1, 2 "Discretized samplers").

On the Gaussian field every sampler with the exact (linear) score is linear in its start ``x_T``
and in the standard normals ``z_1, ..., z_M`` it draws: ``x_0 = G x_T + sum_j H_j z_j`` with ``G``
and every ``H_j`` diagonal in Fourier space.  Hence:

- **weak order, exactly** — :func:`probe_linear_sampler` feeds a delta function as ``x_T`` and, one
  at a time, as each noise draw (through the sampler's ``noise=`` argument) and reads off ``G(k)``
  and ``S(k) = sum_j H_j(k)^2``; the generated mode variance from ``N(0, v_T)`` is
  ``G^2 v_T + S`` with no sampling noise.  The weak error is ``max_k |v(k) / C_tmin(k) - 1|`` from
  the exact start ``v_T = C_T``; Euler–Maruyama (``samplers.reverse_sde``) has weak order 1, the
  stochastic Heun step :func:`reverse_sde_heun` weak order 2.
- **strong order** — the sampler replays given Brownian increments (:func:`replay_noise`); the
  error against a fine-step solution driven by the same path (:func:`coarsen_increments`) is
  estimated by Monte Carlo with its standard error (:func:`strong_error`).  For Euler–Maruyama
  on the Gaussian field the mean-square error is also exact (:func:`em_strong_mse`).

Strong order of Euler–Maruyama: 1/2 in general, but **1 for additive noise** (``g`` independent of
``x``, as in every reverse diffusion SDE): the Milstein correction ``(g g'/2)(dW^2 - h)`` vanishes, so
EM *is* Milstein; the remaining local errors are ``int (g(s) - g(t_i)) dW`` and the drift's
``int f'(x) (x(s) - x(t_i)) ds``, both mean-zero of size ``h^{3/2}`` and independent across steps
(sum of ``N`` variances ``h^3``: rms ``O(h)``), plus a deterministic ``O(h^2)`` per step (``O(h)``
globally).  :func:`euler_maruyama` on geometric Brownian motion (multiplicative noise) shows order 1/2.

The schemes themselves (:func:`reverse_sde_heun`, Brownian increments, the reference
:func:`euler_maruyama`) live in :mod:`critdiff_ref.samplers.sde_schemes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..processes import Process
from .guard import check_start, grid_floats
from .reverse import Score
from .grids import resolve_grid
from .exact import measured_order
from .sde_schemes import (
    Noise,
    brownian_increments,
    coarsen_increments,
    refine_grid,
    replay_noise,
)

__all__ = [
    "heun_variance",
    "probe_linear_sampler",
    "linear_sampler_variance",
    "weak_error",
    "fit_order",
    "OrderFit",
    "weak_order",
    "StrongError",
    "strong_error",
    "em_strong_mse",
    "strong_order",
    "weak_order_check",
]

Kernel = Callable[[float], torch.Tensor]


def _kernels(kernel: Kernel, times: torch.Tensor) -> torch.Tensor:
    """``K_t`` for a 1-D tensor of times, ``(len(times), *modes)``: one call if the kernel is marked
    ``vectorized`` (as ``samplers.score_kernel_fn`` may be), else one call per time."""
    if getattr(kernel, "vectorized", False):
        return torch.as_tensor(kernel(times), dtype=torch.float64)
    return torch.stack([torch.as_tensor(kernel(float(u)), dtype=torch.float64) for u in times])


# -- exact per-mode variance of stochastic Heun -----------------------------------------------
def heun_variance(kernel: Kernel, process: Process, grid_times, v_T, mode_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Exact per-mode variance after :func:`reverse_sde_heun` from ``N(0, v_T)`` (the Heun analogue of
    ``samplers.sde_variance``).  With ``l_i = -gamma - g^2 K`` at ``t_i``, ``dt = -h``, one step is
    ``x <- (1 + dt (l_0 + l_1)/2 + dt^2 l_0 l_1 / 2) x + (g_0 + g_1 + dt l_1 g_0)/2 sqrt(h) z``, so
    ``v <- A^2 v + B^2 h``.  ``mode_mask`` marks modes receiving noise.  Shape ``(L,)*d``.
    """
    t = resolve_grid(process, None, grid_times)
    K0, K1 = _kernels(kernel, t[:-1]), _kernels(kernel, t[1:])
    bshape = (-1,) + (1,) * (K0.ndim - 1)

    def per_step(f, times):
        return torch.as_tensor(f(times), dtype=torch.float64).reshape(bshape)

    g0, g1 = per_step(process.g, t[:-1]), per_step(process.g, t[1:])
    l0 = -per_step(process.gamma, t[:-1]) - g0 * g0 * K0
    l1 = -per_step(process.gamma, t[1:]) - g1 * g1 * K1
    dt = torch.diff(t).reshape(bshape)
    A2 = (1.0 + 0.5 * dt * (l0 + l1) + 0.5 * dt * dt * l0 * l1) ** 2
    Q = (0.5 * (g0 + g1 + dt * l1 * g0)) ** 2 * (-dt)
    suffix = torch.flip(torch.cumprod(torch.flip(A2, [0]), 0), [0])  # prod_{l >= i} A_l^2
    after = torch.cat([suffix[1:], torch.ones_like(A2[:1])])
    noise_w = torch.ones_like(K0[0]) if mode_mask is None else mode_mask.to(torch.float64)
    return suffix[0] * torch.as_tensor(v_T, dtype=torch.float64) + noise_w * (after * Q).sum(0)


# -- exact per-mode moments of a linear stochastic sampler ------------------------------------
class _ProbeNoise:
    """Noise callable for the probing runs: zeros (counting calls), or a delta at call ``j`` in batch row ``j``."""

    def __init__(self, d: int, rows: bool):
        self.d, self.rows, self.calls = d, rows, 0

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        z = torch.zeros_like(x)
        if self.rows:
            if self.calls >= x.shape[0]:
                raise RuntimeError("the sampler drew noise more often on the probing run than on the counting run")
            z[(self.calls,) + (0,) * self.d] = 1.0
        self.calls += 1
        return z


def _check_field_like(field) -> None:
    from ..targets import GaussianField

    if not isinstance(field, GaussianField):
        raise TypeError(f"field must be a GaussianField, got {type(field).__name__}")


def _transfer(y: torch.Tensor, d: int, V: int) -> torch.Tensor:
    """Fourier multiplier from the response ``y`` to a unit delta at the origin: ``sqrt(V) F[y]`` (real part)."""
    from .. import lattice

    return (math.sqrt(V) * lattice.fft(y.to(torch.float64), d)).real


def probe_linear_sampler(sampler: Callable, field, process: Process, steps: int | None, **kwargs) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Exact ``(G(k), S(k), M)`` of a linear stochastic sampler on ``field`` with the exact score.

    ``sampler(score, process, x_T, steps, noise=..., **kwargs) -> x_0`` must draw all its randomness
    through ``noise(x, generator)`` (standard normals shaped like ``x``).  Two float64 runs: one with
    ``x_T = delta`` and zero noise (gives ``G`` and the number ``M`` of noise draws), one with
    ``x_T = 0`` and batch row ``j`` receiving a delta at draw ``j`` (gives ``S = sum_j H_j^2``).
    Shapes ``(L,)*d`` (fftn layout).  Translation invariance of the sampler is assumed (true for
    the Fourier-diagonal exact score and any step acting site-wise).
    """
    from ..scores import exact_score

    _check_field_like(field)
    if not callable(sampler):
        raise TypeError(f"sampler must be callable, got {type(sampler).__name__}")
    score = exact_score(field, process)
    delta = torch.zeros((1, *field.shape), dtype=torch.float64)
    delta[(0,) * (field.d + 1)] = 1.0
    counter = _ProbeNoise(field.d, rows=False)
    y = sampler(score, process, delta, steps, noise=counter, **kwargs)
    G = _transfer(y[0], field.d, field.V)
    M = counter.calls
    if M == 0:
        return G, torch.zeros_like(G), 0
    probe = _ProbeNoise(field.d, rows=True)
    y = sampler(score, process, torch.zeros((M, *field.shape), dtype=torch.float64), steps, noise=probe, **kwargs)
    if probe.calls != M:
        raise RuntimeError(f"the sampler drew noise {probe.calls} times on the probing run, {M} on the counting run")
    H = _transfer(y, field.d, field.V)
    return G, (H * H).sum(0), M


def linear_sampler_variance(sampler: Callable, field, process: Process, steps: int | None, v_T=None, **kwargs) -> torch.Tensor:
    """Exact generated mode variance ``G^2 v_T + S`` (default ``v_T = C_T``, the exact start), ``(L,)*d``."""
    G, S, _ = probe_linear_sampler(sampler, field, process, steps, **kwargs)
    if v_T is None:
        v_T = field.mode_variance(process, float(process.T))
    return G * G * torch.as_tensor(v_T, dtype=torch.float64) + S


def weak_error(variance: torch.Tensor, field, process: Process, t_min: float = 0.0) -> float:
    """``max_k |v(k) / C_tmin(k) - 1|`` over fluctuating modes: the weak (second-moment) error."""
    _check_field_like(field)
    mask = field.mode_mask()
    target = field.mode_variance(process, float(t_min))
    return float((variance[mask] / target[mask] - 1.0).abs().max())


# -- order fits -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderFit:
    """Errors at ``steps`` and the least-squares slope of log error on log h (the observed order)."""

    steps: tuple[int, ...]
    errors: tuple[float, ...]
    order: float

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.errors) or len(self.steps) < 2:
            raise ValueError(f"steps and errors need equal lengths >= 2, got {len(self.steps)} and {len(self.errors)}")


def fit_order(steps, errors, T: float = 1.0) -> OrderFit:
    """Fit ``log err = p log h + c`` with ``h = T / N`` (diffrax-style); returns :class:`OrderFit`."""
    steps, errors = tuple(int(n) for n in steps), tuple(float(e) for e in errors)
    if len(steps) < 2 or len(steps) != len(errors):
        raise ValueError(f"steps and errors need equal lengths >= 2, got {len(steps)} and {len(errors)}")
    if any(n < 1 for n in steps) or len(set(steps)) != len(steps):
        raise ValueError(f"steps must be distinct ints >= 1, got {steps}")
    if not all(math.isfinite(e) and e > 0 for e in errors):
        raise ValueError(f"errors must be finite and > 0 to fit an order, got {errors}")
    # the slope against log h = log(T/N) equals the slope against log(1/N): samplers.measured_order
    return OrderFit(steps, errors, measured_order(errors, steps))


def weak_order(sampler: Callable, field, process: Process, steps, t_min: float = 0.0, **kwargs) -> OrderFit:
    """Weak order of ``sampler`` from exact variances (:func:`probe_linear_sampler`) at each ``N`` in ``steps``."""
    errors = [
        weak_error(linear_sampler_variance(sampler, field, process, n, t_min=t_min, **kwargs), field, process, t_min)
        for n in steps
    ]
    return fit_order(steps, errors, process.T - t_min)


# -- strong error -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StrongError:
    """Root-mean-square (per degree of freedom) difference ``rms`` with its standard error ``se``."""

    steps: int
    rms: float
    se: float
    n_paths: int


def strong_error(
    sampler: Callable,
    score: Score,
    process: Process,
    x_T: torch.Tensor,
    steps: int,
    factor: int = 16,
    generator: torch.Generator | None = None,
    grid="uniform",
    t_min: float = 0.0,
    *,
    noise: Noise | None = None,
    **kwargs,
) -> StrongError:
    """Monte Carlo strong error of ``sampler`` with ``steps`` steps against the same sampler with
    ``factor * steps`` steps driven by the same Brownian path (the rows of ``x_T`` are the paths).

    ``rms = sqrt(mean_paths mean_sites (x_coarse - x_fine)^2)``; ``se`` by the delta method from the
    per-path mean squares (paths independent).  ``sampler`` follows ``samplers.reverse_sde``'s signature.
    """
    check_start(x_T)
    if x_T.ndim < 1 or x_T.shape[0] < 2:
        raise ValueError(f"x_T must be (n_paths >= 2, *event), got shape {tuple(x_T.shape)}")
    coarse = resolve_grid(process, steps, grid, t_min)
    fine = refine_grid(coarse, factor)
    dW = brownian_increments(fine, x_T.shape, generator, dtype=x_T.dtype, device=x_T.device, noise=noise)
    x_fine = sampler(score, process, x_T, None, grid=fine, noise=replay_noise(dW, fine), **kwargs)
    x_coarse = sampler(score, process, x_T, None, grid=coarse, noise=replay_noise(coarsen_increments(dW, factor), coarse), **kwargs)
    per_path = ((x_coarse - x_fine).to(torch.float64) ** 2).reshape(x_T.shape[0], -1).mean(1)
    mse = float(per_path.mean())
    se_mse = float(per_path.std(unbiased=True)) / math.sqrt(per_path.numel())
    rms = math.sqrt(mse)
    return StrongError(int(coarse.numel() - 1), rms, se_mse / (2.0 * rms) if rms > 0 else 0.0, int(x_T.shape[0]))


def _em_responses(kernel: Kernel, process: Process, times: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """EM on a grid: per-mode gain ``G`` and the noise responses ``P_i g(t_i)`` ``(N, *modes)`` with
    ``P_i = prod_{l > i} m_l``, ``m_l = 1 + h_l (gamma + g^2 K)(t_l)`` (the output is ``G x_T + sum_i P_i g(t_i) dW_i``)."""
    t = torch.tensor(times, dtype=torch.float64)
    K = _kernels(kernel, t[:-1])
    bshape = (-1,) + (1,) * (K.ndim - 1)
    gamma = torch.as_tensor(process.gamma(t[:-1]), dtype=torch.float64).reshape(bshape)
    g = torch.as_tensor(process.g(t[:-1]), dtype=torch.float64).reshape(bshape)
    h = (t[:-1] - t[1:]).reshape(bshape)
    m = 1.0 + h * (gamma + g * g * K)
    suffix = torch.flip(torch.cumprod(torch.flip(m, [0]), 0), [0])  # suffix[i] = prod_{l >= i} m_l
    P = torch.cat([suffix[1:], torch.ones_like(m[:1])])
    return suffix[0], P * g


def em_strong_mse(
    kernel: Kernel,
    process: Process,
    grid_times,
    v_T,
    mode_mask: torch.Tensor | None = None,
    factor: int | None = None,
    n_quad: int = 8,
) -> torch.Tensor:
    """Exact per-mode mean-square strong error of Euler–Maruyama on the Gaussian field, ``(L,)*d``.

    Against EM on the grid refined ``factor`` times with the same path (``factor`` given):
    ``(G_c - G_f)^2 v_T + sum_{ij} (P^c_i g(t_i) - P^f_{ij} g(s_ij))^2 h_ij``.  Against the exact
    solution (``factor=None``): ``(G_c - Phi(t_min, T))^2 v_T + sum_i int (P^c_i g(t_i) - Phi(t_min, s) g(s))^2 ds``
    with ``Phi(t_min, s) = (C_tmin / C_s) exp(-(Gamma(s) - Gamma(t_min)))`` (THEORY 2), the integral by
    ``n_quad``-point Gauss–Legendre per step.  ``mode_mask`` marks modes receiving noise.
    """
    times = grid_floats(resolve_grid(process, None, grid_times))
    G_c, resp_c = _em_responses(kernel, process, times)
    v_T = torch.as_tensor(v_T, dtype=torch.float64)
    noise_w = torch.ones_like(G_c) if mode_mask is None else mode_mask.to(torch.float64)
    if factor is not None:
        fine = grid_floats(refine_grid(torch.tensor(times), factor))
        G_f, resp_f = _em_responses(kernel, process, fine)
        h_f = (torch.tensor(fine[:-1], dtype=torch.float64) - torch.tensor(fine[1:], dtype=torch.float64)).reshape((-1,) + (1,) * (G_c.ndim))
        total = (h_f * (resp_c.repeat_interleave(factor, dim=0) - resp_f) ** 2).sum(0)
        return (G_c - G_f) ** 2 * v_T + noise_w * total
    if isinstance(n_quad, bool) or not isinstance(n_quad, int) or n_quad < 1:
        raise ValueError(f"n_quad must be an int >= 1, got n_quad={n_quad!r}")
    t = torch.tensor(times, dtype=torch.float64)
    nodes, weights = (torch.as_tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(n_quad))
    half = 0.5 * (t[:-1] - t[1:])  # (N,)
    s = (0.5 * (t[:-1] + t[1:]))[:, None] + half[:, None] * nodes  # (N, n_quad) quadrature times
    s_all = torch.cat([t[:1], s.reshape(-1)])
    K = _kernels(kernel, s_all)
    K_min = torch.as_tensor(kernel(times[-1]), dtype=torch.float64)
    live = K_min != 0
    # Phi(t_min, s) = (C_tmin / C_s) exp(-(Gamma(s) - Gamma(t_min))), and C_tmin / C_s = K_s / K_tmin
    decay = torch.exp(-(torch.as_tensor(process.Gamma(s_all), dtype=torch.float64) - float(process.Gamma(times[-1]))))
    bshape = (-1,) + (1,) * K_min.ndim
    phi = torch.where(live, K / torch.where(live, K_min, torch.ones_like(K_min)), torch.zeros_like(K)) * decay.reshape(bshape)
    g_s = torch.as_tensor(process.g(s_all[1:]), dtype=torch.float64).reshape(bshape)
    resp = resp_c.repeat_interleave(n_quad, dim=0)  # P^c_i g(t_i) at each node of step i
    w = (half[:, None] * weights).reshape(bshape)
    total = (w * (resp - phi[1:] * g_s) ** 2).sum(0)
    return (G_c - phi[0]) ** 2 * v_T + noise_w * total


def strong_order(
    sampler: Callable,
    score: Score,
    process: Process,
    x_T: torch.Tensor,
    steps,
    factor: int = 16,
    generator: torch.Generator | None = None,
    *,
    noise: Noise | None = None,
    **kwargs,
) -> OrderFit:
    """Monte Carlo strong order: :func:`strong_error` at each ``N`` in ``steps`` (same ``x_T``, fresh
    paths from ``generator``), fitted by :func:`fit_order`.  The references are ``factor * N``-step runs,
    so use ``factor >= 8`` for the fit to see the coarse error (the gap is ``O(1/factor)`` relative)."""
    errors = [strong_error(sampler, score, process, x_T, int(n), factor, generator, noise=noise, **kwargs).rms for n in steps]
    return fit_order(steps, errors, process.T - float(kwargs.get("t_min", 0.0)))


def weak_order_check(
    sampler: Callable, field, process: Process, steps=(64, 128, 256), order: float = 1.0, band: float = 0.3, **kwargs
) -> dict:
    """The weak order of a stochastic score sampler that takes ``noise=``, as a validation-report row.

    Returns ``{"name", "measured", "reference", "tolerance", "tolerance_source", "passed", "detail"}``
    (the fields of ``validate.CheckResult``): exact weak errors by :func:`weak_order`, passed when
    ``|measured - order| <= band``.  Pick ``steps`` with ``h * samplers.stiffness(...) <~ 0.1``.
    """
    if not (isinstance(band, (int, float)) and band > 0):
        raise ValueError(f"band must be a number > 0, got band={band!r}")
    if not (isinstance(order, (int, float)) and order > 0):
        raise ValueError(f"order must be a number > 0, got order={order!r}")
    fit = weak_order(sampler, field, process, steps, **kwargs)
    return {
        "name": f"gauss[d={field.d},L={field.L},r={field.r:g}]/weak_order",
        "measured": fit.order,
        "reference": float(order),
        "tolerance": float(band),
        "tolerance_source": "exact per-mode variances (linear probing, no sampling noise); band for the "
        "pre-asymptotic drift of a slope fitted over 3 doublings",
        "passed": abs(fit.order - order) <= band,
        "detail": f"weak errors {[f'{e:.3g}' for e in fit.errors]} at steps {list(fit.steps)}",
    }
