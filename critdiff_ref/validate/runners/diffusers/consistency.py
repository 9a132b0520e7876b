"""Consistency and distilled samplers (diffusers LCM, TCD, SCM, CMStochasticIterative) run on the EXACT
consistency function of a Gaussian field (THEORY 1 "Consistency functions", THEORY 2).

A consistency sampler alternates a learned map ``x_s -> f(x_s, s)`` onto an end level ``e`` (the data
for LCM and SCM, ``sigma_min`` for CM, the trajectory point ``s' = floor((1 - gamma) t_prev)`` for TCD)
with re-noising to the next level.  Write every level as ``x = alpha y + beta eps`` in the scheduler's
own units (``y`` the data, per mode of variance ``c0``), so ``C = alpha^2 c0 + beta^2``; the exact
consistency function is the PF-ODE flow map, per mode the gain ``sqrt(C_e / C_s)`` (THEORY 2).  Each
scheduler gets the model output that makes ITS parametrisation equal that map:

- LCM: ``denoised = c_skip x + c_out x0_pred(m)`` must be the data-level map; ``x0_pred`` from ``m`` by
  the prediction type (``eps = (x - a x0) / b``, ``v = a eps - b x0``; ``a = sqrt(abar_t)``, ``b = sqrt(1 - abar_t)``).
- TCD: ``a_s x0 + b_s eps`` with ``a_t x0 + b_t eps = x`` must be the map to ``s'``: a 2 x 2 solve for ``(x0, eps)``.
- SCM (TrigFlow, the Sana-Sprint loop): ``x = sigma_d (cos s y + sin s eps)``, ``x0 = cos s x - sin s F``.
- CMStochasticIterative (EDM preconditioning): ``denoised = c_skip x + c_out F`` the map to ``sigma_min``.

``c_skip`` / ``c_out`` are read from the scheduler's own ``get_scalings_*`` and the schedule from its own
tables (``alphas_cumprod``, ``sigmas``, ``timesteps``): what is checked is the step, the re-noising and
the bookkeeping.  With the exact map, the end law after ``N`` steps follows the recursion
``v <- v C_e / C_s``, then (re-noise to the next level ``n`` with the forward kernel from ``e``,
``r = alpha_n / alpha_e``) ``v <- r^2 v + beta_n^2 - r^2 beta_e^2`` (:func:`exact_law`): one step already
gives the target law up to the start-variance floor, and no step count may do worse than that
recursion.  The check asserted (:func:`critdiff_ref.validate.checks.consistency.consistency_check`) is that the scheduler's own error (exact,
by noise probing) is at rounding at EVERY step count, the one-step count included: any drift with
the number of steps is the scheduler's bug.  Non-Gaussian targets are not applicable (no closed-form
flow map).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, NamedTuple

import torch

from ....samplers.exact import apply_gain
from ....targets import GaussianField
from ..base import Runner, Schedule, accepts, brownian_in_sigma
from .loop import clean_config, noise_run, plain_config, prepared, sample, scheduler_module

__all__ = [
    "CONSISTENCY_KINDS",
    "consistency_runner",
    "consistency_levels",
    "exact_law",
    "Level",
]

# the parametrisations this runner inverts (module docstring); the registry names each class's kind
CONSISTENCY_KINDS = ("lcm", "tcd", "trigflow", "cm")

class Level(NamedTuple):
    """One consistency step in the scheduler's units: state ``x = alpha y + beta eps`` (``y`` the data),
    the end level of its consistency map, and the level it re-noises to (``None`` on the last step)."""

    alpha: float
    beta: float
    alpha_end: float
    beta_end: float
    alpha_next: float | None
    beta_next: float | None


def _eta(cls, sampler_kwargs: dict) -> float:
    """TCD's gamma (its ``step(eta=...)``): the caller's, else the step signature's default."""
    if "eta" in sampler_kwargs:
        eta = sampler_kwargs["eta"]
    else:
        eta = inspect.signature(cls.step).parameters["eta"].default
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"sampler_kwargs['eta'] (TCD's gamma) must be a number in [0, 1], got eta={eta!r}")
    return float(eta)


