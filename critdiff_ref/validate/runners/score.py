"""The ``score`` adapter: ``sampler(score, process, x_T, steps=N, **kw) -> x_0`` on the exact score (THEORY 1, 2).

``generator=`` is passed when the sampler accepts it; ``score(x, t)`` is the exact score of the target
under ``process`` (default ``VE(25, 1)``).  Start ``x_T ~ N(0, Xi(T))`` per mode (``start="noise"``, the
usual one) or ``N(0, C_T)`` (``start="exact"``); ``t_min`` read from ``sampler_kwargs`` (default 0).
A sampler taking ``noise=`` (``noise(x, generator)`` standard normals like ``x``) is noise-probed exactly
and gets the exact weak-order row.
"""

from __future__ import annotations

import math

import torch

from ... import lattice
from ...processes import VE, Process
from ...scores import exact_score
from ...targets import GaussianField
from .base import Runner, Schedule, accepts, callable_name

__all__ = ["score_runner", "start_variance", "colour"]


def start_variance(target, process: Process, start: str):
    """Per-mode variance of ``x_T``: ``Xi(T)`` (``start="noise"``) or the exact ``C_T`` (``start="exact"``)."""
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


def colour(target, z: torch.Tensor, v) -> torch.Tensor:
    """``z`` (white) coloured to per-mode variance ``v`` (a float or a ``(L,)*d`` tensor)."""
    if isinstance(v, torch.Tensor) and isinstance(target, GaussianField):
        gain = v.to(dtype=z.dtype, device=z.device).sqrt()
        return lattice.ifft(lattice.fft(z, target.d) * gain, target.d).real.to(z.dtype)
    return math.sqrt(float(v)) * z


def score_runner(sampler, *, process: Process | None = None, start: str = "noise", sampler_kwargs: dict | None = None,
                 order: float | None = None, name: str | None = None) -> Runner:
    """Wrap ``sampler(score, process, x_T, steps=N, **kw)`` (module docstring)."""
    process = VE(sigma=25.0, T=1.0) if process is None else process
    if not isinstance(process, Process):
        raise TypeError(f"process must implement the Process protocol, got {type(process).__name__}")
    if start not in ("noise", "exact"):
        raise ValueError(f"start must be 'noise' or 'exact', got start={start!r}")
    sampler_kwargs = dict(sampler_kwargs or {})
    t_min = float(sampler_kwargs.get("t_min", 0.0))
    takes_gen = accepts(sampler, "generator")
    scores: dict = {}

    def run(target, steps, z, generator, **extra):
        key = id(target)
        if key not in scores:
            scores[key] = (target, exact_score(target, process))
        x_T = colour(target, z, start_variance(target, process, start))
        kw = {**sampler_kwargs, **extra}
        if takes_gen:
            kw.setdefault("generator", generator)
        return sampler(scores[key][1], process, x_T, steps=steps, **kw)

    def run_noise(target, steps, z, draw):
        return run(target, steps, z, None, noise=lambda x, generator: draw(tuple(x.shape), x.dtype, x.device))

    def schedule(target, steps):
        # a stochastic sampler discretises the reverse SDE, whose end law forgets the start faster
        return Schedule(process, start_variance(target, process, start), t_min, sde=runner.deterministic is False)

    def noise_sampler(score, process_, x_T, steps, **kw):
        return sampler(score, process_, x_T, steps=steps, **{**sampler_kwargs, **kw})

    takes_noise = accepts(sampler, "noise")
    runner = Runner(name or callable_name(sampler), "score", run, schedule, order,
                    info={"process": repr(process), "start": start},
                    noise_sampler=noise_sampler if takes_noise else None, run_noise=run_noise if takes_noise else None)
    return runner
