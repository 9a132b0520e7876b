"""The ``diffusers`` adapter: a scheduler run on an exact model, wrapped as a ``Runner`` (THEORY 1, 2).

A diffusers scheduler (instance or class) is run with the standard loop
(``set_timesteps``, ``init_noise_sigma``, ``scale_model_input``, ``step(...).prev_sample``)
on an exact ``epsilon`` / ``v_prediction`` / ``sample`` model for the scheduler's own
``alphas_cumprod``: at an integer timestep ``sigma^2 = (1 - abar_t)/abar_t``; at a fractional one
(Euler/Heun/LMS "linspace" spacing, Karras sigmas) the scheduler's own ``sigmas[step_index]``.
EDM schedulers (no ``alphas_cumprod``): the network ``F`` with ``D = c_skip x + c_out F`` taken from
the scheduler's own ``precondition_inputs`` / ``precondition_outputs`` at ``sigmas[step_index]``.
The model input is the VP-scaled sample ``x_t = sqrt(abar) x~`` for every scheduler (Euler-type
schedulers divide their VE-in-sigma state ``x~`` by ``sqrt(1 + sigma^2)`` in ``scale_model_input``).
Stochastic schedulers are noise-probed: draws through ``randn_tensor``, or (DPMSolverSDE) the queries of its
torchsde ``BrownianTreeNoiseSampler``, answered as increments of one exact Brownian path (:mod:`.sde_solvers`).
"""

from __future__ import annotations

import copy
import math
import sys

import torch

from ..targets import GaussianField
from .flow import flow_scheduler_runner, is_flow_scheduler
from .runner import Runner, Schedule, _accepts, _brownian, exact_denoiser, supplied_noise
from .sde_solvers import brownian_noise_run
from .consistency import consistency_kind, consistency_runner

__all__ = ["DIFFUSERS_ORDERS"]


# Documented orders of diffusers schedulers with their default configs (their docstrings/papers).
DIFFUSERS_ORDERS = {
    "DDIMScheduler": 1.0,
    "EulerDiscreteScheduler": 1.0,
    "HeunDiscreteScheduler": 2.0,
    "LMSDiscreteScheduler": 4.0,
    "DPMSolverMultistepScheduler": 2.0,
    "DPMSolverSinglestepScheduler": 2.0,
    "UniPCMultistepScheduler": 3.0,  # solver_order = 2 predictor + UniC corrector: order p + 1
    "DEISMultistepScheduler": 2.0,
    "PNDMScheduler": 4.0,  # PLMS (skip_prk_steps) is a 4th-order linear multistep method
    "IPNDMScheduler": 4.0,
    "KDPM2DiscreteScheduler": 2.0,
    "EDMEulerScheduler": 1.0,
    "EDMDPMSolverMultistepScheduler": 2.0,
    "SASolverScheduler": 2.0,
    "DDPMScheduler": 1.0,
    "EulerAncestralDiscreteScheduler": 1.0,
    "DPMSolverSDEScheduler": 2.0,  # k-diffusion's DPM-Solver++ SDE (two stages, midpoint in log sigma)
    "DDIMParallelScheduler": 1.0,  # DDIM / DDPM with a batched (parallel) step: the same update
    "DDPMParallelScheduler": 1.0,
    "CogVideoXDDIMScheduler": 1.0,  # DDIM on CogVideoX's zero-terminal-SNR schedule
    "FlowMatchEulerDiscreteScheduler": 1.0,  # Euler on the rectified-flow ODE (validate.flow)
    "LTXEulerAncestralRFScheduler": 1.0,  # Euler ancestral on the rectified flow (validate.flow): weak order 1
    "FlowMatchHeunDiscreteScheduler": 2.0,  # Heun (EDM Algorithm 1 in flow time)
}


def _timestep_sigma(scheduler, t, sigma_table: torch.Tensor, ratio: float, vp: bool) -> float:
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