def _set_timesteps_kwargs(kind: str, steps: int) -> dict:
    # diffusers raises unless intermediate_timesteps is None for N != 2 (the Sana-Sprint pipeline passes it)
    return {} if kind != "trigflow" or steps == 2 else {"intermediate_timesteps": None}


def _loop_timesteps(sched, kind: str) -> list:
    """The timesteps the standard loop visits (SCM's table ends with t = 0, never stepped from)."""
    ts = list(sched.timesteps)
    return ts[:-1] if kind == "trigflow" else ts


def consistency_levels(sched, kind: str, steps: int, eta: float = 0.0) -> tuple[list[Level], float, float]:
    """Per-step :class:`Level` s read from the scheduler's own tables after ``set_timesteps(steps)``, the
    start variance ``v_start`` of the loop's ``x_T`` and the output scale (output = scale * state).

    Written from the papers' definitions, not from ``step``: LCM/TCD ``x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps``
    (TCD's end ``s' = floor((1 - gamma) t_prev)``, ``t_prev = 0`` after the last timestep); SCM
    ``x = sigma_d (cos t y + sin t eps)``; CM ``x = y + sigma eps`` ending at ``sigma_min``.
    """
    levels: list[Level] = []
    if kind in ("lcm", "tcd"):
        abar = torch.as_tensor(sched.alphas_cumprod, dtype=torch.float64)
        ts = [int(t) for t in sched.timesteps]

        def ab(t: int) -> tuple[float, float]:
            return math.sqrt(float(abar[t])), math.sqrt(1.0 - float(abar[t]))

        for i, t in enumerate(ts):
            a, b = ab(t)
            t_prev = ts[i + 1] if i + 1 < len(ts) else None
            if kind == "lcm":
                a_e, b_e = 1.0, 0.0
                nxt = ab(t_prev) if t_prev is not None else (None, None)
            else:
                a_e, b_e = ab(int(math.floor((1.0 - eta) * (t_prev if t_prev is not None else 0))))
                # gamma = 0: the map lands on t_prev itself and nothing is re-noised
                nxt = ab(t_prev) if t_prev is not None else (None, None)
            levels.append(Level(a, b, a_e, b_e, *nxt))
        return levels, float(sched.init_noise_sigma) ** 2, 1.0
    if kind == "trigflow":
        sd = float(sched.config.sigma_data)
        ts = [float(t) for t in sched.timesteps]
        for i in range(len(ts) - 1):
            s, t = ts[i], ts[i + 1]
            last = i == len(ts) - 2
            levels.append(Level(sd * math.cos(s), sd * math.sin(s), sd, 0.0,
                                None if last else sd * math.cos(t), None if last else sd * math.sin(t)))
        return levels, sd * sd, 1.0 / sd  # the pipeline starts from sigma_d z and returns x0 / sigma_d
    if kind == "cm":
        sig = [float(s) for s in sched.sigmas]
        s_min, s_max = float(sched.config.sigma_min), float(sched.config.sigma_max)
        for i in range(len(sig) - 1):
            last = i == len(sig) - 2
            levels.append(Level(1.0, sig[i], 1.0, s_min, None if last else 1.0,
                                None if last else min(max(sig[i + 1], s_min), s_max)))
        return levels, float(sched.init_noise_sigma) ** 2, 1.0
    raise ValueError(f"kind must be 'lcm', 'tcd', 'trigflow' or 'cm', got kind={kind!r}")


