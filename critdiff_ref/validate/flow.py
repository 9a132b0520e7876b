"""Flow matching on the rectified flow ``x_t = (1 - t) x_0 + t z`` (THEORY 1, 2): the ``velocity``
adapter for users' own flow samplers and the runner for diffusers' FlowMatch* schedulers.

- ``velocity``: ``sampler(velocity, x_1, sigmas, **kw) -> x_0`` with ``velocity(x, t)`` the exact
  ``E[z - x_0 | x_t]`` (:func:`critdiff_ref.scores.exact_velocity`), ``x_1 = z`` (exact: ``C_1 = 1``) and
  ``sigmas`` decreasing from 1 to 0 (:func:`flow_sigmas`: uniform, optionally shifted).  The exact flow
  from ``t1`` to ``t2`` multiplies a mode by ``sqrt(C_t2 / C_t1)``, so the floor is
  ``ode_variance_limit(RectifiedFlow(T), v_T, t_min)``: zero when the run starts at ``t = 1`` and ends at 0.
- diffusers ``FlowMatchEulerDiscrete`` / ``FlowMatchHeunDiscrete`` / ``FlowMatchLCM`` (no ``alphas_cumprod``):
  the standard loop (``set_timesteps(N[, mu])``, ``step(out, t, x).prev_sample``, no input scaling, start
  ``x = z``) with the model evaluated at the scheduler's own ``sigmas[step_index]`` (float32, as it steps).
  ``prediction_type="velocity"`` (default; LCM: ``"consistency"``): ``out = dx/dsigma`` of the exact flow,
  i.e. ``v(x, sigma)`` (``-v(x, 1 - sigma)`` with ``invert_sigmas``, whose sigma is the data fraction).
  ``"consistency"``: ``out = (x - f(x, sigma)) / sigma`` with ``f`` the exact consistency function (the
  PF-ODE map to ``t_min = 0``, :func:`exact_consistency`), so the scheduler's ``x0 = x - sigma out`` is ``f``.
  ``use_dynamic_shifting`` needs ``sampler_kwargs={"mu": ...}`` (passed to ``set_timesteps``).
  With the consistency model the run is exact at every step count (float32 rounding): validate() checks
  that (its consistency check) instead of an order.  ``stochastic_sampling=True`` is the same
  denoise/re-noise step as LCM: on the velocity model it does not converge to the target law.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Callable

import numpy as np
import torch

from .. import lattice
from ..processes import RectifiedFlow
from ..scores import exact_velocity
from ..targets import Density1D, GaussianField, GaussianMixture1D, Phi4Lattice, Phi4ZeroD, TwoGaussianMixture
from .runner import Runner, Schedule, _accepts, _name, supplied_noise

__all__ = [
    "FLOW_PREDICTIONS",
    "shift_map",
    "flow_sigmas",
    "flow_euler",
    "flow_heun",
    "exact_consistency",
    "velocity_runner",
    "is_flow_scheduler",
    "flow_scheduler_runner",
]

FLOW_PREDICTIONS = ("velocity", "consistency")


def shift_map(t, shift: float):
    """SD3 time shift ``t -> shift t / (1 + (shift - 1) t)`` (THEORY 1): fixes 0 and 1, grid only."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def flow_sigmas(n: int, shift: float = 1.0) -> torch.Tensor:
    """``n + 1`` decreasing flow times from 1 to 0: uniform, then :func:`shift_map` (float64)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got n={n!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got shift={shift!r}")
    return shift_map(torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64), float(shift))


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


# -- exact consistency function -----------------------------------------------------------------
def _normal_cdfs(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Phi(u), 1 - Phi(u))``, each accurate in its own tail."""
    return 0.5 * torch.erfc(-u / math.sqrt(2.0)), 0.5 * torch.erfc(u / math.sqrt(2.0))


