"""The ``velocity`` adapter: flow matching on the rectified flow ``x_t = (1 - t) x_0 + t z`` (THEORY 1, 2).

``sampler(velocity, x_1, sigmas, **kw) -> x_0`` with ``velocity(x, t)`` the exact ``E[z - x_0 | x_t]``
(:func:`critdiff_ref.scores.exact_velocity`), ``x_1 = z`` (exact: ``C_1 = 1``) and ``sigmas`` decreasing
from 1 to 0 (:func:`flow_sigmas`: uniform, optionally shifted).  The exact flow from ``t1`` to ``t2``
multiplies a mode by ``sqrt(C_t2 / C_t1)``, so the floor is ``ode_variance_limit(RectifiedFlow(T), v_T, t_min)``:
zero when the run starts at ``t = 1`` and ends at 0.  diffusers' FlowMatch* schedulers: :mod:`.diffusers.flow`.
"""

from __future__ import annotations

import math

import torch

from ...processes import RectifiedFlow
from ...scores import exact_velocity
from .base import Runner, Schedule, accepts, callable_name

__all__ = ["shift_map", "flow_sigmas", "flow_schedule", "velocity_runner"]


def shift_map(t, shift: float):
    """SD3 time shift ``t -> shift t / (1 + (shift - 1) t)`` (THEORY 1): fixes 0 and 1, grid only."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def flow_sigmas(n: int, shift: float = 1.0) -> torch.Tensor:
    """``n + 1`` decreasing flow times from 1 to 0: uniform, then :func:`shift_map` (float64)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got n={n!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got shift={shift!r}")
    return shift_map(torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64), float(shift))


def flow_schedule(T: float, v_T: float, t_min: float) -> Schedule:
    """The exact flow a rectified-flow run discretises: start ``N(0, v_T)`` at ``T``, end at ``t_min``."""
    # At T = 1 the start is exact (C_1 = 1), so the ODE and SDE end laws coincide
    # (delta_T = 0) and the ODE limit is used for every flow sampler (Gamma(1) is infinite).
    return Schedule(RectifiedFlow(T), v_T, t_min, sde=False)


def velocity_runner(sampler, *, shift: float = 1.0, sampler_kwargs: dict | None = None,
                    order: float | None = None, name: str | None = None) -> Runner:
    """Wrap ``sampler(velocity, x_1, sigmas, **kw) -> x_0`` (module docstring); ``sigmas = flow_sigmas(N, shift)``.

    A sampler taking ``noise_sampler=`` (k-diffusion style, ``noise_sampler(sigma, sigma_next)``) is noise-probed.
    """
    if not callable(sampler):
        raise TypeError(f"sampler must be callable for the 'velocity' adapter, got {type(sampler).__name__}")
    flow_sigmas(1, shift)  # validates shift
    process = RectifiedFlow(1.0)
    kw0 = dict(sampler_kwargs or {})
    takes_gen = accepts(sampler, "generator")
    models: dict = {}

    def run(target, steps, z, generator, **extra):
        key = id(target)
        if key not in models:
            models[key] = (target, exact_velocity(target, process))
        sigmas = flow_sigmas(steps, shift).to(dtype=z.dtype, device=z.device)
        kw = {**kw0, **extra}
        if takes_gen:
            kw.setdefault("generator", generator)
        return sampler(models[key][1], z, sigmas, **kw)

    def run_noise(target, steps, z, draw):
        return run(target, steps, z, None, noise_sampler=lambda sigma, sigma_next: draw(tuple(z.shape), z.dtype, z.device))

    def schedule(target, steps):
        return flow_schedule(1.0, 1.0, 0.0)

    return Runner(name or callable_name(sampler), "velocity", run, schedule, order, info={"shift": shift},
                  run_noise=run_noise if accepts(sampler, "noise_sampler") else None)
