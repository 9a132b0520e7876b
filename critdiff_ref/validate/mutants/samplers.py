"""Planted-bug samplers and their correct references (THEORY 1, 2): each mutant ``mut_*`` is a correct
reference ``ref_*`` below (or a library sampler) with exactly one line changed (marked ``# BUG``), a bug of
a kind real diffusion libraries have shipped.  Registered, with their adapters and options, in
:mod:`.catalogue`; diffusers-like schedulers with planted bugs: :mod:`.schedulers`.

Conventions (those of :mod:`critdiff_ref.validate.runners`):

- ``"score"``: ``sampler(score, process, x_T, steps, **kw) -> x_0`` integrating ``T -> t_min`` on the
  uniform grid ``t_i = T - i (T - t_min)/N`` with the PF-ODE ``dx/dt = -gamma x - (g^2/2) s`` or the
  reverse SDE ``dx = [-gamma x - g^2 s] dt + g dW_bar`` (THEORY 1).
- ``"denoiser"``: ``sampler(model, x, sigmas) -> x_0`` with ``model(x, sigma) = x + sigma^2 s``
  (k-diffusion / EDM, VE in sigma).
- ``"velocity"``: ``sampler(velocity, x_1, sigmas) -> x_0`` with the rectified-flow velocity and uniform
  ``sigmas`` from 1 to 0 (flow matching).
"""

from __future__ import annotations

import math

import torch

from ...processes import Process
from ..references import edm_heun
from ..runners.brownian import BrownianPathNoiseSampler
from ..runners.velocity import shift_map

__all__ = [
    "ref_pf_euler",
    "ref_pf_heun",
    "ref_pf_rk4",
    "ref_em",
    "ref_ddim",
    "ref_edm_heun",
    "ref_dpmpp_sde",
    "ref_flow_euler_sd3",
    "mut_heun_previous_time",
    "mut_heun_dropped_stage",
    "mut_heun_no_final_step",
    "mut_euler_flow_sign",
    "mut_euler_vp_drift_factor",
    "mut_em_g2_factor",
    "mut_em_noise_scale",
    "mut_ddim_abar_swapped",
    "mut_rk4_float32_time",
    "mut_edm_heun_wrong_time",
    "mut_dpmpp_sde_increment_wrong_interval",
    "mut_flow_euler_shift_twice",
]


def _grid(process: Process, steps: int, t_min: float) -> list[float]:
    """Uniform decreasing float64 grid ``T = t_0 > ... > t_N = t_min`` (``samplers.time_grid``'s "uniform")."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got steps={steps!r}")
    T = float(process.T)
    if not (0.0 <= float(t_min) < T):
        raise ValueError(f"t_min must lie in [0, T) = [0, {T}), got t_min={t_min}")
    return [T + i * (float(t_min) - T) / steps for i in range(steps)] + [float(t_min)]


def _ode(process: Process, score, x: torch.Tensor, t: float) -> torch.Tensor:
    """PF-ODE velocity ``-gamma x - (g^2/2) s_t(x)`` (THEORY 1)."""
    return -float(process.gamma(t)) * x - 0.5 * float(process.g(t)) ** 2 * score(x, t)


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


# -- correct references (score convention) ---------------------------------------------------------
def ref_pf_euler(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """PF-ODE, Euler (order 1)."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        x = x + (t[i + 1] - t[i]) * _ode(process, score, x, t[i])
    return x