def exact_law(c0: torch.Tensor, levels: list[Level], v_start, out_scale: float = 1.0) -> torch.Tensor:
    """Per-mode end variance of the ideal consistency sampler: exact map, exact re-noising (THEORY 1).

    ``v <- v C_e / C_s`` (the flow map, ``C = alpha^2 c0 + beta^2``), then, except after the last step,
    the forward kernel from the end level to the next one: ``v <- r^2 v + beta_n^2 - r^2 beta_e^2`` with
    ``r = alpha_n / alpha_e``.  Returns ``out_scale^2 v`` (modes with ``c0 = 0`` give 0).
    """
    c0 = torch.as_tensor(c0, dtype=torch.float64)
    mask = c0 > 0
    v = torch.where(mask, torch.as_tensor(v_start, dtype=torch.float64) * torch.ones_like(c0), torch.zeros_like(c0))
    for lv in levels:
        C_s = lv.alpha**2 * c0 + lv.beta**2
        C_e = lv.alpha_end**2 * c0 + lv.beta_end**2
        v = torch.where(mask, v * C_e / torch.where(mask, C_s, torch.ones_like(C_s)), torch.zeros_like(v))
        if lv.alpha_next is not None:
            r2 = (lv.alpha_next / lv.alpha_end) ** 2
            v = torch.where(mask, r2 * v + lv.beta_next**2 - r2 * lv.beta_end**2, v)
    return out_scale**2 * v


def _gain(c0: torch.Tensor, mask: torch.Tensor, lv: Level) -> torch.Tensor:
    """Per-mode exact consistency gain ``sqrt(C_e / C_s)`` (0 on a removed zero mode)."""
    C_s = lv.alpha**2 * c0 + lv.beta**2
    C_e = lv.alpha_end**2 * c0 + lv.beta_end**2
    return torch.where(mask, (C_e / torch.where(mask, C_s, torch.ones_like(C_s))).sqrt(), torch.zeros_like(c0))


def _from_x0(x: torch.Tensor, x0: torch.Tensor, a: float, b: float, pred: str) -> torch.Tensor:
    """The model output of prediction type ``pred`` whose ``x0`` is ``x0`` at ``x = a x0 + b eps``."""
    if pred == "sample":
        return x0
    eps = (x - a * x0) / b
    if pred == "epsilon":
        return eps
    if pred == "v_prediction":
        return a * eps - b * x0
    raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {pred!r}")


def _model_output(sched, kind: str, pred: str, t, x: torch.Tensor, target_x: torch.Tensor, lv: Level) -> torch.Tensor:
    """The model output that makes the scheduler's step produce ``target_x`` (its consistency map) from ``x``."""
    if kind == "lcm":
        c_skip, c_out = (float(c) for c in sched.get_scalings_for_boundary_condition_discrete(t))
        x0 = (target_x - c_skip * x) / c_out
        return _from_x0(x, x0, lv.alpha, lv.beta, pred)
    if kind == "tcd":
        a, b, a_s, b_s = lv.alpha, lv.beta, lv.alpha_end, lv.beta_end
        det = a_s * b - b_s * a  # != 0: the end level s' lies strictly below t
        x0 = (b * target_x - b_s * x) / det
        return _from_x0(x, x0, a, b, pred)
    if kind == "trigflow":
        s = float(t)
        return (math.cos(s) * x - target_x) / math.sin(s)
    sigma = sched.sigmas[sched.step_index]
    c_skip, c_out = (float(c) for c in sched.get_scalings_for_boundary_condition(sigma))
    return (target_x - c_skip * x) / c_out


