"""diffusers schedulers on a diffusion-time schedule (``alphas_cumprod``, or EDM preconditioning): a
scheduler run on an exact model, wrapped as a ``Runner`` (THEORY 1, 2).

A diffusers scheduler instance is run with the standard loop (:mod:`.loop`:
``set_timesteps``, ``init_noise_sigma``, ``scale_model_input``, ``step(...).prev_sample``)
on an exact ``epsilon`` / ``v_prediction`` / ``sample`` model for the scheduler's own
``alphas_cumprod``: at an integer timestep ``sigma^2 = (1 - abar_t)/abar_t``; at a fractional one
(Euler/Heun/LMS "linspace" spacing, Karras sigmas) the scheduler's own ``sigmas[step_index]``.
EDM schedulers (no ``alphas_cumprod``): the network ``F`` with ``D = c_skip x + c_out F`` taken from
the scheduler's own ``precondition_inputs`` / ``precondition_outputs`` at ``sigmas[step_index]``.
The model input is the VP-scaled sample ``x_t = sqrt(abar) x~`` for every scheduler (Euler-type
schedulers divide their VE-in-sigma state ``x~`` by ``sqrt(1 + sigma^2)`` in ``scale_model_input``).
Stochastic schedulers are noise-probed: draws through ``randn_tensor``, or (DPMSolverSDE) the queries of its
torchsde ``BrownianTreeNoiseSampler``, answered as increments of one exact Brownian path (:mod:`..brownian`).
"""

from __future__ import annotations

import math

import torch

from ..base import Runner, Schedule, accepts, brownian_in_sigma, event_shape, exact_denoiser
from ..brownian import brownian_noise_run
from .loop import clean_config, noise_run, plain_config, prepared, sample, scheduler_module

__all__ = ["discrete_runner", "timestep_sigma", "end_sigma"]


def timestep_sigma(scheduler, t, sigma_table: torch.Tensor, ratio: float, vp: bool) -> float:
    """The noise level the scheduler assumes at this model call (module docstring).

    ``ratio = scale_model_input(1, t)``.  Integer timesteps of a VP-internal scheduler: the
    ``alphas_cumprod`` table.  Otherwise the candidate ``sigmas[step_index]`` (or, for two-stage
    schedulers like KDPM2, ``sigmas_interpol[step_index]``) whose input scaling ``1/sqrt(1 + sigma^2)``
    matches ``ratio``; last resort: ``sigma^2 = 1/ratio^2 - 1``.
    """
    tf = float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else float(t)
    if vp and tf == round(tf) and 0 <= round(tf) < len(sigma_table):
        return float(sigma_table[int(round(tf))])
    idx = getattr(scheduler, "step_index", None)
    idx = 0 if idx is None else idx
    cands = [float(arr[idx]) for arr in (getattr(scheduler, k, None) for k in ("sigmas", "sigmas_interpol"))
             if isinstance(arr, torch.Tensor) and idx < len(arr)]
    if getattr(scheduler, "mid_point_sigma", None) is not None:  # DPMSolverSDE's second stage
        cands.append(float(scheduler.mid_point_sigma))
    if vp:
        if cands:
            return cands[0]
        i = min(max(int(math.floor(tf)), 0), len(sigma_table) - 2)
        w = tf - i
        return float((1 - w) * sigma_table[i] + w * sigma_table[i + 1])
    if cands:
        return min(cands, key=lambda c: abs(1.0 / math.sqrt(1.0 + c * c) - ratio))
    return math.sqrt(max(1.0 / (ratio * ratio) - 1.0, 0.0))


