"""Time grids for the reverse-time samplers (THEORY 1): decreasing times from ``T`` to ``t_min``.

- ``uniform``: ``t_i = T - i (T - t_min) / N``.
- ``log``: geometric, ``t_i = T (t_min / T)^{i/N}`` (needs ``t_min > 0``).
- ``karras``: the schedule of Karras et al. (2022, eq. 5) applied to time,
  ``t_i = (T^{1/rho} + i/N (t_min^{1/rho} - T^{1/rho}))^rho``; dense near ``t_min``.

Every grid is a float64 1-D tensor of ``N + 1`` strictly decreasing times, ``t_0 = T``, ``t_N = t_min``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..processes import Process

__all__ = ["GRID_KINDS", "time_grid", "resolve_grid"]

GRID_KINDS = ("uniform", "log", "karras")


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int >= 1, got {steps!r} ({type(steps).__name__})")
    if steps < 1:
        raise ValueError(f"steps must be an int >= 1, got steps={steps}")
    return int(steps)


def _check_t_min(process: Process, t_min) -> float:
    if isinstance(t_min, bool) or not isinstance(t_min, (int, float, np.floating, np.integer)):
        raise TypeError(f"t_min must be a real number in [0, T), got {t_min!r}")
    t_min = float(t_min)
    if not (math.isfinite(t_min) and 0.0 <= t_min < process.T):
        raise ValueError(f"t_min must lie in [0, T) = [0, {process.T}), got t_min={t_min}")
    return t_min


def time_grid(process: Process, steps: int, kind: str = "uniform", t_min: float = 0.0, rho: float = 7.0) -> torch.Tensor:
    """Decreasing float64 grid ``T = t_0 > t_1 > ... > t_N = t_min`` of ``steps + 1`` times (module docstring).

    Shape ``(steps + 1,)``.  ``kind`` in ``("uniform", "log", "karras")``; ``rho > 0`` for karras.
    """
    steps = _check_steps(steps)
    t_min = _check_t_min(process, t_min)
    T = float(process.T)
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "uniform":
        t = T + i * (t_min - T)
    elif kind == "log":
        if t_min <= 0.0:
            raise ValueError(f"a log-spaced grid needs t_min > 0, got t_min={t_min}")
        t = T * torch.exp(i * math.log(t_min / T))
    elif kind == "karras":
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (math.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be a finite number > 0, got rho={rho!r}")
        t = (T ** (1.0 / rho) + i * (t_min ** (1.0 / rho) - T ** (1.0 / rho))) ** rho
    else:
        raise ValueError(f"kind must be one of {GRID_KINDS}, got kind={kind!r}")
    t[0], t[-1] = T, t_min  # exact end points (no rounding in the powers)
    return t


def resolve_grid(process: Process, steps, grid, t_min: float = 0.0) -> torch.Tensor:
    """The float64 grid a sampler integrates on: a named kind (see :func:`time_grid`) or an explicit
    1-D tensor of strictly decreasing times in ``[0, T]`` (then ``steps`` must be ``None`` or ``len - 1``)."""
    if isinstance(grid, str):
        return time_grid(process, steps, grid, t_min)
    if not isinstance(grid, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"grid must be a kind in {GRID_KINDS} or a 1-D tensor of times, got {type(grid).__name__}")
    t = torch.as_tensor(grid, dtype=torch.float64).detach().cpu()
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"an explicit grid must be 1-D with >= 2 times, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0.0 or float(t.max()) > process.T:
        raise ValueError(f"grid times must lie in [0, T] = [0, {process.T}], got [{float(t.min())}, {float(t.max())}]")
    if not bool((torch.diff(t) < 0).all()):
        raise ValueError("an explicit grid must be strictly decreasing (reverse time, T -> t_min)")
    if steps is not None and _check_steps(steps) != t.numel() - 1:
        raise ValueError(f"steps={steps} does not match the explicit grid ({t.numel() - 1} steps); pass steps=None")
    return t
