"""Reverse-time samplers (THEORY 1): probability-flow ODE and Euler–Maruyama reverse SDE.

Both integrate from ``T`` down to ``t_min`` on a decreasing grid ``t_0 = T > ... > t_N = t_min``
with signed step ``dt = t_{i+1} - t_i = -h < 0``:

- PF-ODE ``dx/dt = -gamma x - (g^2/2) s_t(x)`` with Euler (order 1), Heun (2) or RK4 (4) steps;
- reverse SDE, Euler–Maruyama: ``x <- x - h (-gamma x - g^2 s_t(x)) + g(t_i) sqrt(h) z``.

The loop is visible (:func:`_integrate`); the step is a small named function (k-diffusion style).
``fused=True`` captures the whole N-step loop once per (score, process, grid, shape, dtype, device)
and runs it compiled (:func:`.fused.capture`: one program, one CUDA graph on a GPU); ``fused="graph"``
replays the recording without compiling.  The reverse SDE's noise is then drawn before the loop, in
the eager order, so fused and eager runs with the same generator are the same run to rounding.
Every step's ``torch.isfinite(x).all()`` is recorded by a :class:`~.guard.FiniteGuard` (checked at
every step on the CPU, every 64 steps on a GPU, without a per-step host sync) and a non-finite
state raises :class:`FloatingPointError` naming the step and its times.  Shapes: ``x`` is
``(*batch, *event)``; dtype/device follow ``x_T``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..processes import Process, Time, ode_drift, sde_drift
from .grids import resolve_grid
from .fused import Identity, capture, check_fused
from .guard import FiniteGuard, FlagRecorder, check_start, grid_floats, grid_guard

__all__ = [
    "METHODS",
    "euler_step",
    "heun_step",
    "rk4_step",
    "euler_maruyama_step",
    "probability_flow",
    "reverse_sde",
    "pure_noise_start",
    "standard_normal_start",
    "reference_ode",
]

Score = Callable[[torch.Tensor, Time], torch.Tensor]
Velocity = Callable[[torch.Tensor, float], torch.Tensor]
Noise = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


# -- steps ------------------------------------------------------------------------------------
def euler_step(f: Velocity, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """``x + dt f(x, t)`` (first order)."""
    return x + dt * f(x, t)


def heun_step(f: Velocity, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Heun / explicit trapezoid: ``k1 = f(x, t)``, ``k2 = f(x + dt k1, t + dt)``, ``x + dt (k1 + k2)/2``."""
    k1 = f(x, t)
    k2 = f(x + dt * k1, t + dt)
    return x + 0.5 * dt * (k1 + k2)


def rk4_step(f: Velocity, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Classical Runge–Kutta: stages at ``t, t + dt/2, t + dt/2, t + dt``; ``x + dt (k1 + 2k2 + 2k3 + k4)/6``."""
    k1 = f(x, t)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(x + dt * k3, t + dt)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


METHODS = {"euler": euler_step, "heun": heun_step, "rk4": rk4_step}


def euler_maruyama_step(
    process: Process, score: Score, x: torch.Tensor, t: float, dt: float, z: torch.Tensor
) -> torch.Tensor:
    """``x + dt (-gamma x - g^2 s_t(x)) + g(t) sqrt(|dt|) z`` with ``dt = -h < 0`` (THEORY 1): the
    deterministic part is :func:`euler_step` on the SDE drift, shared with the ODE path."""
    drift = lambda y, s: sde_drift(process, score, y, s)  # noqa: E731
    return euler_step(drift, x, t, dt) + float(process.g(t)) * math.sqrt(-dt) * z


def noise_source(noise: Noise | None, generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-step draw of a stochastic sampler: ``noise(x, generator)``, or standard normals shaped,
    typed and placed like ``x`` from ``generator`` when ``noise`` is None (TypeError for a non-callable)."""
    if noise is not None and not callable(noise):
        raise TypeError(f"noise must be a callable (x, generator) -> tensor, got {type(noise).__name__}")

    def draw(x: torch.Tensor) -> torch.Tensor:
        if noise is None:
            return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return noise(x, generator)

    return draw


# -- helpers ----------------------------------------------------------------------------------
def _checked_score(score: Score, sampler: str) -> Score:
    """``score`` whose first output is checked: a tensor with the shape, dtype and device of ``x``
    (TypeError / ValueError naming the score and ``sampler``); later calls go straight through.
    A score returning ``s[:1]`` or a 0-d tensor would otherwise broadcast to a finite, wrong ``x_0``."""
    if not callable(score):
        raise TypeError(f"{sampler}: score must be a callable (x, t) -> tensor, got {type(score).__name__}")
    name = getattr(score, "__qualname__", None) or type(score).__name__
    checked = False

    def first(x: torch.Tensor, t: Time) -> torch.Tensor:
        nonlocal checked
        s = score(x, t)
        if checked:
            return s
        where = f"{sampler}: the score {name}(x, t) returned"
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"{where} {type(s).__name__}; it must return a tensor shaped like x {tuple(x.shape)}")
        if s.shape != x.shape:
            raise ValueError(f"{where} shape {tuple(s.shape)} for x of shape {tuple(x.shape)}; it must return one "
                             "score per entry of x (no broadcasting)")
        if s.dtype != x.dtype or s.device != x.device:
            raise TypeError(f"{where} {s.dtype} on {s.device} for x {x.dtype} on {x.device}; it must follow x")
        checked = True
        return s

    return first