def end_sigma(scheduler, last_timestep) -> float:
    """The noise level ``sigma_end`` (VE units) where the loop's last step lands, read from the scheduler's state
    after the loop: ``sigmas[-1]`` for a sigma-stepping scheduler (``final_sigmas_type="sigma_min"`` ends above
    0); else the ``alphas_cumprod`` entry of the last step's previous timestep, or ``final_alpha_cumprod``
    (``set_alpha_to_one=False``: ``alphas_cumprod[0]``, not the data) when that timestep is negative:
    ``sigma_end^2 = (1 - abar_end) / abar_end``.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and len(sigmas):
        return max(float(sigmas[-1]), 0.0)
    t = int(round(float(last_timestep.reshape(-1)[0]) if isinstance(last_timestep, torch.Tensor) else float(last_timestep)))
    if hasattr(scheduler, "previous_timestep"):
        prev = int(scheduler.previous_timestep(t))
    else:
        steps = getattr(scheduler, "num_inference_steps", None) or len(scheduler.timesteps)
        prev = t - int(scheduler.config["num_train_timesteps"]) // int(steps)
    if prev >= 0:
        abar = float(scheduler.alphas_cumprod[prev])
    else:
        abar = float(getattr(scheduler, "final_alpha_cumprod", getattr(scheduler, "one", 1.0)))
    return math.sqrt(max(1.0 - abar, 0.0) / abar)


def discrete_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order: float | None,
                    name: str | None) -> Runner:
    """A diffusion-time scheduler instance on the exact ``epsilon`` / ``v_prediction`` / ``sample`` model
    (module docstring); ``order`` is the documented one (the registry's)."""
    cls = type(scheduler)
    config = clean_config(scheduler)
    if prediction_type is not None:
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {prediction_type!r}")
        config["prediction_type"] = prediction_type
    pred = config.get("prediction_type", "epsilon")
    # EDM schedulers (EDMEuler, EDMDPMSolverMultistep): VE in sigma, no alphas_cumprod; the model is the
    # EDM network F with D = c_skip x + c_out F, both read from the scheduler's own precondition_outputs.
    edm = hasattr(scheduler, "precondition_outputs") and not hasattr(scheduler, "alphas_cumprod")
    if edm:
        sigma_table = None
        sigma_max = float(config["sigma_max"])
    else:
        if not hasattr(scheduler, "alphas_cumprod"):
            raise TypeError(f"{cls.__name__} has no alphas_cumprod (not a diffusion-time scheduler this adapter fits)")
        abar = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)
        sigma_table = ((1 - abar) / abar).sqrt()
        sigma_max = float(sigma_table.max())
    takes_gen = accepts(cls.step, "generator")
    record: dict = {}
    denoisers: dict = {}

    def edm_output(D, visited: list):
        def model_output(sched, i, t, x):
            x_in = sched.scale_model_input(x, t)  # first: it sets the step index
            sig = float(sched.sigmas[sched.step_index])
            c_in = float(sched.precondition_inputs(torch.ones(1, dtype=torch.float64), sig)[0])
            x_tilde = x_in / c_in
            base = sched.precondition_outputs(x_tilde, torch.zeros_like(x_tilde), sig)  # c_skip x
            c_out = float(sched.precondition_outputs(torch.zeros(1, dtype=torch.float64),
                                                     torch.ones(1, dtype=torch.float64), sig)[0])
            if not visited:
                record["vp_internal"] = False
            visited.append(sig)
            return (D(x_tilde, sig) - base) / c_out

        return model_output

    def vp_output(D, visited: list):
        def model_output(sched, i, t, x):
            x_in = sched.scale_model_input(x, t)
            probe = torch.ones((1,), dtype=torch.float64)
            ratio = float(sched.scale_model_input(probe, t).reshape(-1)[0])
            if not visited:
                # VP-internal schedulers (DDIM, DPM-Solver, UniPC, ...) do not rescale the input
                record["vp_internal"] = ratio == 1.0
            sig = timestep_sigma(sched, t, sigma_table, ratio, record["vp_internal"])
            visited.append(sig)
            x_tilde = x_in * math.sqrt(1.0 + sig * sig)
            x0 = D(x_tilde, sig)
            eps = (x_tilde - x0) / sig if sig > 0 else torch.zeros_like(x0)
            if pred == "epsilon":
                return eps
            if pred == "sample":
                return x0
            return (eps - sig * x0) / math.sqrt(1.0 + sig * sig)

        return model_output

    def run(target, steps, z, generator):
        if z.ndim == 1:  # schedulers index sample.shape[1] (e.g. DDPM's learned-variance test): use (n, 1)
            return run(target, steps, z[:, None], generator)[:, 0]
        if "template" not in record:
            record["template"] = cls.from_config(config)
        key = id(target)
        if key not in denoisers:
            denoisers[key] = (target, exact_denoiser(target, sigma_max * 1.001))
        D = denoisers[key][1]
        sched = prepared(record["template"], steps)
        kw = dict(sampler_kwargs)
        if takes_gen:
            kw.setdefault("generator", generator)
        visited: list[float] = []  # the noise level of every model call
        x = sample(sched, sched.timesteps, z * float(sched.init_noise_sigma),
                   (edm_output if edm else vp_output)(D, visited), kw)
        first, last = (visited[0], visited[-1]) if visited else (None, None)
        end = end_sigma(sched, sched.timesteps[-1]) if len(sched.timesteps) else 0.0
        record[(key, steps)] = (first, float(sched.init_noise_sigma), record["vp_internal"], last, end)
        return x

    def schedule(target, steps):
        if (id(target), steps) not in record:
            run(target, steps, torch.ones((1, *event_shape(target)), dtype=torch.float64), torch.Generator().manual_seed(0))
        first, init, vp, last, end = record[(id(target), steps)]
        # start law in x~ (VE-in-sigma) units: VP-internal x_T = sqrt(abar_T) x~, else x_T = x~; the same at
        # the end level: a VP-internal output is sqrt(abar_end) x~ = x~ / sqrt(1 + sigma_end^2)
        v_T = init**2 * (1.0 + first * first) if vp else init**2
        out_scale = 1.0 / math.sqrt(1.0 + end * end) if vp else 1.0
        return Schedule(brownian_in_sigma(first), v_T, end * end, sde=runner.deterministic is False,
                        sigma_last=last if end == 0.0 else None, out_scale=out_scale)

    # Stochastic schedulers draw their noise with diffusers' ``randn_tensor`` imported into their module
    # (.loop.noise_run); DPMSolverSDE from a torchsde Brownian tree in sigma, probed as one exact path (..brownian)
    module = scheduler_module(cls)
    run_noise = noise_run(module, run)
    if hasattr(module, "BrownianTreeNoiseSampler"):
        def run_noise(target, steps, z, draw):  # noqa: F811 - the Brownian-tree scheduler's own probing
            return brownian_noise_run(lambda z_, ns: _with_noise_sampler(module, ns, lambda: run(target, steps, z_, None)),
                                      draw, z)

    runner = Runner(name or cls.__name__, "diffusers", run, schedule, order,
                    info={"prediction_type": pred, "sigma_max": sigma_max, "config": plain_config(config)},
                    run_noise=run_noise)
    return runner


def _with_noise_sampler(module, noise_sampler, fn):
    """Run ``fn()`` with ``module.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed)`` returning ``noise_sampler``."""
    original = module.BrownianTreeNoiseSampler
    module.BrownianTreeNoiseSampler = lambda *args, **kwargs: noise_sampler
    try:
        return fn()
    finally:
        module.BrownianTreeNoiseSampler = original
