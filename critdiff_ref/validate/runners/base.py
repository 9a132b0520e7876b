"""The record every adapter returns (:class:`Runner`), the exact flow a run discretises
(:class:`Schedule`), the exact EDM denoiser the adapters drive, and the helpers every runner module
shares: signature inspection, the VE-in-sigma process, noise routing, loading ``"pkg.module:attr"``
(THEORY 1, 2).
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

import torch

from ..._user_code import import_object
from ...processes import Brownian, Process
from ...scores import exact_score
from ...targets import GaussianField

__all__ = ["Schedule", "Runner", "exact_denoiser", "supplied_noise", "accepts", "callable_name", "brownian_in_sigma",
           "event_shape", "load_object"]


@dataclass(frozen=True)
class Schedule:
    """The continuous flow a run discretises: exact end law from ``N(0, v_T)`` at ``process.T`` to ``t_min``.

    ``v_T`` is a float or a per-mode tensor (``(L,)*d``) in the process's own units; ``sde`` selects
    the reverse-SDE limit (start memory ``(C/C_T)^2``) instead of the PF-ODE one (``C/C_T``).
    ``t_min`` is the END level: where the sampler's last step lands (not necessarily the data, ``t = 0``),
    and ``out_scale`` the factor between the process's state there and the sampler's output (a VP-internal
    scheduler returns ``sqrt(abar_end) x~``), so the exact end variance is ``out_scale^2 v_flow(t_min)``.
    ``None`` fields (generator adapter) mean "unknown": the floor is the data law itself.
    """

    process: Process | None
    v_T: Any
    t_min: float
    sde: bool = False
    sigma_last: float | None = None  # diffusers: last noise level before the final jump to sigma = 0
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.t_min) and self.t_min >= 0.0):
            raise ValueError(f"t_min (the end level) must be a finite number >= 0, got t_min={self.t_min!r}")
        if self.process is not None and not self.t_min < float(self.process.T):
            raise ValueError(f"t_min (the end level) must lie below the start T={float(self.process.T)!r}, got t_min={self.t_min!r}")
        if not (math.isfinite(self.out_scale) and self.out_scale > 0.0):
            raise ValueError(f"out_scale must be a finite number > 0, got out_scale={self.out_scale!r}")


@dataclass
class Runner:
    """A sampler wrapped to ``(target, steps, z, generator) -> x_0`` (module docstring)."""

    name: str
    adapter: str
    run: Callable[[Any, int, torch.Tensor, torch.Generator | None], torch.Tensor]
    schedule: Callable[[Any, int], Schedule]
    order: float | None = None
    deterministic: bool | None = None
    info: dict = dc_field(default_factory=dict)
    # score samplers that draw their noise through ``noise=``: the raw call, for exact weak-order probing
    noise_sampler: Callable | None = dc_field(default=None, repr=False)
    # ``run_noise(target, steps, z, draw) -> x_0``: a run whose every standard-normal draw is
    # ``draw(shape, dtype, device)``, in call order (exact noise probing of stochastic samplers); None
    # when the sampler's noise cannot be supplied (see ``checks.probes.probe_noise_covariance``)
    run_noise: Callable | None = dc_field(default=None, repr=False)

    def __call__(self, target, steps: int, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.run(target, steps, z, generator)


def accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def callable_name(obj) -> str:
    """The name a runner gets by default: qualified name, name, or type name."""
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__


# -- exact models ------------------------------------------------------------------------------
def brownian_in_sigma(sigma_max: float) -> Brownian:
    """VE in sigma: ``Brownian(1, sigma_max^2)``, time ``t = sigma^2`` (THEORY 1)."""
    return Brownian(sigma=1.0, T=max(float(sigma_max), 1e-12) ** 2)


def exact_denoiser(target, sigma_max: float) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """EDM denoiser ``D(x, sigma) = x + sigma^2 s(x)`` of ``p_0 * N(0, sigma^2)`` for ``sigma <= sigma_max``."""
    process = brownian_in_sigma(sigma_max)
    score = exact_score(target, process)

    def model(x: torch.Tensor, sigma) -> torch.Tensor:
        s = float(sigma.reshape(-1)[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        if s == 0.0:
            return x
        return x + s * s * score(x, min(s * s, process.T))

    return model


@contextmanager
def supplied_noise(module, draw: Callable):
    """Route the module's ``randn_tensor`` (diffusers' noise source, imported into each scheduler's
    module) to ``draw(shape, dtype, device)`` for the duration of the block: exact noise probing."""
    original = module.randn_tensor

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None, **_):
        return draw(tuple(shape), dtype, device)

    module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        module.randn_tensor = original


def event_shape(target) -> tuple[int, ...]:
    """The event shape of one sample: the lattice of a Gaussian field, ``()`` for a 1-D target."""
    return tuple(target.shape) if isinstance(target, GaussianField) else ()


def load_object(spec: str, what: str = "sampler") -> Any:
    """Import ``"pkg.module:attr"`` from the current folder or the import path; one-line ValueError naming
    ``what`` (``sampler``, ``scheduler``) otherwise (:func:`critdiff_ref._user_code.import_object`)."""
    return import_object(spec, what)