def _kept_steps(n_steps: int, return_trajectory: bool, snapshots) -> list[int] | None:
    """Step indices whose states are returned (0 = x_T, n_steps = x_0), or None for x_0 only."""
    if snapshots is None:
        return list(range(n_steps + 1)) if return_trajectory else None
    if return_trajectory:
        raise ValueError("pass either return_trajectory=True or snapshots, not both")
    idx = list(snapshots) if isinstance(snapshots, (list, tuple, range)) else None
    if not idx or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= n_steps for i in idx):
        raise ValueError(f"snapshots must be a non-empty sequence of step indices in [0, {n_steps}], got {snapshots!r}")
    return [int(i) for i in idx]


def _record(saved: dict, i: int, x: torch.Tensor) -> None:
    if i in saved:  # the keys are the kept step indices, filled in as the loop reaches them
        saved[i] = x


def _result(x: torch.Tensor, saved: dict, keep: list[int] | None):
    return x if keep is None else (x, torch.stack([saved[i] for i in keep]))


def _slots(keep: list[int] | None) -> dict:
    return {} if keep is None else dict.fromkeys(keep)


def _integrate(advance: Callable, x: torch.Tensor, n_steps: int, keep: list[int] | None, guard) -> tuple:
    """``x_{i+1} = advance(i, x_i)`` for ``i < n_steps``, each state recorded by ``guard``; returns the
    last state and the kept states (by step index)."""
    saved = _slots(keep)
    _record(saved, 0, x)
    for i in range(n_steps):
        x = advance(i, x)
        guard.record(i, x)
        _record(saved, i + 1, x)
    guard.check()
    return x, saved


def _run(
    advance: Callable, x_T: torch.Tensor, noise: tuple, guard: FiniteGuard, keep: list[int] | None, key, fused
):
    """The sampler loop, eager (``fused=False``) or captured under ``key`` with ``noise`` as inputs,
    compiled (``fused=True``) or replayed as recorded (``fused="graph"``).
    ``advance(i, x, *noise)``; eager advance draws its own noise (``noise = ()``)."""
    n_steps = guard.ok.numel()
    if not fused:
        x, saved = _integrate(advance, x_T, n_steps, keep, guard)
        return _result(x, saved, keep)

    def loop(x: torch.Tensor, *inputs: torch.Tensor) -> tuple:
        flags = FlagRecorder()
        x, saved = _integrate(lambda i, y: advance(i, y, *inputs), x, n_steps, keep, flags)
        kept = () if keep is None else (torch.stack([saved[i] for i in keep]),)
        return (x, *kept, flags.stacked(x.device))

    inputs = tuple(t.contiguous() for t in (x_T, *noise))  # one layout per cached program
    out = capture(key, loop, inputs, compile=fused is True)(*inputs)
    guard.check_flags(out[-1])
    return out[0] if keep is None else (out[0], out[1])


