"""Our own reference samplers (THEORY 1, 2): EDM Euler / Heun in the denoiser convention, Euler / Heun on the
rectified-flow ODE in the velocity convention, and :func:`reference_samplers`, the runners ``critdiff
validate`` checks first (PF-ODE euler/heun/rk4, Euler–Maruyama, EDM Euler/Heun)."""

from __future__ import annotations

import torch

from ..samplers import probability_flow, reverse_sde
from .registry import make_runner
from .runners.base import Runner

__all__ = ["edm_euler", "edm_heun", "flow_euler", "flow_heun", "reference_samplers"]


def edm_euler(model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """k-diffusion ``sample_euler``: ``d = (x - D(x, s_i)) / s_i``, ``x += d (s_{i+1} - s_i)`` (order 1)."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (x - model(x, s)) / s * (s_next - s)
    return x


def edm_heun(model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """EDM Algorithm 1 (Heun, order 2); the last step to ``sigma = 0`` is an Euler step."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - model(x, s)) / s
        x_next = x + d * (s_next - s)
        if s_next > 0:
            d2 = (x_next - model(x_next, s_next)) / s_next
            x_next = x + 0.5 * (d + d2) * (s_next - s)
        x = x_next
    return x


def flow_euler(velocity, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler on the flow ODE ``dx/dt = v``: ``x += (t_{i+1} - t_i) v(x, t_i)`` (order 1)."""
    for i in range(len(sigmas) - 1):
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (t_next - t) * velocity(x, t)
    return x


def flow_heun(velocity, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Heun (trapezoidal predictor-corrector) on the flow ODE, every step including the last (order 2):
    ``v`` is finite at ``t = 0`` (``v(x, 0) = -x``), unlike the EDM denoiser form at ``sigma = 0``."""
    for i in range(len(sigmas) - 1):
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        d = velocity(x, t)
        x_pred = x + (t_next - t) * d
        x = x + 0.5 * (t_next - t) * (d + velocity(x_pred, t_next))
    return x


def reference_samplers() -> list[Runner]:
    """Our own samplers wrapped as runners: PF-ODE euler/heun/rk4, Euler–Maruyama SDE, EDM Euler/Heun."""
    out = []
    for method, p in (("euler", 1.0), ("heun", 2.0), ("rk4", 4.0)):
        out.append(make_runner(probability_flow, "score", sampler_kwargs={"method": method}, order=p,
                               name=f"probability_flow[{method}]"))
    out.append(make_runner(reverse_sde, "score", order=1.0, name="reverse_sde[euler-maruyama]"))
    out.append(make_runner(edm_euler, "denoiser", order=1.0, name="edm_euler"))
    out.append(make_runner(edm_heun, "denoiser", order=2.0, name="edm_heun"))
    return out
