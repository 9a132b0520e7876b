"""diffusers schedulers on a continuous VP time with their own ``(alpha_t, sigma_t)``, no ``alphas_cumprod`` table
(THEORY 1, 2): the levels of each visited timestep are read from the scheduler itself.

- ``add_noise`` schedulers (DDPMWuerstchen's continuous cosine schedule): ``add_noise(1, 0, t) = alpha_t`` and
  ``add_noise(0, 1, t) = sigma_t``; the model output is ``epsilon`` (or the config's ``prediction_type``); the
  timestep is passed batched, as the pipeline does (``t.expand(batch)``).
- per-step tables (IPNDM: ``alphas[i]``, ``betas[i]`` = ``alpha_t``, ``sigma_t`` with ``alpha^2 + sigma^2 = 1``, the
  v-diffusion convention): the step forms ``eps = sigma x + alpha out``, so the model output is ``v = alpha eps -
  sigma x0``.  Its start ``alpha = 0`` is pure noise, the exact marginal: the start law is exact.

The loop visits the first ``N`` timesteps (Wuerstchen lists its end point too).  The exact model is the EDM
denoiser ``D(x~, s)`` at ``s = sigma / alpha``, ``x~ = x / alpha``; at ``alpha = 0``, ``x0 = E[x0] = D(0, 1e4)``
(relative error ``O(1e-8)``).  The run ends at the level of the last timestep (Wuerstchen clamps ``abar`` to
0.9999: above the data), read from the scheduler after the loop; the output is ``alpha_end x~``.
"""

from __future__ import annotations

import math

import torch

from ..base import Runner, Schedule, brownian_in_sigma, event_shape, exact_denoiser
from .loop import clean_config, noise_run, plain_config, prepared, sample, scheduler_module

__all__ = ["SIGMA_AT_PURE_NOISE", "vp_levels", "continuous_runner"]

SIGMA_AT_PURE_NOISE = 1e4  # x0 = E[x0] as D(0, sigma) at this sigma: the denoiser's O(sigma^-2) remainder is 1e-8


def _tables(scheduler, steps: int) -> bool:
    """Per-step ``alphas`` / ``betas`` tables of length ``steps + 1`` (IPNDM), rather than ``add_noise`` levels."""
    alphas = getattr(scheduler, "alphas", None)
    return isinstance(alphas, torch.Tensor) and len(alphas) == steps + 1 and not hasattr(scheduler, "add_noise")


def vp_levels(scheduler, index: int, t, steps: int) -> tuple[float, float]:
    """``(alpha_t, sigma_t)`` of the ``index``-th level of a prepared scheduler (module docstring)."""
    if _tables(scheduler, steps):
        return float(scheduler.alphas[index]), float(scheduler.betas[index])
    tt = torch.as_tensor(t).reshape(-1)[:1]
    one, zero = torch.ones((1, 1)), torch.zeros((1, 1))
    return (float(scheduler.add_noise(one, zero, tt).reshape(-1)[0]),
            float(scheduler.add_noise(zero, one, tt).reshape(-1)[0]))


def continuous_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order: float | None,
                      name: str | None) -> Runner:
    """A continuous-VP-time scheduler instance on the exact model (module docstring)."""
    cls = type(scheduler)
    if not (hasattr(scheduler, "add_noise") or hasattr(scheduler, "alphas")):
        raise TypeError(f"{cls.__name__} exposes neither add_noise nor per-step alphas/betas: no continuous VP levels")
    config = clean_config(scheduler)
    template = cls.from_config(config)
    record: dict = {}
    denoisers: dict = {}

    def plan(steps: int):
        sched = prepared(template, steps)
        tables = _tables(sched, steps)
        pred = "v_prediction" if tables else (prediction_type or config.get("prediction_type") or "epsilon")
        if pred not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {pred!r}")
        times = list(sched.timesteps[:steps])
        levels = [vp_levels(sched, i, t, steps) for i, t in enumerate(times)]
        end_t = sched.timesteps[steps] if len(sched.timesteps) > steps else 0.0
        levels.append(vp_levels(sched, steps, end_t, steps))
        return sched, times, levels, pred, tables

    def model_output(D, levels, pred):
        def output(sched, i, t, x):
            alpha, sigma = levels[i]
            if alpha > 0.0:
                s = sigma / alpha
                x_tilde = x / alpha
                x0 = D(x_tilde, s) if s > 0 else x_tilde
                eps = (x_tilde - x0) / s if s > 0 else torch.zeros_like(x)
            else:  # pure noise: x carries no information on x0
                x0 = D(torch.zeros_like(x), SIGMA_AT_PURE_NOISE)
                eps = x / sigma
            if pred == "epsilon":
                return eps
            if pred == "sample":
                return x0
            return alpha * eps - sigma * x0

        return output

    def run(target, steps, z, generator):
        if z.ndim == 1:
            return run(target, steps, z[:, None], generator)[:, 0]
        sched, times, levels, pred, tables = plan(steps)
        key = id(target)
        if key not in denoisers:
            denoisers[key] = (target, exact_denoiser(target, SIGMA_AT_PURE_NOISE))
        # the pipeline's batched timestep (Wuerstchen's step reads t.size(0)); IPNDM takes the plain value
        visit = times if tables else [torch.as_tensor(t).reshape(1).expand(z.shape[0]) for t in times]
        kw = dict(sampler_kwargs)
        x = sample(sched, visit, z * float(getattr(sched, "init_noise_sigma", 1.0)),
                   model_output(denoisers[key][1], levels, pred), kw)
        record["levels", steps] = levels
        return x

    def schedule(target, steps):
        if ("levels", steps) not in record:
            run(target, steps, torch.zeros((1, *event_shape(target)), dtype=torch.float64), None)
        levels = record["levels", steps]
        (alpha_T, sigma_T), (alpha_end, sigma_end) = levels[0], levels[-1]
        s_end = sigma_end / alpha_end
        init = float(getattr(template, "init_noise_sigma", 1.0))
        if alpha_T > 0.0:
            # start N(0, init^2) in VP units is N(0, init^2 / alpha_T^2) in x~ = x / alpha units at s = sigma / alpha
            process, v_T = brownian_in_sigma(sigma_T / alpha_T), (init / alpha_T) ** 2
        else:
            # pure noise is the exact marginal: the exact start law at the first finite level
            alpha_1, sigma_1 = next(lv for lv in levels[1:] if lv[0] > 0.0)
            process = brownian_in_sigma(sigma_1 / alpha_1)
            v_T = target.mode_variance(process, float(process.T), dtype=torch.float64)
        return Schedule(process, v_T, s_end * s_end, sde=runner.deterministic is False,
                        sigma_last=None, out_scale=alpha_end)

    runner = Runner(name or cls.__name__, "diffusers", run, schedule, order,
                    info={"family": "continuous", "config": plain_config(config)},
                    run_noise=noise_run(scheduler_module(cls), run))
    return runner
