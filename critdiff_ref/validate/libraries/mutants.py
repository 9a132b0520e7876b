"""Planted bugs in samplers built on torchdiffeq, torchsde and flow_matching: each is one line (marked ``# BUG``)
away from the correct sampler of its module, and validate() (or the adaptive checks) must fail it (THEORY 1).
Their catalogue entries: :data:`critdiff_ref.validate.mutants.catalogue.LIBRARY_MUTANTS`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...processes import Process
from .flow_matching_ode import flow_matching_sample, path_scheduler, path_velocity
from .odeint import odeint_probability_flow, pf_ode_drift
from .sdeint import SDE_METHODS, DiagonalReverseSDE, ReverseSDE, sdeint_reverse_sde

__all__ = [
    "odeint_drift_sign_flipped",
    "sdeint_diffusion_squared",
    "sdeint_score_at_reverse_time",
    "flow_matching_time_swapped",
    "odeint_fixed_atol",
]


def odeint_drift_sign_flipped(score: Callable, process: Process, x_T: torch.Tensor, steps: int, method: str = "rk4",
                              **kw) -> torch.Tensor:
    """torchdiffeq on the PF-ODE with the drift negated "because we integrate backwards" (torchdiffeq already
    integrates a decreasing time tensor backwards): the forward flow, run from ``T`` to 0."""
    import torchdiffeq

    from ...samplers import resolve_grid

    times = resolve_grid(process, steps, "uniform", 0.0).to(dtype=x_T.dtype)
    drift = pf_ode_drift(score, process, time_sign=-1.0)  # BUG: torchdiffeq handles the direction of time itself
    return torchdiffeq.odeint(drift, x_T, times, method=method)[-1]


def sdeint_diffusion_squared(score: Callable, process: Process, x_T: torch.Tensor, steps: int, method: str = "euler",
                             **kw) -> torch.Tensor:
    """torchsde's reverse SDE with ``g^2`` as the diffusion (the variance rate handed over as the diffusion)."""
    sde_type, noise_type, _ = SDE_METHODS[method]
    cls = DiagonalReverseSDE if noise_type == "diagonal" else ReverseSDE
    sde = cls(score, process, x_T.shape[1:], sde_type, noise_type, diffusion_power=2.0)  # BUG: g^2, not g
    return sdeint_reverse_sde(score, process, x_T, steps, method, sde=sde, **kw)


def sdeint_score_at_reverse_time(score: Callable, process: Process, x_T: torch.Tensor, steps: int,
                                 method: str = "euler", **kw) -> torch.Tensor:
    """torchsde's reverse SDE with the score evaluated at torchsde's time ``u`` instead of ``T - u``."""
    sde_type, noise_type, _ = SDE_METHODS[method]
    cls = DiagonalReverseSDE if noise_type == "diagonal" else ReverseSDE
    sde = cls(score, process, x_T.shape[1:], sde_type, noise_type, time_sign=-1.0)  # BUG: t = u, not T - u
    return sdeint_reverse_sde(score, process, x_T, steps, method, sde=sde, **kw)


def flow_matching_time_swapped(velocity: Callable, x_1: torch.Tensor, sigmas: torch.Tensor, method: str = "midpoint",
                               **kw) -> torch.Tensor:
    """flow_matching's ODESolver on CondOT with the rectified velocity queried at ``tau`` (flow_matching's time,
    0 = noise) instead of ``t = 1 - tau`` (0 = data): the two conventions' t = 0 and t = 1 swapped."""
    model = path_velocity(velocity, path_scheduler("condot"), tau_of_t=lambda tau: tau)  # BUG: t = tau, not 1 - tau
    return flow_matching_sample(velocity, x_1, sigmas, method=method, model=model)


def odeint_fixed_atol(score: Callable, process: Process, x_T: torch.Tensor, steps: int | None = None,
                      method: str = "dopri5", *, rtol: float = 1e-6, atol: float = 1e-6, nfe: list | None = None,
                      **kw) -> torch.Tensor:
    """An adaptive torchdiffeq PF-ODE sampler that forwards ``rtol`` but keeps ``atol = 1e-3``: on a field whose
    values are O(1) the requested tolerance is never delivered below 1e-3."""
    return odeint_probability_flow(score, process, x_T, steps, method, rtol=rtol, atol=1e-3, nfe=nfe,  # BUG: atol
                                   **kw)
