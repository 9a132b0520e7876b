"""diffusers' predictor-corrector schedulers (ScoreSdeVe) on the exact score, looped as their pipeline does (THEORY 1, 2).

``set_timesteps(N)`` and ``set_sigmas(N)``, start ``x = sigma_max z``; per timestep ``t_i`` with noise level
``sigma_i = sigmas[i]``: ``correct_steps`` Langevin corrector steps ``x <- step_correct(s(x, sigma_i), x)``, then the
reverse-SDE predictor ``step_pred(s(x, sigma_i), t_i, x)`` (Euler-Maruyama in ``sigma^2`` between the scheduler's
discrete sigmas); the output is the last ``prev_sample_mean`` (no noise on the final step, which jumps from
``sigma_min`` to 0).  The model output is the exact VE score ``s(x, sigma) = (D(x, sigma) - x) / sigma^2``.

The predictor is linear in the state and the noise (exact noise probing).  The corrector is not: its step size
``2 (snr ||z|| / ||s(x)||)^2`` is set by the norms of the noise and of the score (averaged over the batch), so
with ``correct_steps >= 1`` the run is measured by Monte Carlo (no ``run_noise``: a probe batch would set its own
step size, linear within the batch but not the sampler's law); at fixed ``snr`` the
unadjusted Langevin step keeps a bias of order the step size at every level (its own error need not vanish).
The exact flow it discretises: the reverse SDE from ``N(0, sigma_max^2)`` at ``sigma_max^2`` to the data.
"""

from __future__ import annotations

import torch

from ..base import Runner, Schedule, accepts, brownian_in_sigma, exact_denoiser
from .loop import clean_config, noise_run, plain_config, prepared, scheduler_module

__all__ = ["predictor_corrector_runner"]


def predictor_corrector_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order: float | None,
                               name: str | None) -> Runner:
    """A predictor-corrector scheduler instance (``step_pred`` / ``step_correct``) on the exact score (module docstring)."""
    cls = type(scheduler)
    if not (hasattr(scheduler, "step_pred") and hasattr(scheduler, "step_correct") and hasattr(scheduler, "set_sigmas")):
        raise TypeError(f"{cls.__name__} has no step_pred / step_correct / set_sigmas: not a predictor-corrector scheduler")
    if prediction_type not in (None, "score"):
        raise ValueError(f"a predictor-corrector scheduler takes the score as its model output, got prediction_type={prediction_type!r}")
    config = clean_config(scheduler)
    template = cls.from_config(config)
    sigma_max = float(config["sigma_max"])
    correct_steps = int(config.get("correct_steps", 1))
    takes_gen = accepts(cls.step_pred, "generator")
    denoisers: dict = {}

    def score_for(target):
        key = id(target)
        if key not in denoisers:
            D = exact_denoiser(target, sigma_max * 1.001)
            denoisers[key] = (target, lambda x, s: (D(x, s) - x) / (s * s))
        return denoisers[key][1]

    def run(target, steps, z, generator):
        if z.ndim == 1:
            return run(target, steps, z[:, None], generator)[:, 0]
        sched = prepared(template, steps)
        sched.set_sigmas(steps)
        score = score_for(target)
        kw = dict(sampler_kwargs)
        if takes_gen:
            kw.setdefault("generator", generator)
        x = z * float(sched.init_noise_sigma)
        x_mean = x
        for i, t in enumerate(sched.timesteps):
            sigma = float(sched.sigmas[i])
            for _ in range(correct_steps):
                x = sched.step_correct(score(x, sigma).to(x.dtype), x, **kw).prev_sample
            out = sched.step_pred(score(x, sigma).to(x.dtype), t, x, **kw)
            x, x_mean = out.prev_sample, out.prev_sample_mean
        return x_mean

    def schedule(target, steps):
        return Schedule(brownian_in_sigma(sigma_max), sigma_max**2, 0.0, sde=True)

    return Runner(name or cls.__name__, "diffusers", run, schedule, order, deterministic=False,
                  info={"family": "predictor_corrector", "prediction_type": "score", "correct_steps": correct_steps,
                        "config": plain_config(config)},
                  run_noise=noise_run(scheduler_module(cls), run) if correct_steps == 0 else None)
