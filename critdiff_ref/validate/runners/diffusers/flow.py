"""diffusers' flow-matching schedulers on the rectified flow ``x_t = (1 - t) x_0 + t z`` (THEORY 1, 2).

``FlowMatchEulerDiscrete`` / ``FlowMatchHeunDiscrete`` / ``FlowMatchLCM`` (no ``alphas_cumprod``), and the
registry's other ``"flow"`` classes: the standard loop (:mod:`.loop`: ``set_timesteps(N[, mu])``,
``step(out, t, x).prev_sample``, no input scaling, start ``x = z``) with the model evaluated at the scheduler's own ``sigmas[step_index]`` (float32, as it steps).

  ``prediction_type="velocity"`` (default; LCM: ``"consistency"``): ``out = dx/dsigma`` of the exact flow,
  i.e. ``v(x, sigma)`` (``-v(x, 1 - sigma)`` with ``invert_sigmas``, whose sigma is the data fraction).
  ``"consistency"``: ``out = (x - f(x, sigma)) / sigma`` with ``f`` the exact consistency function (the
  PF-ODE map to ``t_min = 0``, :func:`critdiff_ref.scores.exact_consistency`), so the scheduler's ``x0 = x - sigma out`` is ``f``.
  ``"flow_map"`` (a step taking ``r_timestep``: FlowMapEuler): ``out`` = the exact mean velocity of the two-time
  flow map, ``(x - Phi_{sigma -> sigma_next}(x)) / (sigma - sigma_next)`` (:func:`critdiff_ref.samplers.exact_flow`),
  so each step lands on the exact flow: checked for exactness at every step count, like the consistency model.
  A data-ward velocity (MiniMaxH3: ``x0 = x + sigma out``) is recognised from the scheduler's own step (a probe
  step with ``out = 1`` moves ``x`` by ``+(sigma - sigma_next)`` instead of ``-(sigma - sigma_next)``): ``out = -v``.
  ``use_dynamic_shifting`` needs ``sampler_kwargs={"mu": ...}`` (passed to ``set_timesteps``).
  With the consistency model the run is exact at every step count (float32 rounding): validate() checks
  that (its consistency check) instead of an order.  ``stochastic_sampling=True`` is the same
  denoise/re-noise step as LCM: on the velocity model it does not converge to the target law.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from ....processes import RectifiedFlow
from ....samplers import exact_flow
from ....scores import exact_consistency, exact_velocity
from ....targets import GaussianField
from ..base import Runner, accepts, event_shape, supplied_noise
from ..velocity import flow_schedule
from .loop import clean_config, noise_run, plain_config, prepared, sample, scheduler_module

__all__ = ["FLOW_PREDICTIONS", "flow_scheduler_runner", "velocity_sign"]

FLOW_PREDICTIONS = ("velocity", "consistency", "flow_map")


def velocity_sign(template, set_timesteps_kwargs: dict) -> float:
    """+1 when the scheduler's step moves ``x`` by ``(sigma_next - sigma) out`` (diffusers' ``out = dx/dsigma``), -1 for
    a data-ward velocity (``x0 = x + sigma out``): read from one probe step with ``out = 1`` on a copy, with any noise
    the step draws through ``randn_tensor`` set to 0."""
    sched = prepared(template, 2, **set_timesteps_kwargs)
    x = torch.zeros(1, 1, dtype=torch.float64)
    module = scheduler_module(type(template))
    quiet = (supplied_noise(module, lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device))
             if hasattr(module, "randn_tensor") else nullcontext())
    with quiet:
        moved = float(sched.step(torch.ones_like(x), sched.timesteps[0], x).prev_sample.reshape(-1)[0])
    return 1.0 if moved <= 0.0 else -1.0


def flow_scheduler_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order, name) -> Runner:
    """A diffusers FlowMatch* scheduler instance on the exact velocity or consistency model (module docstring);
    ``order`` is the documented one (the registry's)."""
    cls = type(scheduler)
    config = clean_config(scheduler)
    kw0 = dict(sampler_kwargs)
    mu = kw0.pop("mu", None)
    if config.get("use_dynamic_shifting") and mu is None:
        raise ValueError("use_dynamic_shifting=True needs sampler_kwargs={'mu': <float>} (set_timesteps' mu), got mu=None")
    flow_map = accepts(cls.step, "r_timestep")
    pred = prediction_type or ("consistency" if "LCM" in cls.__name__ else "flow_map" if flow_map else "velocity")
    if pred not in FLOW_PREDICTIONS:
        raise ValueError(f"prediction_type must be one of {FLOW_PREDICTIONS} for a flow-matching scheduler, got {pred!r}")
    stochastic = "LCM" in cls.__name__ or bool(config.get("stochastic_sampling", False))
    if pred == "consistency" and not stochastic:
        raise ValueError(f"prediction_type='consistency' needs a re-noising step (FlowMatchLCM, or stochastic_sampling=True); "
                         f"{cls.__name__} with this config integrates the flow ODE: use prediction_type='velocity'")
    if (pred == "flow_map") != flow_map:
        raise ValueError(f"prediction_type='flow_map' is the model of a flow-map scheduler (step(..., r_timestep)): "
                         f"{cls.__name__} with prediction_type={pred!r}")
    inverted = bool(config.get("invert_sigmas", False))
    takes_gen = accepts(cls.step, "generator")
    template = cls.from_config(config)
    sign = 1.0 if inverted or pred != "velocity" or stochastic else velocity_sign(template, {"mu": mu} if mu is not None else {})
    process = RectifiedFlow(1.0)
    models: dict = {}
    record: dict = {}

    def model_for(target) -> Callable:
        key = id(target)
        if key not in models:
            if pred == "velocity":
                v = exact_velocity(target, process)
                fn = (lambda x, t, sigma, nxt: -v(x, t)) if inverted else (lambda x, t, sigma, nxt: sign * v(x, t))
            elif pred == "flow_map":
                if not isinstance(target, GaussianField):
                    raise TypeError(f"the exact flow map is known in closed form for Gaussian fields only, got target={type(target).__name__}")
                fn = lambda x, t, sigma, nxt: (x - exact_flow(target, process, x, sigma, nxt)) / (sigma - nxt)  # noqa: E731
            else:
                f = exact_consistency(target, 0.0)
                fn = lambda x, t, sigma, nxt: (x - f(x, t)) / sigma if sigma > 0 else torch.zeros_like(x)  # noqa: E731
            models[key] = (target, fn)
        return models[key][1]

    def model_output(model):
        def output(sched, i, t, x):
            idx = sched.step_index if sched.step_index is not None else sched.index_for_timestep(t)
            sigma = float(sched.sigmas[idx])
            nxt = float(sched.sigmas[idx + 1]) if idx + 1 < len(sched.sigmas) else 0.0
            return model(x, 1.0 - sigma if inverted else sigma, sigma, nxt)

        return output

    def run(target, steps, z, generator):
        sched = prepared(template, steps, **({"mu": mu} if mu is not None else {}))
        model = model_for(target)
        kw = dict(kw0)
        if takes_gen:
            kw.setdefault("generator", generator)
        x = sample(sched, sched.timesteps, z * float(getattr(sched, "init_noise_sigma", 1.0)), model_output(model), kw)
        ends = [float(sched.sigmas[0]), float(sched.sigmas[-1])]
        record[(id(target), steps)] = tuple(1.0 - s if inverted else s for s in ends)
        return x.to(z.dtype)

    def schedule(target, steps):
        if (id(target), steps) not in record:
            run(target, steps, torch.zeros((1, *event_shape(target)), dtype=torch.float64), torch.Generator().manual_seed(0))
        T, t_end = record[(id(target), steps)]
        return flow_schedule(T, float(getattr(template, "init_noise_sigma", 1.0)) ** 2, t_end)

    # stochastic_sampling / LCM draw with diffusers' randn_tensor imported into the scheduler's module
    run_noise = noise_run(scheduler_module(cls), run)

    info = {"prediction_type": pred, "config": plain_config(config), "velocity_sign": sign}
    if mu is not None:
        info["mu"] = mu
    if pred in ("consistency", "flow_map"):
        # exact at every step count: validate() replaces the order row by its consistency check (checks.consistency)
        info["family"] = "consistency"
    return Runner(name or cls.__name__, "diffusers", run, schedule, order, info=info,
                  deterministic=False if stochastic else None,  # one step re-noises with sigma_next = 0: looks deterministic
                  run_noise=run_noise)
