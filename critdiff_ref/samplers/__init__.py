"""Samplers (THEORY 1, 2, 6): time grids, PF-ODE / reverse-SDE steppers, exact Fourier samplers and
exact per-mode gains of the discretised samplers on Gaussian fields."""

from .exact import (
    apply_gain,
    exact_flow,
    exact_start,
    fourier_sample,
    ode_gain,
    ode_variance_limit,
    sde_gain,
    sde_variance,
    sde_variance_limit,
)
from .grids import GRID_KINDS, resolve_grid, time_grid
from .reverse import (
    METHODS,
    euler_maruyama_step,
    euler_step,
    heun_step,
    probability_flow,
    pure_noise_start,
    reference_ode,
    reverse_sde,
    rk4_step,
    standard_normal_start,
)

__all__ = [
    "GRID_KINDS",
    "METHODS",
    "time_grid",
    "resolve_grid",
    "euler_step",
    "heun_step",
    "rk4_step",
    "euler_maruyama_step",
    "probability_flow",
    "reverse_sde",
    "pure_noise_start",
    "standard_normal_start",
    "reference_ode",
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
