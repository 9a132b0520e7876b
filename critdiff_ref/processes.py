"""Forward processes (THEORY 1): the linear SDE ``dx = -gamma(t) x dt + g(t) dW``.

Each process gives ``gamma(t)``, ``g(t)``, ``Gamma(t) = int_0^t gamma``, the mean factor
``a(t) = exp(-Gamma(t))`` and the noise variance
``Xi(t) = int_0^t exp(-2 (Gamma(t) - Gamma(s))) g(s)^2 ds`` in closed form, so that
``x_t = a(t) x_0 + sqrt(Xi(t)) z``.  Times may be Python floats, numpy arrays or torch
tensors; the result has the same kind (float64 numpy for floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Union, runtime_checkable

import numpy as np
import torch

__all__ = ["Process", "OU", "VE", "VP", "Brownian", "RectifiedFlow", "check_time", "forward_sample", "sde_drift", "ode_drift"]

Time = Union[float, np.ndarray, torch.Tensor]
Score = Callable[[torch.Tensor, Time], torch.Tensor]


def _xp(t: Time):
    return torch if isinstance(t, torch.Tensor) else np


def _const(t: Time, c: float) -> Time:
    """The constant ``c`` with the kind and shape of ``t`` (float for scalars)."""
    if isinstance(t, torch.Tensor):
        return torch.full_like(t, c)
    if np.ndim(t) == 0:
        return float(c)
    return np.full(np.shape(t), float(c))


def _finite_positive(name: str, value: float, *, lower: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value > lower if strict else value >= lower)
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {rel} {lower}, got {name}={value}")
    return value


def _variance_time(t: Time) -> Time:
    """``t`` unchanged; ValueError unless every entry is finite and >= 0 (Xi(t) is a variance: a negative
    or NaN time would silently give a negative or NaN one).  Floats, arrays and CPU tensors are checked;
    CUDA tensors are not (the check would synchronise the device)."""
    if isinstance(t, torch.Tensor):
        if t.device.type != "cpu" or t.numel() == 0 or torch.compiler.is_compiling():
            return t
        ok = bool(((t >= 0) & torch.isfinite(t)).all())
    elif isinstance(t, (float, int)):
        ok = math.isfinite(t) and t >= 0
    else:
        arr = np.asarray(t, dtype=np.float64)
        ok = bool(np.all((arr >= 0) & np.isfinite(arr)))
    if not ok:
        raise ValueError(f"t must be finite and >= 0 for the noise variance Xi(t), got t={t}")
    return t


def check_time(process: "Process", t: Time, *, name: str = "t") -> None:
    """Raise ValueError unless every entry of ``t`` lies in ``[0, T]`` and is finite."""
    if isinstance(t, torch.Tensor):
        if t.numel() == 0:
            return
        lo, hi = float(t.min()), float(t.max())
        finite = bool(torch.isfinite(t).all())
    else:
        arr = np.asarray(t, dtype=np.float64)
        if arr.size == 0:
            return
        lo, hi = float(arr.min()), float(arr.max())
        finite = bool(np.isfinite(arr).all())
    if not finite or lo < 0.0 or hi > process.T:
        raise ValueError(f"{name} must lie in [0, T] = [0, {process.T}], got values in [{lo}, {hi}]")


@runtime_checkable
class Process(Protocol):
    """The interface every forward process implements (THEORY 1)."""

    T: float

    def gamma(self, t: Time) -> Time: ...
    def g(self, t: Time) -> Time: ...
    def Gamma(self, t: Time) -> Time: ...
    def a(self, t: Time) -> Time: ...
    def Xi(self, t: Time) -> Time: ...


@dataclass(frozen=True)
class OU:
    """Ornstein–Uhlenbeck: gamma = 1, g = sqrt(2), a = e^{-t}, Xi = 1 - e^{-2t}; stationary N(0, 1)."""

    T: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "T", _finite_positive("T", self.T))

    def gamma(self, t: Time) -> Time:
        return _const(t, 1.0)

    def g(self, t: Time) -> Time:
        return _const(t, math.sqrt(2.0))

    def Gamma(self, t: Time) -> Time:
        return 1.0 * t

    def a(self, t: Time) -> Time:
        return _xp(t).exp(-1.0 * t)

    def Xi(self, t: Time) -> Time:
        t = _variance_time(t)
        return -_xp(t).expm1(-2.0 * t)


@dataclass(frozen=True)
class VE:
    """Variance expanding: gamma = 0, g = sigma^t, a = 1, Xi = (sigma^{2t} - 1) / (2 ln sigma)."""

    sigma: float = 25.0
    T: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _finite_positive("sigma", self.sigma, lower=1.0))
        object.__setattr__(self, "T", _finite_positive("T", self.T))

    def gamma(self, t: Time) -> Time:
        return _const(t, 0.0)

    def g(self, t: Time) -> Time:
        return _xp(t).exp(math.log(self.sigma) * t)

    def Gamma(self, t: Time) -> Time:
        return self.gamma(t)

    def a(self, t: Time) -> Time:
        return _const(t, 1.0)

    def Xi(self, t: Time) -> Time:
        t = _variance_time(t)
        log_s = math.log(self.sigma)
        return _xp(t).expm1(2.0 * log_s * t) / (2.0 * log_s)


@dataclass(frozen=True)
class VP:
    """Variance preserving (DDPM): beta(t) = beta_min + (t/T)(beta_max - beta_min), gamma = beta/2,
    g = sqrt(beta), a = exp(-B/2), Xi = 1 - exp(-B) with B(t) = int_0^t beta.

    THEORY 1 writes beta(t) = beta_min + t (beta_max - beta_min), the T = 1 case of this form.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self) -> None:
        bmin = _finite_positive("beta_min", self.beta_min)
        bmax = _finite_positive("beta_max", self.beta_max)
        if not bmax > bmin:
            raise ValueError(f"need 0 < beta_min < beta_max, got beta_min={bmin}, beta_max={bmax}")
        object.__setattr__(self, "beta_min", bmin)
        object.__setattr__(self, "beta_max", bmax)
        object.__setattr__(self, "T", _finite_positive("T", self.T))

    def beta(self, t: Time) -> Time:
        return self.beta_min + (t / self.T) * (self.beta_max - self.beta_min)

    def B(self, t: Time) -> Time:
        """B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / (2T)."""
        return self.beta_min * t + (self.beta_max - self.beta_min) * t * t / (2.0 * self.T)

    def gamma(self, t: Time) -> Time:
        return 0.5 * self.beta(t)

    def g(self, t: Time) -> Time:
        return _xp(t).sqrt(self.beta(t))

    def Gamma(self, t: Time) -> Time:
        return 0.5 * self.B(t)

    def a(self, t: Time) -> Time:
        return _xp(t).exp(-0.5 * self.B(t))

    def Xi(self, t: Time) -> Time:
        t = _variance_time(t)
        return -_xp(t).expm1(-self.B(t))


