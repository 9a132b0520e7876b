"""Stochastic integrators for the reverse SDE and the Brownian paths that drive them (THEORY 1, 2 "Discretized samplers").

- :func:`reverse_sde_heun` — stochastic Heun for additive noise (weak order 2, strong order 1), with
  the signature of ``samplers.reverse_sde``.
- Brownian paths on a monotone grid: :func:`refine_grid`, :func:`brownian_increments`,
  :func:`coarsen_increments` (the same path on a coarser grid) and :func:`replay_noise` (a ``noise=``
  callable that drives a sampler with given increments).
- :func:`euler_maruyama` — reference Euler–Maruyama for ``dx = f dt + b dW`` with given increments.

Their weak and strong orders are measured in :mod:`critdiff_ref.samplers.sde_order`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..processes import Process, sde_drift
from .guard import check_start, grid_floats, grid_guard
from .reverse import Noise, Score, noise_source
from .grids import resolve_grid

__all__ = [
    "reverse_sde_heun",
    "refine_grid",
    "brownian_increments",
    "coarsen_increments",
    "replay_noise",
    "euler_maruyama",
]

# -- a higher-order stochastic sampler --------------------------------------------------------
def reverse_sde_heun(
    score: Score,
    process: Process,
    x_T: torch.Tensor,
    steps: int | None,
    generator: torch.Generator | None = None,
    grid="uniform",
    t_min: float = 0.0,
    *,
    noise: Noise | None = None,
) -> torch.Tensor:
    """Stochastic Heun for the reverse SDE with additive noise (weak order 2, strong order 1).

    With ``f = -gamma x - g^2 s_t(x)`` (THEORY 1), ``dt = t_{i+1} - t_i = -h``, one ``z`` per step:
    ``x~ = x + dt f(x, t_i) + g(t_i) sqrt(h) z``;
    ``x <- x + dt (f(x, t_i) + f(x~, t_{i+1}))/2 + (g(t_i) + g(t_{i+1}))/2 sqrt(h) z``.
    Same signature as ``samplers.reverse_sde``; shapes ``(*batch, *event)``.
    """
    check_start(x_T)
    draw = noise_source(noise, generator)
    times = grid_floats(resolve_grid(process, steps, grid, t_min))
    x = x_T
    guard = grid_guard(times, x.device, "reverse_sde_heun")
    for i in range(len(times) - 1):
        t, t_next = times[i], times[i + 1]
        dt, sqrt_h = t_next - t, math.sqrt(t - t_next)
        z = draw(x)
        g0, g1 = float(process.g(t)), float(process.g(t_next))
        f0 = sde_drift(process, score, x, t)
        x_pred = x + dt * f0 + g0 * sqrt_h * z
        f1 = sde_drift(process, score, x_pred, t_next)
        x = x + 0.5 * dt * (f0 + f1) + 0.5 * (g0 + g1) * sqrt_h * z
        guard.record(i, x)
    guard.check()
    return x


# -- Brownian paths ---------------------------------------------------------------------------
def _check_times(times) -> torch.Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if t.ndim != 1 or t.numel() < 2 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"times must be a finite 1-D grid with >= 2 entries, got shape {tuple(t.shape)}")
    dt = torch.diff(t)
    if not (bool((dt > 0).all()) or bool((dt < 0).all())):
        raise ValueError("times must be strictly monotone (increasing or decreasing)")
    return t


def _check_factor(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got factor={factor!r}")
    return int(factor)


def refine_grid(times, factor: int) -> torch.Tensor:
    """Split each interval of a monotone grid into ``factor`` equal sub-steps (the coarse times are kept)."""
    t, factor = _check_times(times), _check_factor(factor)
    frac = torch.arange(factor, dtype=torch.float64) / factor
    fine = (t[:-1, None] + frac * torch.diff(t)[:, None]).reshape(-1)
    return torch.cat([fine, t[-1:]])


def brownian_increments(
    times,
    shape,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    noise: Noise | None = None,
) -> torch.Tensor:
    """Increments ``dW_i = sqrt(|t_{i+1} - t_i|) z_i`` of a Brownian path on ``times``: ``(N, *shape)``.

    ``noise(x, generator)`` replaces ``torch.randn`` (e.g. ``GaussianField.noise`` for zero-mode-free paths).
    """
    t = _check_times(times)
    shape = tuple(int(s) for s in shape)
    if generator is not None and device is None:
        device = generator.device
    h = torch.diff(t).abs().to(dtype=dtype, device=device)
    if noise is None:
        z = torch.randn((len(h), *shape), generator=generator, dtype=dtype, device=device)
    else:
        z = torch.stack([noise(torch.empty(shape, dtype=dtype, device=device), generator) for _ in range(len(h))])
    return h.sqrt().reshape(-1, *([1] * len(shape))) * z


def coarsen_increments(dW: torch.Tensor, factor: int) -> torch.Tensor:
    """Sum consecutive groups of ``factor`` increments: the same path on a grid ``factor`` times coarser."""
    factor = _check_factor(factor)
    if dW.shape[0] % factor:
        raise ValueError(f"the number of increments ({dW.shape[0]}) must be a multiple of factor={factor}")
    return dW.reshape(dW.shape[0] // factor, factor, *dW.shape[1:]).sum(1)


def replay_noise(dW: torch.Tensor, times) -> Noise:
    """A ``noise(x, generator)`` callable that returns ``z_i = dW_i / sqrt(h_i)`` on its ``i``-th call.

    Passing it to a sampler with one draw per step (``samplers.reverse_sde``, :func:`reverse_sde_heun`)
    drives the sampler with the given Brownian path; a further call raises RuntimeError.
    """
    t = _check_times(times)
    if dW.shape[0] != t.numel() - 1:
        raise ValueError(f"dW has {dW.shape[0]} increments, the grid {t.numel() - 1} steps")
    h = torch.diff(t).abs()
    state = {"i": 0}

    def noise(x: torch.Tensor, generator=None) -> torch.Tensor:
        i = state["i"]
        if i >= dW.shape[0]:
            raise RuntimeError(f"replay_noise: the sampler asked for draw {i + 1}, the path has {dW.shape[0]}")
        state["i"] = i + 1
        z = dW[i] / math.sqrt(float(h[i]))
        return z.to(dtype=x.dtype, device=x.device).expand_as(x)

    return noise


def euler_maruyama(
    drift: Callable[[torch.Tensor, float], torch.Tensor],
    diffusion: Callable[[torch.Tensor, float], torch.Tensor],
    x0: torch.Tensor,
    times,
    dW: torch.Tensor,
) -> torch.Tensor:
    """Reference Euler–Maruyama for ``dx = f(x, t) dt + b(x, t) dW`` driven by given increments.

    ``x_{i+1} = x_i + (t_{i+1} - t_i) f(x_i, t_i) + b(x_i, t_i) dW_i`` on a monotone grid (either
    direction; ``dW`` from :func:`brownian_increments`, shape ``(N, *x0.shape)`` or broadcastable).
    """
    check_start(x0, "x0")
    t = [float(s) for s in _check_times(times)]
    if dW.shape[0] != len(t) - 1:
        raise ValueError(f"dW has {dW.shape[0]} increments, the grid {len(t) - 1} steps")
    x = x0
    guard = grid_guard(t, x.device, "euler_maruyama", "the drift or diffusion returned NaN/inf or the step is unstable")
    for i in range(len(t) - 1):
        x = x + (t[i + 1] - t[i]) * drift(x, t[i]) + diffusion(x, t[i]) * dW[i].to(x.dtype)
        guard.record(i, x)
    guard.check()
    return x