def _diffusers_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order, name) -> Runner:
    if consistency_kind(scheduler) is not None:  # LCM, TCD, SCM, CMStochasticIterative: exact consistency function
        return consistency_runner(scheduler, prediction_type=prediction_type, sampler_kwargs=sampler_kwargs, name=name)
    if isinstance(scheduler, type):
        # A class gets its default config, minus the image-range assumptions (clip x0 to [-1, 1],
        # dynamic thresholding): they are not part of the solver and make it non-linear.
        # Pass an instance to validate a config exactly as it is.
        scheduler = scheduler()
        off = {k: False for k in ("clip_sample", "thresholding") if scheduler.config.get(k)}
        if off:
            scheduler = type(scheduler).from_config(scheduler.config, **off)
    if not (hasattr(scheduler, "set_timesteps") and hasattr(scheduler, "step") and hasattr(scheduler, "config")):
        raise TypeError(f"the diffusers adapter needs a diffusers scheduler, got {type(scheduler).__name__}")
    if is_flow_scheduler(scheduler):  # rectified flow: no alphas_cumprod, the model is a velocity (validate.flow)
        return flow_scheduler_runner(scheduler, prediction_type=prediction_type, sampler_kwargs=sampler_kwargs, name=name,
                                     order=DIFFUSERS_ORDERS.get(type(scheduler).__name__) if order is None else order)
    cls = type(scheduler)
    # "_use_default_values" would make from_config silently drop our overrides
    config = {k: v for k, v in scheduler.config.items() if k != "_use_default_values"}
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
    takes_gen = _accepts(cls.step, "generator")
    record: dict = {}
    denoisers: dict = {}

    def _step_kw(generator) -> dict:
        kw = dict(sampler_kwargs)
        if takes_gen:
            kw.setdefault("generator", generator)
        return kw

    def run(target, steps, z, generator):
        if z.ndim == 1:  # schedulers index sample.shape[1] (e.g. DDPM's learned-variance test): use (n, 1)
            return run(target, steps, z[:, None], generator)[:, 0]
        if "template" not in record:
            record["template"] = cls.from_config(config)
        sched = copy.deepcopy(record["template"])  # fresh state; __init__ can be slow (KDPM2: ~0.4 s)
        key = id(target)
        if key not in denoisers:
            denoisers[key] = (target, exact_denoiser(target, sigma_max * 1.001))
        D = denoisers[key][1]
        sched.set_timesteps(steps)
        x = z * float(sched.init_noise_sigma)
        first = None
        for t in sched.timesteps:
            x_in = sched.scale_model_input(x, t)
            if edm:
                sig = float(sched.sigmas[sched.step_index])
                c_in = float(sched.precondition_inputs(torch.ones(1, dtype=torch.float64), sig)[0])
                x_tilde = x_in / c_in
                base = sched.precondition_outputs(x_tilde, torch.zeros_like(x_tilde), sig)  # c_skip x
                c_out = float(sched.precondition_outputs(torch.zeros(1, dtype=torch.float64),
                                                         torch.ones(1, dtype=torch.float64), sig)[0])
                out = (D(x_tilde, sig) - base) / c_out
                if first is None:
                    first, record["vp_internal"] = sig, False
                x = sched.step(out.to(x.dtype), t, x, **_step_kw(generator)).prev_sample
                last = sig
                continue
            probe = torch.ones((1,), dtype=torch.float64)
            ratio = float(sched.scale_model_input(probe, t).reshape(-1)[0])
            if first is None:
                # VP-internal schedulers (DDIM, DPM-Solver, UniPC, ...) do not rescale the input
                record["vp_internal"] = ratio == 1.0
            sig = _timestep_sigma(sched, t, sigma_table, ratio, record["vp_internal"])
            if first is None:
                first = sig
            x_tilde = x_in * math.sqrt(1.0 + sig * sig)
            x0 = D(x_tilde, sig)
            eps = (x_tilde - x0) / sig if sig > 0 else torch.zeros_like(x0)
            if pred == "epsilon":
                out = eps
            elif pred == "sample":
                out = x0
            else:
                out = (eps - sig * x0) / math.sqrt(1.0 + sig * sig)
            x = sched.step(out.to(x.dtype), t, x, **_step_kw(generator)).prev_sample
            last = sig
        record[(key, steps)] = (first, float(sched.init_noise_sigma), record["vp_internal"], last)
        return x

    def schedule(target, steps):
        if (id(target), steps) not in record:
            run(target, steps, torch.ones((1, *_event_shape(target)), dtype=torch.float64), torch.Generator().manual_seed(0))
        first, init, vp, last = record[(id(target), steps)]
        # start law in x~ (VE-in-sigma) units: VP-internal x_T = sqrt(abar_T) x~, else x_T = x~
        v_T = init**2 * (1.0 + first * first) if vp else init**2
        return Schedule(_brownian(first), v_T, 0.0, sde=runner.deterministic is False, sigma_last=last)

    # Stochastic schedulers draw their noise with diffusers' ``randn_tensor`` imported into their module:
    # supplying it there makes every draw a probe. A scheduler drawing elsewhere (torch.randn) is caught by
    # the probing's own linearity check, which then falls back to Monte Carlo.
    module = sys.modules.get(cls.__module__)

    def run_noise(target, steps, z, draw):
        if hasattr(module, "BrownianTreeNoiseSampler"):
            # DPMSolverSDE: noise from a torchsde Brownian tree in sigma, probed as one exact path (sde_solvers)
            return brownian_noise_run(lambda z_, ns: _with_noise_sampler(module, ns, lambda: run(target, steps, z_, None)),
                                      draw, z)
        with supplied_noise(module, draw):
            return run(target, steps, z, None)

    runner = Runner(name or cls.__name__, "diffusers", run, schedule,
                    DIFFUSERS_ORDERS.get(cls.__name__) if order is None else order,
                    info={"prediction_type": pred, "sigma_max": sigma_max,
                          "config": {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, type(None)))}},
                    run_noise=run_noise if hasattr(module, "randn_tensor") or hasattr(module, "BrownianTreeNoiseSampler")
                    else None)
    return runner


def _with_noise_sampler(module, noise_sampler, fn):
    """Run ``fn()`` with ``module.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed)`` returning ``noise_sampler``."""
    original = module.BrownianTreeNoiseSampler
    module.BrownianTreeNoiseSampler = lambda *args, **kwargs: noise_sampler
    try:
        return fn()
    finally:
        module.BrownianTreeNoiseSampler = original


def _event_shape(target) -> tuple[int, ...]:
    return target.shape if isinstance(target, GaussianField) else ()