def _transport(cdf_t: Callable, cdf_0: Callable, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``F_0^{-1}(F_t(x))`` by bisection (100 halvings of ``[lo, hi]``); CDFs as ``(F, 1 - F)`` pairs,
    matched in the smaller tail so that both tails keep their relative precision."""
    F, S = cdf_t(x)
    left = F <= S
    target = torch.where(left, F, S).clamp_min(1e-300).log()
    a, b = torch.full_like(x, lo), torch.full_like(x, hi)
    for _ in range(100):
        m = 0.5 * (a + b)
        F0, S0 = cdf_0(m)
        # increasing in m in both branches: log F_0(m) - log F_t(x), log S_t(x) - log S_0(m)
        g = torch.where(left, F0.clamp_min(1e-300).log() - target, target - S0.clamp_min(1e-300).log())
        a, b = torch.where(g < 0, m, a), torch.where(g < 0, b, m)
    return 0.5 * (a + b)


def _mixture_consistency(mix: GaussianMixture1D, t_min: float) -> Callable:
    w, m, s = (torch.tensor(v, dtype=torch.float64) for v in (mix.weights, mix.means, mix.stds))

    def cdf(t: float) -> Callable:
        a, sd = 1.0 - t, torch.sqrt((1.0 - t) ** 2 * s * s + t * t)

        def F(x: torch.Tensor):
            lo, up = _normal_cdfs((x.to(torch.float64).unsqueeze(-1) - a * m) / sd)
            return (w * lo).sum(-1), (w * up).sum(-1)

        return F

    span = float(m.abs().max() + 40.0 * s.max() + 40.0)

    def f(x: torch.Tensor, t: float) -> torch.Tensor:
        if t == t_min:
            return x
        return _transport(cdf(t), cdf(t_min), x.to(torch.float64), -span, span).to(x.dtype)

    return f


def _density_consistency(density: Density1D, t_min: float) -> Callable:
    """1-D quadrature density: ``F_t(x) = E_Z[F_0((x - t Z)/(1 - t))]`` (Gauss–Hermite, 80 nodes) with
    ``F_0`` the trapezoidal CDF on the density's grid, linearly interpolated; ``F_1 = Phi``."""
    y = density.y
    p = torch.exp(density.log_p - density.log_Z)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(0.5 * (p[1:] + p[:-1]) * density.h, 0)])
    cum = cum / cum[-1]
    nodes, weights = np.polynomial.hermite.hermgauss(80)
    z = torch.tensor(nodes * math.sqrt(2.0), dtype=torch.float64)
    wz = torch.tensor(weights / math.sqrt(math.pi), dtype=torch.float64)

    def F0(u: torch.Tensor) -> torch.Tensor:
        u = u.clamp(float(y[0]), float(y[-1]))
        i = torch.searchsorted(y, u.contiguous()).clamp(1, len(y) - 1)
        frac = (u - y[i - 1]) / density.h
        return cum[i - 1] + frac * (cum[i] - cum[i - 1])

    def cdf(t: float) -> Callable:
        def F(x: torch.Tensor):
            if t == 1.0:
                return _normal_cdfs(x)
            if t == 0.0:
                v = F0(x)
            else:
                v = (wz * F0((x.unsqueeze(-1) - t * z) / (1.0 - t))).sum(-1)
            return v, 1.0 - v

        return F

    span = float(max(abs(float(y[0])), abs(float(y[-1]))) + 40.0)

    def f(x: torch.Tensor, t: float) -> torch.Tensor:
        if t == t_min:
            return x
        return _transport(cdf(t), cdf(t_min), x.to(torch.float64), -span, span).to(x.dtype)

    return f


def exact_consistency(target, t_min: float = 0.0) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """Exact consistency function ``f(x_t, t)``: the rectified-flow PF-ODE map from ``t`` to ``t_min`` (THEORY 1).

    Gaussian field (and lattice phi^4 at ``lam = 0``): per mode ``sqrt(C_tmin / C_t)``, closed form.  1-D
    targets: the PF-ODE map is the monotone transport ``F_tmin^{-1}(F_t(x))`` (a 1-D flow keeps the
    order of points, so it matches CDFs): closed-form CDFs for Gaussian mixtures (to rounding), the
    density's own grid for 0-D phi^4 / quadrature densities (linear interpolation, error O(h^2)).
    """
    if not (isinstance(t_min, (int, float)) and 0.0 <= float(t_min) < 1.0):
        raise ValueError(f"t_min must lie in [0, 1), got t_min={t_min!r}")
    t_min = float(t_min)
    if isinstance(target, Phi4Lattice) and target.lam == 0.0:
        target = target.free_field()
    if isinstance(target, GaussianField):
        process = RectifiedFlow(1.0)
        C_min = target.mode_variance(process, t_min)
        mask = target.mode_mask()

        def f_field(x: torch.Tensor, t: float) -> torch.Tensor:
            C_t = target.mode_variance(process, float(t))
            gain = torch.where(mask, (C_min / torch.where(mask, C_t, torch.ones_like(C_t))).sqrt(), torch.zeros_like(C_t))
            return lattice.real_filter(x, gain.to(dtype=x.dtype, device=x.device), target.d)

        return f_field
    if isinstance(target, TwoGaussianMixture):
        return _mixture_consistency(target.as_mixture(), t_min)
    if isinstance(target, GaussianMixture1D):
        return _mixture_consistency(target, t_min)
    if isinstance(target, Phi4ZeroD):
        return _density_consistency(target.density(), t_min)
    if isinstance(target, Density1D):
        return _density_consistency(target, t_min)
    raise TypeError(f"no exact consistency function for target of type {type(target).__name__}")