def consistency_runner(scheduler, *, kind: str, end: str = "sigma = 0 (data)", prediction_type: str | None,
                       sampler_kwargs: dict, name: str | None) -> Runner:
    """The ``diffusers`` adapter for consistency schedulers (module docstring): a :class:`Runner` whose
    model is the exact consistency function and whose ``schedule`` is the exact end law (:func:`exact_law`).

    ``kind`` is the parametrisation (:data:`CONSISTENCY_KINDS`, from the registry) and ``end`` the end level
    in words (for the report).  A class gets its default config minus the image-range clamps (``clip_sample``,
    ``thresholding``, ``clip_denoised``); an instance is run as configured.  ``prediction_type`` overrides
    LCM/TCD's (SCM: ``"trigflow"`` only).  TCD's gamma is ``sampler_kwargs["eta"]`` (default: its step's 0.3).
    """
    if kind not in CONSISTENCY_KINDS:
        raise ValueError(f"kind must be one of {CONSISTENCY_KINDS}, got kind={kind!r}")
    from_class = isinstance(scheduler, type)
    if from_class:
        scheduler = scheduler()
    cls = type(scheduler)
    config = clean_config(scheduler)
    if from_class:
        # as for every diffusers class: the image-range clamps (CM's default clip_denoised=True clamps the
        # denoised sample to [-1, 1]) are not part of the solver and make it non-linear; an instance is
        # validated exactly as configured
        config.update({k: False for k in ("clip_sample", "thresholding", "clip_denoised") if config.get(k)})
    if prediction_type is not None:
        allowed = ("trigflow",) if kind == "trigflow" else () if kind == "cm" else ("epsilon", "v_prediction", "sample")
        if prediction_type not in allowed:
            raise ValueError(f"prediction_type for {cls.__name__} must be one of {allowed}, got {prediction_type!r}")
        config["prediction_type"] = prediction_type
    template = cls.from_config(config) if hasattr(cls, "from_config") else copy.deepcopy(scheduler)
    pred = str(config.get("prediction_type", "epsilon"))
    sampler_kwargs = dict(sampler_kwargs or {})
    eta = _eta(cls, sampler_kwargs) if kind == "tcd" else 0.0
    takes_gen = accepts(cls.step, "generator")
    if kind in ("lcm", "tcd"):
        max_steps = int(config.get("original_inference_steps", config.get("num_train_timesteps", 1000)))
    else:
        max_steps = int(config.get("num_train_timesteps", 1000))

    def plan(steps: int):
        sched = prepared(template, steps, **_set_timesteps_kwargs(kind, steps))
        return sched, *consistency_levels(sched, kind, steps, eta)

    def model_output(target, levels):
        c0 = target.c0(dtype=torch.float64)
        mask = target.mode_mask()

        def output(sched, i, t, x):
            if hasattr(sched, "scale_model_input"):  # SCM has none (its pipeline scales the model input itself)
                sched.scale_model_input(x, t)  # part of the loop (step-index bookkeeping); the exact model inverts any c_in
            target_x = apply_gain(x, _gain(c0, mask, levels[i]).to(x.dtype), target.d)
            return _model_output(sched, kind, pred, t, x, target_x, levels[i])

        return output

    def run(target, steps, z, generator):
        if not isinstance(target, GaussianField):
            raise TypeError(f"the exact consistency function is known in closed form for Gaussian fields only, "
                            f"got target={type(target).__name__}")
        sched, levels, v_start, out_scale = plan(steps)
        kw = dict(sampler_kwargs)
        if takes_gen:
            kw.setdefault("generator", generator)
        timesteps = _loop_timesteps(sched, kind)[: len(levels)]
        return sample(sched, timesteps, z * math.sqrt(v_start), model_output(target, levels), kw) * out_scale

    def schedule(target, steps) -> Schedule:
        """The last step as an exact flow: from the exact law of its input (``x~ = x / alpha`` units, the
        output scale folded into ``v_T``) at ``sigma_s = beta / alpha`` to ``sigma_e^2``."""
        _, levels, v_start, out_scale = plan(steps)
        c0 = target.c0(dtype=torch.float64)
        last = levels[-1]
        v_in = exact_law(c0, levels[:-1], v_start) if len(levels) > 1 else torch.full_like(c0, v_start)
        sigma_s = abs(last.beta / last.alpha)
        sigma_e = last.beta_end / last.alpha_end
        v_T = v_in / last.alpha**2 * (last.alpha_end * out_scale) ** 2
        return Schedule(brownian_in_sigma(sigma_s), v_T * target.mode_mask(), sigma_e**2, sde=False, sigma_last=None)

    info: dict[str, Any] = {"family": "consistency", "kind": kind, "prediction_type": pred, "max_steps": max_steps,
                            "end": end, "config": plain_config(config)}
    if kind == "tcd":
        info["eta"] = eta
    return Runner(name or cls.__name__, "diffusers", run, schedule, None,
                  deterministic=(kind == "tcd" and eta == 0.0), info=info,
                  run_noise=noise_run(scheduler_module(cls), run))
