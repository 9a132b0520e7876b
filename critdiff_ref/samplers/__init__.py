"""Samplers (THEORY 1, 2, 6): time grids, PF-ODE / reverse-SDE steppers, exact Fourier samplers and
exact per-mode gains of the discretised samplers on Gaussian fields."""

from .exact import (
    apply_gain,
    exact_flow,
    exact_start,
    fourier_sample,
    measured_order,
    ode_gain,
    ode_log_gain,
    ode_step_factors,
    ode_variance_limit,
    sde_gain,
    sde_variance,
    sde_variance_limit,
    score_kernel_fn,
    stiffness,
)
from . import dmmc, likelihood, mcmc
from .dmmc import DMMCResult, dm_mcmc
from .likelihood import exact_prior, isotropic_prior, pf_log_likelihood
from .grids import GRID_KINDS, resolve_grid, time_grid
from .mcmc import ChainResult, hmc, langevin, leapfrog, metropolis
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
    "mcmc",
    "dmmc",
    "likelihood",
    "hmc",
    "metropolis",
    "langevin",
    "leapfrog",
    "ChainResult",
    "pf_log_likelihood",
    "dm_mcmc",
    "DMMCResult",
    "exact_prior",
    "isotropic_prior",
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
