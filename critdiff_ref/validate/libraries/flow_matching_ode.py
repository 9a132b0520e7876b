"""flow_matching's ``ODESolver`` on its affine probability paths, run through the ``velocity`` adapter (THEORY 1, 2).

flow_matching (facebookresearch) writes a path as ``x_tau = alpha_tau x_data + sigma_tau z`` with ``tau = 0`` the
noise and ``tau = 1`` the data, the reverse of the rectified flow's ``t`` (``x_t = (1 - t) x_0 + t z``, ``t = 1``
noise).  Every such path is a rescaled rectified flow: with ``s = alpha + sigma`` and ``r = sigma / s``,
``x_tau = s(tau) y(r(tau))`` where ``y`` follows the rectified flow at time ``r``, so its exact velocity is

    ``u(x, tau) = (s'/s) x + s r' v(x / s, r)``,   ``v`` the exact rectified-flow velocity (``scores.exact_velocity``),

exact for every target the velocity adapter knows (Gaussian field, mixtures, phi^4).  ``sigmas`` from the adapter
(1 -> 0, ``N + 1`` values) fix the number of steps; fixed-step methods integrate on the uniform ``tau`` grid
``linspace(0, 1, N + 1)`` (what the library's users pass; for CondOT it is the adapter's grid), adaptive methods on
``[0, 1]`` with ``rtol`` / ``atol``.  Paths whose ends are exact (``alpha_0 = 0``, ``sigma_0 = 1``, ``alpha_1 = 1``,
``sigma_1 = 0``: CondOT, polynomial, cosine, linear-VP) start from ``x = z`` exactly, so the schedule floor is 0
and the whole error is the solver's.  The VP path has ``alpha_0 = e^(-5.025) != 0``: its start ``N(0, 1)`` is off by
``alpha_0^2 (c0 - 1)`` per mode, a floor the velocity adapter does not subtract (``PATH_SCHEDULERS`` notes it).
"""

from __future__ import annotations

from typing import Callable

import torch

from .odeint import ADAPTIVE_ERROR_ORDERS, FIXED_STEP_ORDERS

__all__ = ["PATH_SCHEDULERS", "path_scheduler", "path_velocity", "flow_matching_sample"]

# name -> (constructor arguments, exact ends?)
PATH_SCHEDULERS = {
    "condot": ("CondOTScheduler", {}, True),
    "polynomial": ("PolynomialConvexScheduler", {"n": 2.0}, True),
    "cosine": ("CosineScheduler", {}, True),
    "linear_vp": ("LinearVPScheduler", {}, True),  # exact ends, but sigma'(1) = -inf: no method that evaluates tau = 1
    "vp": ("VPScheduler", {}, False),
}


def path_scheduler(name: str):
    """The flow_matching scheduler object for a key of :data:`PATH_SCHEDULERS`."""
    if name not in PATH_SCHEDULERS:
        raise ValueError(f"scheduler must be one of {tuple(PATH_SCHEDULERS)}, got scheduler={name!r}")
    from flow_matching.path import scheduler as fm_scheduler

    cls_name, kwargs, _ = PATH_SCHEDULERS[name]
    return getattr(fm_scheduler, cls_name)(**kwargs)


def path_velocity(velocity: Callable, scheduler, *, tau_of_t: Callable | None = None) -> Callable:
    """flow_matching's ``velocity_model(x, t)`` for the path of ``scheduler`` from the rectified velocity ``v(x, t)``
    (module docstring); ``tau_of_t`` is for planted bugs only (the time handed to ``v``; default ``r(tau)``)."""

    def model(x: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        tau = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(())
        out = scheduler(tau)
        s = out.alpha_t + out.sigma_t
        ds = out.d_alpha_t + out.d_sigma_t
        r = out.sigma_t / s
        dr = (out.d_sigma_t * s - out.sigma_t * ds) / (s * s)
        r_v = float(r) if tau_of_t is None else float(tau_of_t(tau))
        return (ds / s) * x + s * dr * velocity(x / s, min(max(r_v, 0.0), 1.0))

    return model


def flow_matching_sample(
    velocity: Callable,
    x_1: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    scheduler: str = "condot",
    method: str = "euler",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    model: Callable | None = None,
) -> torch.Tensor:
    """``ODESolver(path_velocity(...)).sample`` from ``x_1 = z`` (``tau = 0``) to the data (``tau = 1``).

    The velocity adapter's signature ``sampler(velocity, x_1, sigmas, **kw)``; ``len(sigmas) - 1`` uniform steps in
    ``tau`` for fixed-step methods (``"euler"``, ``"midpoint"``, ``"heun2"``, ``"heun3"``, ``"rk4"``), adaptive ones
    (``"dopri5"``, ...) on ``[0, 1]``.  ``model``: a prepared ``velocity_model`` (planted bugs).
    """
    if method not in FIXED_STEP_ORDERS and method not in ADAPTIVE_ERROR_ORDERS:
        raise ValueError(f"method must be one of {tuple(FIXED_STEP_ORDERS) + tuple(ADAPTIVE_ERROR_ORDERS)}, "
                         f"got method={method!r}")
    n = len(sigmas) - 1
    if n < 1:
        raise ValueError(f"sigmas must hold >= 2 values, got {len(sigmas)}")
    if model is None:
        model = path_velocity(velocity, path_scheduler(scheduler))
    from flow_matching.solver import ODESolver  # optional: the `flow-matching` extra

    solver = ODESolver(velocity_model=model)
    if method in FIXED_STEP_ORDERS:
        grid = torch.linspace(0.0, 1.0, n + 1, dtype=x_1.dtype, device=x_1.device)
        return solver.sample(x_init=x_1, step_size=None, method=method, time_grid=grid)
    grid = torch.tensor([0.0, 1.0], dtype=x_1.dtype, device=x_1.device)
    return solver.sample(x_init=x_1, step_size=None, method=method, rtol=rtol, atol=atol, time_grid=grid)