@dataclass(frozen=True)
class Brownian:
    """Brownian motion: gamma = 0, g = sigma, a = 1, Xi = sigma^2 t (THEORY 7)."""

    sigma: float = 1.0
    T: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _finite_positive("sigma", self.sigma))
        object.__setattr__(self, "T", _finite_positive("T", self.T))

    def gamma(self, t: Time) -> Time:
        return _const(t, 0.0)

    def g(self, t: Time) -> Time:
        return _const(t, self.sigma)

    def Gamma(self, t: Time) -> Time:
        return self.gamma(t)

    def a(self, t: Time) -> Time:
        return _const(t, 1.0)

    def Xi(self, t: Time) -> Time:
        t = _variance_time(t)
        return self.sigma**2 * t


@dataclass(frozen=True)
class RectifiedFlow:
    """Rectified flow / linear interpolant (flow matching): ``x_t = (1 - t) x_0 + t z``, so
    ``a = 1 - t``, ``Xi = t^2``, ``gamma = 1/(1 - t)``, ``g = sqrt(2t/(1 - t))`` (THEORY 1).

    ``t = 1`` is pure noise; ``gamma`` and ``g`` diverge there while the velocity
    ``v = -(x + t s)/(1 - t)`` (per mode ``x (t - (1 - t) c) / C_t``) stays finite, so samplers that
    start at ``T = 1`` must use the velocity, not the score drift.  ``T`` lies in ``(0, 1]``.
    """

    T: float = 1.0

    def __post_init__(self) -> None:
        T = _finite_positive("T", self.T)
        if T > 1.0:
            raise ValueError(f"T must lie in (0, 1] for the rectified flow (t = 1 is pure noise), got T={T}")
        object.__setattr__(self, "T", T)

    def gamma(self, t: Time) -> Time:
        return 1.0 / (1.0 - t)

    def g(self, t: Time) -> Time:
        return _xp(t).sqrt(2.0 * t / (1.0 - t))

    def Gamma(self, t: Time) -> Time:
        return -_xp(t).log1p(-1.0 * t)

    def a(self, t: Time) -> Time:
        return 1.0 - t

    def Xi(self, t: Time) -> Time:
        t = _variance_time(t)
        return 1.0 * t * t


def _as_float(t: Time) -> Time:
    # ints are accepted as times; every closed form above is written for floats/arrays/tensors.
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return float(t)
    return t


def forward_sample(
    process: Process, x0: torch.Tensor, t: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``x_t = a(t) x_0 + sqrt(Xi(t)) z`` with ``z ~ N(0, I)`` (THEORY 1)."""
    t = _as_float(t)
    check_time(process, t)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    return float(process.a(t)) * x0 + math.sqrt(float(process.Xi(t))) * z


def sde_drift(process: Process, score: Score, x: torch.Tensor, t: float) -> torch.Tensor:
    """Forward-time drift of the reverse SDE: ``-gamma x - g^2 s_t(x)`` (THEORY 1)."""
    return -float(process.gamma(t)) * x - float(process.g(t)) ** 2 * score(x, t)


def ode_drift(process: Process, score: Score, x: torch.Tensor, t: float) -> torch.Tensor:
    """Probability-flow ODE velocity ``dx/dt = -gamma x - (g^2/2) s_t(x)`` (THEORY 1)."""
    return -float(process.gamma(t)) * x - 0.5 * float(process.g(t)) ** 2 * score(x, t)
