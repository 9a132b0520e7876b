"""The ``generator`` adapter: ``sampler(n, generator) -> x_0``, a user's trained model plus sampler, checked
against the data law itself (its schedule is unknown: no floor; THEORY 2, 6, 8)."""

from __future__ import annotations

from .base import Runner, Schedule, callable_name

__all__ = ["generator_runner"]


def generator_runner(sampler, *, sampler_kwargs: dict | None = None, order: float | None = None,
                     name: str | None = None) -> Runner:
    """Wrap ``sampler(n, generator, **sampler_kwargs) -> (n, *event)``; never deterministic."""
    sampler_kwargs = dict(sampler_kwargs or {})

    def run(target, steps, z, generator):
        return sampler(z.shape[0], generator, **sampler_kwargs)

    def schedule(target, steps):
        return Schedule(None, None, 0.0)

    return Runner(name or callable_name(sampler), "generator", run, schedule, order, deterministic=False)