def ref_pf_heun(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """PF-ODE, Heun (order 2): ``k1`` at ``t_i``, ``k2`` at ``t_{i+1}`` from the Euler predictor."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        dt = t[i + 1] - t[i]
        k1 = _ode(process, score, x, t[i])
        k2 = _ode(process, score, x + dt * k1, t[i + 1])
        x = x + 0.5 * dt * (k1 + k2)
    return x


def ref_pf_rk4(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """PF-ODE, classical RK4 (order 4) with the time advanced step by step in float64."""
    T, h = float(process.T), (float(process.T) - float(t_min)) / steps
    _grid(process, steps, t_min)  # validates steps and t_min
    x, t = x_T, T
    for _ in range(steps):
        k1 = _ode(process, score, x, t)
        k2 = _ode(process, score, x - 0.5 * h * k1, t - 0.5 * h)
        k3 = _ode(process, score, x - 0.5 * h * k2, t - 0.5 * h)
        k4 = _ode(process, score, x - h * k3, max(t - h, float(t_min)))
        x = x - (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t = max(t - h, float(t_min))
    return x


def ref_em(score, process: Process, x_T: torch.Tensor, steps: int, generator=None, t_min: float = 0.0) -> torch.Tensor:
    """Reverse SDE, Euler–Maruyama (weak order 1): ``x <- x - h (-gamma x - g^2 s) + g sqrt(h) z``."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        h, g = t[i] - t[i + 1], float(process.g(t[i]))
        drift = -float(process.gamma(t[i])) * x - g * g * score(x, t[i])
        x = x - h * drift + g * math.sqrt(h) * _noise(x, generator)
    return x


def ref_ddim(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """DDIM (eta = 0, order 1) for a VP process, ``abar = a^2``, ``1 - abar = Xi``:
    ``eps = -sqrt(1 - abar) s``, ``x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)``, ``x <- sqrt(abar') x0 + sqrt(1 - abar') eps``."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        abar, abar_next = float(process.a(t[i])) ** 2, float(process.a(t[i + 1])) ** 2
        sqrt_abar, sqrt_abar_next = math.sqrt(abar), math.sqrt(abar_next)
        eps = -math.sqrt(1.0 - abar) * score(x, t[i])
        x0 = (x - math.sqrt(1.0 - abar) * eps) / sqrt_abar
        x = sqrt_abar_next * x0 + math.sqrt(1.0 - abar_next) * eps
    return x


# -- correct reference (denoiser convention) -------------------------------------------------------
# EDM Heun (Karras et al. 2022, Alg. 1; order 2), Euler for the last step to sigma = 0: the adapter's own.
ref_edm_heun = edm_heun


def _ancestral_split(sigma: float, sigma_to: float) -> tuple[float, float]:
    """Ancestral step ``sigma -> sigma_to`` (eta = 1): ``sigma_up^2 = sigma_to^2 (sigma^2 - sigma_to^2) / sigma^2``,
    ``sigma_down^2 = sigma_to^2 - sigma_up^2``; returns ``(sigma_down, sigma_up)``."""
    up = sigma_to * math.sqrt(sigma * sigma - sigma_to * sigma_to) / sigma
    return math.sqrt(max(sigma_to * sigma_to - up * up, 0.0)), up


def ref_dpmpp_sde(model, x: torch.Tensor, sigmas: torch.Tensor, noise_sampler=None, generator=None) -> torch.Tensor:
    """Stochastic DPM-Solver++ (k-diffusion's ``sample_dpmpp_sde``, eta = 1, r = 1/2; weak order 2): per step a
    data-prediction exponential step to ``sigma_down(sigma_i -> sigma_mid)`` (``sigma_mid`` the log-sigma
    midpoint) plus ``sigma_up`` times the Brownian increment over ``[sigma_i, sigma_mid]``, then from ``x`` with
    the midpoint denoiser to ``sigma_down(sigma_i -> sigma_{i+1})`` plus the increment over ``[sigma_i, sigma_{i+1}]``
    of the same path (the two overlap: their correlation is part of the scheme); Euler to ``sigma = 0``."""
    noise_sampler = BrownianPathNoiseSampler(x, generator) if noise_sampler is None else noise_sampler
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = model(x, s)
        if s_next == 0:
            x = d
            continue
        s_mid = math.sqrt(s * s_next)
        down, up = _ancestral_split(s, s_mid)
        x_mid = (down / s) * x + (1.0 - down / s) * d + up * noise_sampler(s, s_mid)
        d_mid = model(x_mid, s_mid)
        down, up = _ancestral_split(s, s_next)
        x = (down / s) * x + (1.0 - down / s) * d_mid + up * noise_sampler(s, s_next)
    return x


# -- correct reference (velocity convention, flow matching) ----------------------------------------
def ref_flow_euler_sd3(velocity, x: torch.Tensor, sigmas: torch.Tensor, shift: float = 3.0) -> torch.Tensor:
    """Euler on the rectified-flow ODE on the SD3 grid: the uniform sigmas shifted once,
    ``t = shift s / (1 + (shift - 1) s)``, ``x += (t_{i+1} - t_i) v(x, t_i)`` (THEORY 1)."""
    t = [shift_map(float(s), shift) for s in sigmas]
    for i in range(len(t) - 1):
        x = x + (t[i + 1] - t[i]) * velocity(x, t[i])
    return x


# -- mutants ---------------------------------------------------------------------------------------
def mut_heun_previous_time(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_heun with the model told the previous timestep (off-by-one time index)."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        dt = t[i + 1] - t[i]
        k1 = _ode(process, score, x, t[max(i - 1, 0)])  # BUG: t[i - 1] (previous timestep) instead of t[i]
        k2 = _ode(process, score, x + dt * k1, t[i + 1])
        x = x + 0.5 * dt * (k1 + k2)
    return x


def mut_heun_dropped_stage(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_heun with the corrector dropped: an Euler step sold as Heun."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        dt = t[i + 1] - t[i]
        k1 = _ode(process, score, x, t[i])
        k2 = k1  # BUG: second stage dropped (should be _ode(process, score, x + dt * k1, t[i + 1]))
        x = x + 0.5 * dt * (k1 + k2)
    return x


def mut_heun_no_final_step(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_heun that stops one step early: no denoise from ``t_{N-1}`` to ``t_min``."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps - 1):  # BUG: range(steps - 1), the last step to t_min is never taken
        dt = t[i + 1] - t[i]
        k1 = _ode(process, score, x, t[i])
        k2 = _ode(process, score, x + dt * k1, t[i + 1])
        x = x + 0.5 * dt * (k1 + k2)
    return x


def mut_euler_flow_sign(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_euler with the sign of the score term of the probability-flow drift flipped."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        g2 = float(process.g(t[i])) ** 2
        x = x + (t[i + 1] - t[i]) * (-float(process.gamma(t[i])) * x + 0.5 * g2 * score(x, t[i]))  # BUG: + (g^2/2) s
    return x


def mut_euler_vp_drift_factor(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_euler with the VP drift -beta x / 2 written -beta x (gamma = beta/2 doubled)."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        g2 = float(process.g(t[i])) ** 2
        x = x + (t[i + 1] - t[i]) * (-2.0 * float(process.gamma(t[i])) * x - 0.5 * g2 * score(x, t[i]))  # BUG: 2 gamma
    return x


def mut_em_g2_factor(score, process: Process, x_T: torch.Tensor, steps: int, generator=None, t_min: float = 0.0) -> torch.Tensor:
    """ref_em with the reverse-SDE score term g^2 s halved (the PF-ODE's g^2/2 in the SDE)."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        h, g = t[i] - t[i + 1], float(process.g(t[i]))
        drift = -float(process.gamma(t[i])) * x - 0.5 * g * g * score(x, t[i])  # BUG: g^2/2 instead of g^2
        x = x - h * drift + g * math.sqrt(h) * _noise(x, generator)
    return x


def mut_em_noise_scale(score, process: Process, x_T: torch.Tensor, steps: int, generator=None, t_min: float = 0.0) -> torch.Tensor:
    """ref_em with the noise scaled by g instead of g sqrt(h)."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        h, g = t[i] - t[i + 1], float(process.g(t[i]))
        drift = -float(process.gamma(t[i])) * x - g * g * score(x, t[i])
        x = x - h * drift + g * _noise(x, generator)  # BUG: g z instead of g sqrt(h) z
    return x


def mut_ddim_abar_swapped(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_ddim with the schedule's abar and sqrt(abar) swapped."""
    t = _grid(process, steps, t_min)
    x = x_T
    for i in range(steps):
        abar, abar_next = float(process.a(t[i])) ** 2, float(process.a(t[i + 1])) ** 2
        sqrt_abar, sqrt_abar_next = abar, abar_next  # BUG: abar where sqrt(abar) belongs
        eps = -math.sqrt(1.0 - abar) * score(x, t[i])
        x0 = (x - math.sqrt(1.0 - abar) * eps) / sqrt_abar
        x = sqrt_abar_next * x0 + math.sqrt(1.0 - abar_next) * eps
    return x


def mut_rk4_float32_time(score, process: Process, x_T: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """ref_pf_rk4 with the time accumulated in float32 (``t -= h`` rounds every step; exact, hence
    harmless, when ``h`` is a short binary fraction such as ``T / 2^k``)."""
    T, h = float(process.T), (float(process.T) - float(t_min)) / steps
    _grid(process, steps, t_min)
    x, t = x_T, T
    for _ in range(steps):
        k1 = _ode(process, score, x, t)
        k2 = _ode(process, score, x - 0.5 * h * k1, t - 0.5 * h)
        k3 = _ode(process, score, x - 0.5 * h * k2, t - 0.5 * h)
        k4 = _ode(process, score, x - h * k3, max(t - h, float(t_min)))
        x = x - (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t = max(float(torch.tensor(t, dtype=torch.float32) - torch.tensor(h, dtype=torch.float32)), float(t_min))  # BUG
    return x


def mut_edm_heun_wrong_time(model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """ref_edm_heun with the corrector's denoiser evaluated at the start of the step."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - model(x, s)) / s
        x_next = x + d * (s_next - s)
        if s_next > 0:
            d2 = (x_next - model(x_next, s)) / s_next  # BUG: model(x_next, s) instead of model(x_next, s_next)
            x_next = x + 0.5 * (d + d2) * (s_next - s)
        x = x_next
    return x


def mut_dpmpp_sde_increment_wrong_interval(model, x: torch.Tensor, sigmas: torch.Tensor, noise_sampler=None,
                                           generator=None) -> torch.Tensor:
    """ref_dpmpp_sde with the second stage's Brownian increment taken over ``[sigma_mid, sigma_{i+1}]``."""
    noise_sampler = BrownianPathNoiseSampler(x, generator) if noise_sampler is None else noise_sampler
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = model(x, s)
        if s_next == 0:
            x = d
            continue
        s_mid = math.sqrt(s * s_next)
        down, up = _ancestral_split(s, s_mid)
        x_mid = (down / s) * x + (1.0 - down / s) * d + up * noise_sampler(s, s_mid)
        d_mid = model(x_mid, s_mid)
        down, up = _ancestral_split(s, s_next)
        x = (down / s) * x + (1.0 - down / s) * d_mid + up * noise_sampler(s_mid, s_next)  # BUG: [s_mid, s_next], not [s, s_next]
    return x


def mut_flow_euler_shift_twice(velocity, x: torch.Tensor, sigmas: torch.Tensor, shift: float = 3.0) -> torch.Tensor:
    """ref_flow_euler_sd3 with the model told a twice-shifted time (a pipeline handing already shifted
    timesteps to a scheduler that shifts them again): the state is at t_i, the velocity is read at s(t_i)."""
    t = [shift_map(float(s), shift) for s in sigmas]
    for i in range(len(t) - 1):
        x = x + (t[i + 1] - t[i]) * velocity(x, shift_map(t[i], shift))  # BUG: shift applied twice to the model's time
    return x
