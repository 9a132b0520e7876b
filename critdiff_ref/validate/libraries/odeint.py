"""torchdiffeq ``odeint`` as a probability-flow ODE sampler (THEORY 1, 2).

The PF-ODE ``dx/dt = -gamma(t) x - (g(t)^2 / 2) s_t(x)`` integrated by torchdiffeq from ``T`` down to
``t_min`` (torchdiffeq accepts a decreasing time tensor).  Fixed-step methods run on the
``steps + 1`` times of :func:`critdiff_ref.samplers.time_grid` (torchdiffeq steps exactly on the given
times when no ``step_size`` is set); adaptive methods get the two end times and ``rtol`` / ``atol``,
and ``steps`` is ignored by them.  ``nfe=`` (a list) receives the number of drift evaluations.

The signature is the ``score`` adapter's: ``odeint_probability_flow(score, process, x_T, steps=N, **kw)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...processes import Process
from ...samplers import resolve_grid

__all__ = ["FIXED_STEP_ORDERS", "ADAPTIVE_ERROR_ORDERS", "odeint_probability_flow", "pf_ode_drift"]

# documented convergence order of torchdiffeq's fixed-grid methods (torchdiffeq README / tableaus)
FIXED_STEP_ORDERS = {"euler": 1.0, "midpoint": 2.0, "heun2": 2.0, "heun3": 3.0, "rk4": 4.0}
# adaptive methods: (order of the propagated solution, order of the embedded error estimate).  The local
# error estimate is O(h^(q + 1)), so error-per-step control gives h ~ tol^(1/(q + 1)) and NFE ~ tol^(-1/(q + 1)).
ADAPTIVE_ERROR_ORDERS = {
    "dopri5": (5, 4),
    "bosh3": (3, 2),
    "adaptive_heun": (2, 1),
    "fehlberg2": (2, 1),
    "dopri8": (8, 7),
}


def pf_ode_drift(score: Callable, process: Process, *, counter: list | None = None,
                 time_sign: float = 1.0) -> Callable:
    """The PF-ODE right-hand side ``f(t, x) = -gamma x - (g^2 / 2) s_t(x)`` in torchdiffeq's ``(t, x)`` order.

    ``counter`` (a one-element list) is incremented at each evaluation; ``time_sign`` is for planted bugs only
    (``-1`` flips the ODE's direction of time).
    """

    def drift(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if counter is not None:
            counter[0] += 1
        tf = float(t)
        gamma, g = float(process.gamma(tf)), float(process.g(tf))
        return time_sign * (-gamma * x - 0.5 * g * g * score(x, tf))

    return drift


def odeint_probability_flow(
    score: Callable,
    process: Process,
    x_T: torch.Tensor,
    steps: int | None = None,
    method: str = "rk4",
    *,
    t_min: float = 0.0,
    grid: str = "uniform",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    nfe: list | None = None,
) -> torch.Tensor:
    """``x_0`` from ``x_T`` by ``torchdiffeq.odeint`` on the PF-ODE (module docstring); shape of ``x_T``.

    ``method``: a key of :data:`FIXED_STEP_ORDERS` (needs ``steps >= 1``) or :data:`ADAPTIVE_ERROR_ORDERS`
    (uses ``rtol``, ``atol`` > 0).  ``nfe``: a list whose one entry is set to the number of drift evaluations.
    """
    if method not in FIXED_STEP_ORDERS and method not in ADAPTIVE_ERROR_ORDERS:
        raise ValueError(f"method must be one of {tuple(FIXED_STEP_ORDERS) + tuple(ADAPTIVE_ERROR_ORDERS)}, "
                         f"got method={method!r}")
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if method in ADAPTIVE_ERROR_ORDERS:
        for name, tol in (("rtol", rtol), ("atol", atol)):
            if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol > 0):
                raise ValueError(f"{name} must be a number > 0 for adaptive method {method!r}, got {name}={tol!r}")
    import torchdiffeq  # optional: the `torchdiffeq` extra

    counter = [0]
    drift = pf_ode_drift(score, process, counter=counter)
    if method in FIXED_STEP_ORDERS:
        times = resolve_grid(process, steps, grid, t_min).to(dtype=x_T.dtype, device=x_T.device)
        out = torchdiffeq.odeint(drift, x_T, times, method=method)[-1]
    else:
        times = torch.tensor([float(process.T), float(t_min)], dtype=x_T.dtype, device=x_T.device)
        # step_t: land a step on t_min.  Without it the last step overshoots t_min and the solution there is
        # interpolated, after evaluating the drift at t < t_min (outside [0, T] when t_min = 0: VE's Xi(t) < 0)
        out = torchdiffeq.odeint(drift, x_T, times, method=method, rtol=rtol, atol=atol,
                                 options={"step_t": times[1:]})[-1]
    if nfe is not None:
        nfe[:] = [counter[0]]
    return out