# -- velocity adapter ---------------------------------------------------------------------------
def _flow_schedule(T: float, v_T: float, t_min: float) -> Schedule:
    # Start N(0, v_T) at T; at T = 1 the start is exact (C_1 = 1), so the ODE and SDE end laws coincide
    # (delta_T = 0) and the ODE limit is used for every flow sampler (Gamma(1) is infinite).
    return Schedule(RectifiedFlow(T), v_T, t_min, sde=False)


def velocity_runner(sampler, *, shift: float = 1.0, sampler_kwargs: dict | None = None,
                    order: float | None = None, name: str | None = None) -> Runner:
    """Wrap ``sampler(velocity, x_1, sigmas, **kw) -> x_0`` (module docstring); ``sigmas = flow_sigmas(N, shift)``.

    A sampler taking ``noise_sampler=`` (k-diffusion style, ``noise_sampler(sigma, sigma_next)``) is noise-probed.
    """
    if not callable(sampler):
        raise TypeError(f"sampler must be callable for the 'velocity' adapter, got {type(sampler).__name__}")
    flow_sigmas(1, shift)  # validates shift
    process = RectifiedFlow(1.0)
    kw0 = dict(sampler_kwargs or {})
    takes_gen = _accepts(sampler, "generator")
    models: dict = {}

    def run(target, steps, z, generator, **extra):
        key = id(target)
        if key not in models:
            models[key] = (target, exact_velocity(target, process))
        sigmas = flow_sigmas(steps, shift).to(dtype=z.dtype, device=z.device)
        kw = {**kw0, **extra}
        if takes_gen:
            kw.setdefault("generator", generator)
        return sampler(models[key][1], z, sigmas, **kw)

    def run_noise(target, steps, z, draw):
        return run(target, steps, z, None, noise_sampler=lambda sigma, sigma_next: draw(tuple(z.shape), z.dtype, z.device))

    def schedule(target, steps):
        return _flow_schedule(1.0, 1.0, 0.0)

    return Runner(name or _name(sampler), "velocity", run, schedule, order, info={"shift": shift},
                  run_noise=run_noise if _accepts(sampler, "noise_sampler") else None)


# -- diffusers FlowMatch* schedulers ------------------------------------------------------------
# Rectified-flow schedulers outside the FlowMatch* family that run the one-call-per-timestep loop on the
# velocity: LTX's Euler ancestral RF (sigma in [0, 1], re-noising to the next sigma; first order).
FLOW_VARIANTS = frozenset({"LTXEulerAncestralRFScheduler"})


def is_flow_scheduler(scheduler) -> bool:
    """A diffusers flow-matching scheduler this runner fits: no ``alphas_cumprod`` and a ``FlowMatch*`` class (or a
    subclass of one).  Other flow-shift configs (Helios' multi-stage pyramid schedulers, ``set_timesteps`` per
    stage) do not run the one-call-per-timestep loop and are left to the diffusers adapter's TypeError."""
    if hasattr(scheduler, "alphas_cumprod"):
        return False
    cls = scheduler if isinstance(scheduler, type) else type(scheduler)
    return any(k.__name__.startswith("FlowMatch") or k.__name__ in FLOW_VARIANTS for k in cls.__mro__)


