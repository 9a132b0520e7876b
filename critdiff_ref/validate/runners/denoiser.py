"""The ``denoiser`` adapter (alias ``k-diffusion``): ``sampler(model, x, sigmas, **kw) -> x_0`` (THEORY 1, 2).

``model(x, sigma) = D(x, sigma) = x + sigma^2 score`` is the EDM / k-diffusion denoiser of the VE-in-sigma
marginal ``p_0 * N(0, sigma^2)``; ``x = sigma_max z``; Karras sigmas (rho = 7) with a 0 appended.
Internally the score is ``exact_score(target, Brownian(1, sigma_max^2))`` at time ``t = sigma^2``.
A sampler taking k-diffusion's ``noise_sampler(sigma, sigma_next)`` is noise-probed exactly, with the
queries answered as increments of one Brownian path in sigma (:mod:`.brownian`).
"""

from __future__ import annotations

import math

import torch

from .base import Runner, Schedule, accepts, brownian_in_sigma, callable_name, exact_denoiser
from .brownian import brownian_noise_run

__all__ = ["karras_sigmas", "denoiser_runner"]


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022, eq. 5) noise levels, ``n`` decreasing values then a final 0 (float64)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got n={n!r}")
    if not (0.0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


def denoiser_runner(sampler, *, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                    sampler_kwargs: dict | None = None, order: float | None = None, name: str | None = None) -> Runner:
    """Wrap ``sampler(model, x, sigmas, **kw)`` on the exact denoiser (module docstring)."""
    if not (0.0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    sampler_kwargs = dict(sampler_kwargs or {})
    takes_gen = accepts(sampler, "generator")
    models: dict = {}

    def run(target, steps, z, generator, **extra):
        key = id(target)
        if key not in models:
            models[key] = (target, exact_denoiser(target, sigma_max))
        sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho).to(dtype=z.dtype, device=z.device)
        kw = {**sampler_kwargs, **extra}
        if takes_gen:
            kw.setdefault("generator", generator)
        return sampler(models[key][1], sigma_max * z, sigmas, **kw)

    def run_noise(target, steps, z, draw):
        # k-diffusion's samplers take noise_sampler(sigma, sigma_next) -> unit normal like x: answered as the
        # normalised increment of one Brownian path in sigma (the law of its BrownianTreeNoiseSampler; for
        # disjoint queries, as every ancestral sampler makes, that of independent draws): .brownian
        return brownian_noise_run(lambda z_, ns: run(target, steps, z_, None, noise_sampler=ns), draw, z)

    def schedule(target, steps):
        # VE in sigma: time t = sigma^2 of Brownian(1); start N(0, sigma_max^2) = Xi(T); ends at sigma = 0.
        # An ancestral (stochastic) sampler discretises the reverse SDE.
        return Schedule(brownian_in_sigma(sigma_max), sigma_max**2, 0.0, sde=runner.deterministic is False)

    info = {"sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho}
    runner = Runner(name or callable_name(sampler), "denoiser", run, schedule, order, info=info,
                    run_noise=run_noise if accepts(sampler, "noise_sampler") else None)
    return runner
