"""Adapters: turn a user's sampler into one uniform runner for the validation checks (THEORY 1, 2).

Every adapter returns a :class:`Runner`: ``runner(target, steps, z, generator) -> x_0`` maps
white noise ``z`` (``(n, *event)``, unit variance per Fourier mode, zero mode removed for a critical
field) to samples, by building the start ``x_T`` the convention needs, the exact model the sampler
expects, and calling the sampler.  ``runner.schedule(target, steps)`` describes, in exact terms,
which continuous flow the run discretises (:class:`Schedule`): a process, the start variance
``v_T`` and the end time ``t_min``, so that the error the schedule's endpoints imply (finite
``T``/``sigma_max``, ``t_min``/``sigma_min > 0``, ``abar_T > 0``) is computed exactly
(``ode_variance_limit`` / ``sde_variance_limit``) and separated from the sampler's own error.

Conventions (handled here and in :mod:`.schedulers`, documented once):

- ``score``: ``sampler(score, process, x_T, steps=N, **kw)`` (``generator=`` passed when the
  sampler accepts it) with ``score(x, t)`` the exact score; start ``x_T ~ N(0, Xi(T))`` per mode
  (``start="noise"``, the usual one) or ``N(0, C_T)`` (``start="exact"``); ``t_min`` read from
  ``sampler_kwargs`` (default 0).
- ``denoiser`` (alias ``k-diffusion``): ``sampler(model, x, sigmas, **kw)`` with the EDM /
  k-diffusion denoiser ``model(x, sigma) = D(x, sigma) = x + sigma^2 score`` of the VE-in-sigma
  marginal ``p_0 * N(0, sigma^2)``; ``x = sigma_max z``; Karras sigmas (rho = 7) with a 0 appended.
  Internally the score is ``exact_score(target, Brownian(1, sigma_max^2))`` at time ``t = sigma^2``.
  A sampler taking k-diffusion's ``noise_sampler(sigma, sigma_next)`` is noise-probed exactly, with the
  queries answered as increments of one Brownian path in sigma (:mod:`.sde_solvers`).
- ``diffusers``: a diffusers scheduler (instance or class); conventions in :mod:`.schedulers`
  (flow-matching schedulers: :mod:`.flow`).
- ``velocity``: ``sampler(velocity, x_1, sigmas, **kw)`` with the exact rectified-flow velocity
  ``E[z - x_0 | x_t]``, ``x_1 = z`` and ``sigmas`` from 1 to 0 (:mod:`.flow`).
- ``generator``: ``sampler(n, generator) -> x_0`` (a user's trained model plus sampler), checked
  against the data law itself (its schedule is unknown: no floor).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch

from .. import lattice
from ..processes import VE, Process
from ..scores import exact_score
from ..targets import GaussianField
from .runner import Runner, Schedule, _accepts, _brownian, _name, exact_denoiser
from .flow import velocity_runner
from .schedulers import _diffusers_runner
from .sde_solvers import brownian_noise_run

__all__ = [
    "ADAPTERS",
    "make_runner",
    "load_object",
    "karras_sigmas",
    "edm_euler",
    "edm_heun",
]

ADAPTERS = ("score", "denoiser", "k-diffusion", "diffusers", "generator", "velocity")


def load_object(spec: str) -> Any:
    """Import ``"pkg.module:attr"`` (``attr`` may be dotted); ValueError naming the module or attribute
    that is missing (the command line and the pytest plugin put the current folder on ``sys.path``)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"sampler must be given as 'pkg.module:attr', got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        why = (f"no module named {mod_name!r} (run from the folder that holds it, or add that folder to PYTHONPATH)"
               if missing and mod_name.startswith(missing) else f"importing {mod_name!r} failed: {err}")
        raise ValueError(f"sampler {spec!r}: {why}") from err
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([mod_name, *attr.split(".")[:i]])
            raise ValueError(f"sampler {spec!r}: {owner!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


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


# -- start laws ---------------------------------------------------------------------------------
def _start_variance(target, process: Process, start: str):
    if start == "noise":
        return float(process.Xi(float(process.T)))
    if start == "exact":
        if isinstance(target, GaussianField):
            return target.mode_variance(process, float(process.T))
        a, Xi = float(process.a(float(process.T))), float(process.Xi(float(process.T)))
        return a * a * _target_variance(target) + Xi
    raise ValueError(f"start must be 'noise' or 'exact', got start={start!r}")


def _target_variance(target) -> float:
    if hasattr(target, "cumulant"):
        return float(target.cumulant(2))
    return float(target.moment(2)) - float(target.moment(1)) ** 2


def _scale(target, z: torch.Tensor, v) -> torch.Tensor:
    """``z`` (white) coloured to per-mode variance ``v`` (a float or a ``(L,)*d`` tensor)."""
    if isinstance(v, torch.Tensor) and isinstance(target, GaussianField):
        gain = v.to(dtype=z.dtype, device=z.device).sqrt()
        return lattice.ifft(lattice.fft(z, target.d) * gain, target.d).real.to(z.dtype)
    return math.sqrt(float(v)) * z


# -- score adapter ------------------------------------------------------------------------------
def _score_runner(sampler, *, process: Process | None, start: str, sampler_kwargs: dict, order, name) -> Runner:
    process = VE(sigma=25.0, T=1.0) if process is None else process
    if not isinstance(process, Process):
        raise TypeError(f"process must implement the Process protocol, got {type(process).__name__}")
    if start not in ("noise", "exact"):
        raise ValueError(f"start must be 'noise' or 'exact', got start={start!r}")
    t_min = float(sampler_kwargs.get("t_min", 0.0))
    takes_gen = _accepts(sampler, "generator")
    scores: dict = {}

    def run(target, steps, z, generator, **extra):
        key = id(target)
        if key not in scores:
            scores[key] = (target, exact_score(target, process))
        x_T = _scale(target, z, _start_variance(target, process, start))
        kw = {**sampler_kwargs, **extra}
        if takes_gen:
            kw.setdefault("generator", generator)
        return sampler(scores[key][1], process, x_T, steps=steps, **kw)

    def run_noise(target, steps, z, draw):
        return run(target, steps, z, None, noise=lambda x, generator: draw(tuple(x.shape), x.dtype, x.device))

    def schedule(target, steps):
        # a stochastic sampler discretises the reverse SDE, whose end law forgets the start faster
        return Schedule(process, _start_variance(target, process, start), t_min, sde=runner.deterministic is False)

    def noise_sampler(score, process_, x_T, steps, **kw):
        return sampler(score, process_, x_T, steps=steps, **{**sampler_kwargs, **kw})

    takes_noise = _accepts(sampler, "noise")
    runner = Runner(name or _name(sampler), "score", run, schedule, order, info={"process": repr(process), "start": start},
                    noise_sampler=noise_sampler if takes_noise else None, run_noise=run_noise if takes_noise else None)
    return runner


# -- denoiser (k-diffusion / EDM) adapter --------------------------------------------------------
def _denoiser_runner(sampler, *, sigma_min: float, sigma_max: float, rho: float, sampler_kwargs: dict, order, name) -> Runner:
    if not (0.0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    takes_gen = _accepts(sampler, "generator")
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
        # disjoint queries, as every ancestral sampler makes, that of independent draws): sde_solvers
        return brownian_noise_run(lambda z_, ns: run(target, steps, z_, None, noise_sampler=ns), draw, z)

    def schedule(target, steps):
        # VE in sigma: time t = sigma^2 of Brownian(1); start N(0, sigma_max^2) = Xi(T); ends at sigma = 0.
        # An ancestral (stochastic) sampler discretises the reverse SDE.
        return Schedule(_brownian(sigma_max), sigma_max**2, 0.0, sde=runner.deterministic is False)

    info = {"sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho}
    runner = Runner(name or _name(sampler), "denoiser", run, schedule, order, info=info,
                    run_noise=run_noise if _accepts(sampler, "noise_sampler") else None)
    return runner


# -- black-box generator -------------------------------------------------------------------------
def _generator_runner(sampler, *, sampler_kwargs: dict, order, name) -> Runner:
    def run(target, steps, z, generator):
        return sampler(z.shape[0], generator, **sampler_kwargs)

    def schedule(target, steps):
        return Schedule(None, None, 0.0)

    return Runner(name or _name(sampler), "generator", run, schedule, order, deterministic=False)


def make_runner(
    sampler,
    adapter: str = "score",
    *,
    process: Process | None = None,
    start: str = "noise",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    prediction_type: str | None = None,
    sampler_kwargs: dict | None = None,
    order: float | None = None,
    name: str | None = None,
) -> Runner:
    """Wrap ``sampler`` (an object or a ``"pkg.module:attr"`` string) with the named adapter.

    A :class:`Runner` is already wrapped: it is returned as it is (``order`` / ``name`` override its own).
    """
    if isinstance(sampler, Runner):
        if order is not None:
            sampler.order = order
        if name is not None:
            sampler.name = name
        return sampler
    if isinstance(sampler, str):
        sampler = load_object(sampler)
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter must be one of {ADAPTERS}, got adapter={adapter!r}")
    if order is not None and not (isinstance(order, (int, float)) and order > 0):
        raise ValueError(f"order must be a number > 0 or None, got order={order!r}")
    kw = dict(sampler_kwargs or {})
    if adapter == "diffusers":
        return _diffusers_runner(sampler, prediction_type=prediction_type, sampler_kwargs=kw, order=order, name=name)
    if not callable(sampler):
        raise TypeError(f"sampler must be callable for the {adapter!r} adapter, got {type(sampler).__name__}")
    if adapter == "velocity":
        return velocity_runner(sampler, sampler_kwargs=kw, order=order, name=name)
    if adapter == "score":
        return _score_runner(sampler, process=process, start=start, sampler_kwargs=kw, order=order, name=name)
    if adapter in ("denoiser", "k-diffusion"):
        return _denoiser_runner(sampler, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                                sampler_kwargs=kw, order=order, name=name)
    return _generator_runner(sampler, sampler_kwargs=kw, order=order, name=name)