def flow_scheduler_runner(scheduler, *, prediction_type: str | None, sampler_kwargs: dict, order, name) -> Runner:
    """A diffusers FlowMatch* scheduler instance on the exact velocity or consistency model (module docstring);
    ``order`` is the documented one (the diffusers adapter passes its ``DIFFUSERS_ORDERS`` entry)."""
    cls = type(scheduler)
    config = {k: v for k, v in scheduler.config.items() if k != "_use_default_values"}
    kw0 = dict(sampler_kwargs)
    mu = kw0.pop("mu", None)
    if config.get("use_dynamic_shifting") and mu is None:
        raise ValueError("use_dynamic_shifting=True needs sampler_kwargs={'mu': <float>} (set_timesteps' mu), got mu=None")
    pred = prediction_type or ("consistency" if "LCM" in cls.__name__ else "velocity")
    if pred not in FLOW_PREDICTIONS:
        raise ValueError(f"prediction_type must be one of {FLOW_PREDICTIONS} for a flow-matching scheduler, got {pred!r}")
    stochastic = "LCM" in cls.__name__ or bool(config.get("stochastic_sampling", False))
    if pred == "consistency" and not stochastic:
        raise ValueError(f"prediction_type='consistency' needs a re-noising step (FlowMatchLCM, or stochastic_sampling=True); "
                         f"{cls.__name__} with this config integrates the flow ODE: use prediction_type='velocity'")
    inverted = bool(config.get("invert_sigmas", False))
    takes_gen = _accepts(cls.step, "generator")
    template = cls.from_config(config)
    process = RectifiedFlow(1.0)
    models: dict = {}
    record: dict = {}

    def model_for(target) -> Callable:
        key = id(target)
        if key not in models:
            if pred == "velocity":
                v = exact_velocity(target, process)
                fn = (lambda x, t, sigma: -v(x, t)) if inverted else (lambda x, t, sigma: v(x, t))
            else:
                f = exact_consistency(target, 0.0)
                fn = lambda x, t, sigma: (x - f(x, t)) / sigma if sigma > 0 else torch.zeros_like(x)  # noqa: E731
            models[key] = (target, fn)
        return models[key][1]

    def run(target, steps, z, generator):
        sched = copy.deepcopy(template)
        sched.set_timesteps(steps, **({"mu": mu} if mu is not None else {}))
        model = model_for(target)
        kw = dict(kw0)
        if takes_gen:
            kw.setdefault("generator", generator)
        x = z * float(getattr(sched, "init_noise_sigma", 1.0))
        for t in sched.timesteps:
            idx = sched.step_index if sched.step_index is not None else sched.index_for_timestep(t)
            sigma = float(sched.sigmas[idx])
            out = model(x, 1.0 - sigma if inverted else sigma, sigma)
            x = sched.step(out.to(x.dtype), t, x, **kw).prev_sample
        ends = [float(sched.sigmas[0]), float(sched.sigmas[-1])]
        record[(id(target), steps)] = tuple(1.0 - s if inverted else s for s in ends)
        return x.to(z.dtype)

    def schedule(target, steps):
        if (id(target), steps) not in record:
            shape = target.shape if isinstance(target, GaussianField) else ()
            run(target, steps, torch.zeros((1, *shape), dtype=torch.float64), torch.Generator().manual_seed(0))
        T, t_end = record[(id(target), steps)]
        return _flow_schedule(T, float(getattr(template, "init_noise_sigma", 1.0)) ** 2, t_end)

    # stochastic_sampling / LCM draw with diffusers' randn_tensor imported into the scheduler's module
    module = sys.modules.get(cls.__module__)

    def run_noise(target, steps, z, draw):
        with supplied_noise(module, draw):
            return run(target, steps, z, None)

    info = {"prediction_type": pred, "config": {k: v for k, v in config.items()
                                                if isinstance(v, (int, float, str, bool, type(None)))}}
    if mu is not None:
        info["mu"] = mu
    if pred == "consistency":
        # exact at every step count: validate() replaces the order row by its consistency check (validate.consistency)
        info["family"] = "consistency"
    return Runner(name or cls.__name__, "diffusers", run, schedule, order, info=info,
                  deterministic=False if stochastic else None,  # one step re-noises with sigma_next = 0: looks deterministic
                  run_noise=run_noise if hasattr(module, "randn_tensor") else None)