# -- samplers ---------------------------------------------------------------------------------
def probability_flow(
    score: Score,
    process: Process,
    x_T: torch.Tensor,
    steps: int | None,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    *,
    return_trajectory: bool = False,
    snapshots=None,
    fused: bool | str = False,
):
    """Integrate the PF-ODE ``dx/dt = -gamma x - (g^2/2) s_t(x)`` from ``T`` to ``t_min`` (THEORY 1).

    ``method`` in ``("euler", "heun", "rk4")``; ``grid`` a kind (``"uniform"``, ``"log"``,
    ``"karras"``) or an explicit decreasing 1-D tensor of times.  Returns ``x_0`` (the state at
    ``t_min``), shape of ``x_T``; with ``return_trajectory=True`` also the ``(N + 1, *x_T.shape)`` states,
    with ``snapshots`` (step indices in ``[0, N]``; 0 is ``x_T``) only those, ``(len, *x_T.shape)``.
    ``fused=True`` runs the whole loop captured and compiled (module docstring; the first call per
    score, grid and shape compiles, seconds to minutes; a Python branch of the score on tensor
    values is recorded as it went on that first run);
    ``fused="graph"`` captures without compiling (a CUDA graph on a GPU, built in one run).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got method={method!r}")
    check_start(x_T)
    fused = check_fused(fused, x_T.device, graph=True)
    step = METHODS[method]
    times = grid_floats(resolve_grid(process, steps, grid, t_min))
    score_checked = _checked_score(score, f"probability_flow[{method}]")

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return ode_drift(process, score_checked, x, t)

    def advance(i: int, x: torch.Tensor) -> torch.Tensor:
        return step(velocity, x, times[i], times[i + 1] - times[i])

    keep = _kept_steps(len(times) - 1, return_trajectory, snapshots)
    guard = grid_guard(times, x_T.device, f"probability_flow[{method}]")
    key = ("probability_flow", Identity(score), process, method, tuple(times), keep and tuple(keep))
    return _run(advance, x_T, (), guard, keep, key, fused)


def reverse_sde(
    score: Score,
    process: Process,
    x_T: torch.Tensor,
    steps: int | None,
    generator: torch.Generator | None = None,
    grid="uniform",
    t_min: float = 0.0,
    *,
    noise: Noise | None = None,
    return_trajectory: bool = False,
    snapshots=None,
    fused: bool | str = False,
):
    """Euler–Maruyama for the reverse SDE ``dx = [-gamma x - g^2 s_t(x)] dt + g dW_bar`` (THEORY 1).

    Step ``x <- x - h (-gamma x - g^2 s) + g(t_i) sqrt(h) z``, ``h = t_i - t_{i+1}``, ``z`` from
    ``noise(x, generator)`` (default ``torch.randn``; pass ``GaussianField.noise`` at ``r = 0`` for
    zero-mode-free noise).  Noise is added at every step, including the last.  Returns ``x_0``
    (state at ``t_min``), optionally with the ``(N + 1, *x_T.shape)`` trajectory or the states at the
    step indices ``snapshots`` (as in :func:`probability_flow`).  ``fused=True`` as in
    :func:`probability_flow`; the N noise draws are made first (``N x`` the memory of ``x_T``), in the
    eager order, so ``noise`` must depend on its ``x`` only through shape, dtype and device.
    """
    check_start(x_T)
    draw = noise_source(noise, generator)
    fused = check_fused(fused, x_T.device, graph=True)
    times = grid_floats(resolve_grid(process, steps, grid, t_min))
    score_checked = _checked_score(score, "reverse_sde")

    def advance(i: int, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z_i = draw(x) if z is None else z[i]
        return euler_maruyama_step(process, score_checked, x, times[i], times[i + 1] - times[i], z_i)

    keep = _kept_steps(len(times) - 1, return_trajectory, snapshots)
    guard = grid_guard(times, x_T.device, "reverse_sde")
    key = ("reverse_sde", Identity(score), process, tuple(times), keep and tuple(keep))
    if not fused:
        return _run(advance, x_T, (), guard, keep, key, fused)
    z = torch.stack([draw(x_T) for _ in range(len(times) - 1)])
    return _run(advance, x_T, (z,), guard, keep, key, fused)


# -- start distributions ----------------------------------------------------------------------
def _shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"shape must be ints >= 1, got shape={shape!r}")
    return tuple(int(s) for s in shape)


def pure_noise_start(
    shape,
    process: Process,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    noise: Noise | None = None,
) -> torch.Tensor:
    """``x_T ~ N(0, Xi(T))`` per degree of freedom, the usual "pure noise" start (THEORY 2).

    ``noise(x, generator)`` replaces ``torch.randn`` (e.g. ``GaussianField.noise`` at ``r = 0``).
    """
    shape = _shape(shape)
    if generator is not None and device is None:
        device = generator.device
    scale = math.sqrt(float(process.Xi(float(process.T))))
    if noise is None:
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    else:
        z = noise(torch.empty(shape, dtype=dtype, device=device), generator)
    return scale * z


def standard_normal_start(
    shape,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``x_T ~ N(0, 1)``: the VP / OU convention (``Xi(T) -> 1``)."""
    shape = _shape(shape)
    if generator is not None and device is None:
        device = generator.device
    return torch.randn(shape, generator=generator, dtype=dtype, device=device)


# -- adaptive reference -----------------------------------------------------------------------
def reference_ode(
    score: Score, process: Process, x_T: torch.Tensor, t_min: float = 0.0, rtol: float = 1e-10
) -> torch.Tensor:
    """PF-ODE from ``T`` to ``t_min`` with scipy's adaptive DOP853 (float64, CPU): a cross-check for
    small problems (``x_T.numel()`` up to a few thousand).  ``atol = rtol * max(|x_T|, 1)``."""
    from scipy.integrate import solve_ivp

    check_start(x_T)
    if not (isinstance(rtol, float) and 1e-14 <= rtol < 1.0):
        raise ValueError(f"rtol must be a float in [1e-14, 1), got rtol={rtol!r}")
    t_min = float(t_min)
    if not (0.0 <= t_min < process.T):
        raise ValueError(f"t_min must lie in [0, T) = [0, {process.T}), got t_min={t_min}")
    shape = x_T.shape
    y0 = x_T.detach().to(dtype=torch.float64, device="cpu").reshape(-1).numpy()

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape)
        return ode_drift(process, score, x, float(t)).reshape(-1).numpy()

    atol = rtol * max(float(np.abs(y0).max()), 1.0)
    sol = solve_ivp(rhs, (float(process.T), t_min), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference_ode: solve_ivp failed: {sol.message}")
    out = torch.from_numpy(sol.y[:, -1].copy()).reshape(shape)
    return out.to(dtype=x_T.dtype, device=x_T.device)
