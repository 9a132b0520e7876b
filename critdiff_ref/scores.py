"""Exact scores ``s_t(x) = grad log p_t(x)`` for every target and every forward process.

``exact_score(target, process)`` returns a callable ``s(x, t)``: ``x`` a float32/float64 tensor
on any device, ``(*batch, *event)``; ``t`` a float, a 0-d tensor, or a tensor of shape
``(batch,)`` (one time per leading batch entry; Gaussian field and mixtures).  The forms:

- Gaussian field: Fourier-diagonal ``s_k = K_t(k) phi_k``, ``K_t = -1/C_t`` (THEORY 2).
- Gaussian mixtures: responsibilities-weighted component scores; two peaks: tanh form (THEORY 6).
- Two deltas, data sets: Tweedie / softmax ``(a <y> - x) / Xi`` (THEORY 7); needs ``t > 0``.
- 0-D phi^4 and 1-D grid densities: quadrature of ``p_t = p_0 * N(a., Xi)`` (THEORY 8).
- Lattice phi^4 at ``lam = 0``: its Gaussian free field (no closed form exists for ``lam > 0``).

``exact_velocity(target, RectifiedFlow())`` gives the flow-matching velocity ``v(x, t) = E[z - x_0 | x_t]``
of the rectified flow (THEORY 1), finite on all of ``[0, 1]``; ``exact_consistency(target, t_min)`` its
consistency function, the PF-ODE flow map from ``t`` to ``t_min`` (THEORY 1 "Consistency functions").
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

from . import lattice
from .processes import Process, RectifiedFlow, Time, check_time
from .targets import (
    Density1D,
    EmpiricalDataset,
    GaussianField,
    GaussianMixture1D,
    Phi4Lattice,
    Phi4ZeroD,
    TwoDeltas,
    TwoGaussianMixture,
)

__all__ = ["exact_score", "fourier_score", "exact_velocity", "exact_consistency", "ScoreFn"]

ScoreFn = Callable[[torch.Tensor, Time], torch.Tensor]


def _check_x(x: torch.Tensor, event_shape: tuple[int, ...] = ()) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor (float32 or float64), got dtype {x.dtype}")
    n = len(event_shape)
    if n and tuple(x.shape[x.ndim - n :]) != tuple(event_shape):
        raise ValueError(f"x must have shape (*batch, {', '.join(map(str, event_shape))}), got {tuple(x.shape)}")


def _time_factors(process: Process, t: Time, x: torch.Tensor, event_ndim: int) -> tuple:
    """``(a, Xi)`` at t: floats for a scalar time, else tensors shaped to broadcast over the event axes."""
    if isinstance(t, torch.Tensor) and t.ndim > 0:
        check_time(process, t)
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"a tensor t must have shape (batch,) = ({x.shape[0]},), got {tuple(t.shape)}")
        tt = t.to(dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        return process.a(tt), process.Xi(tt)
    tf = float(t)
    check_time(process, tf)
    return float(process.a(tf)), float(process.Xi(tf))


# Per score function, the half-spectrum kernels K_t of the scalar times seen last are kept (a sampler
# on a fixed grid asks for the same 2N + 1 times on every run); at most this many bytes of them.
KERNEL_CACHE_BYTES = 2**27


def fourier_score(target: GaussianField, process: Process) -> ScoreFn:
    """``s_t(phi) = F^-1[K_t(k) F[phi]]`` with ``K_t(k) = -1/(a^2 c0(k) + Xi)`` (THEORY 2).

    For a scalar ``t`` the kernel is cached per ``(t, dtype, device)`` (least recently used first out,
    :data:`KERNEL_CACHE_BYTES` per score function), so a repeated time costs the FFT pair and one
    multiply; a tensor of times (one per batch entry) is computed afresh.
    """
    d, mask_zero = target.d, target.zero_mode_removed
    kernels: OrderedDict = OrderedDict()

    def kernel(a, Xi, x: torch.Tensor) -> torch.Tensor:
        C = a * a * target.c0_half(dtype=x.dtype, device=x.device) + Xi  # K_t is even in k: real FFTs
        if mask_zero:
            # K(0) = 0: the zero mode is removed in the score (THEORY 0).  Every other C_t(k) > 0.
            C[..., *([0] * d)] = math.inf
        return -1.0 / C

    def score(x: torch.Tensor, t: Time) -> torch.Tensor:
        _check_x(x, target.shape)
        if isinstance(t, torch.Tensor) and t.ndim > 0:
            return lattice.real_filter(x, kernel(*_time_factors(process, t, x, d), x), d, half=True)
        key = (float(t), x.dtype, x.device)
        K = kernels.get(key)
        if K is None:
            K = kernels[key] = kernel(*_time_factors(process, t, x, d), x)
            while sum(k.numel() * k.element_size() for k in kernels.values()) > KERNEL_CACHE_BYTES and len(kernels) > 1:
                kernels.popitem(last=False)
        else:
            kernels.move_to_end(key)
        return lattice.real_filter(x, K, d, half=True)

    return score


def _mixture_score(target: GaussianMixture1D, process: Process) -> ScoreFn:
    w0, m0, s0 = target.weights, target.means, target.stds

    def score(x: torch.Tensor, t: Time) -> torch.Tensor:
        _check_x(x)
        a, Xi = _time_factors(process, t, x, 0)
        kw = dict(dtype=x.dtype, device=x.device)
        w, m, s2 = torch.tensor(w0, **kw), torch.tensor(m0, **kw), torch.tensor(s0, **kw) ** 2
        a_ = a.unsqueeze(-1) if isinstance(a, torch.Tensor) else a
        Xi_ = Xi.unsqueeze(-1) if isinstance(Xi, torch.Tensor) else Xi
        mean, var = a_ * m, a_ * a_ * s2 + Xi_
        diff = x.unsqueeze(-1) - mean
        logits = torch.log(w) - 0.5 * diff * diff / var - 0.5 * torch.log(var)
        return (torch.softmax(logits, dim=-1) * (-diff / var)).sum(-1)

    return score


def _two_peak_score(target: TwoGaussianMixture, process: Process) -> ScoreFn:
    def score(x: torch.Tensor, t: Time) -> torch.Tensor:
        """``s_t(x) = (-x + a mu tanh(a mu x / v)) / v``, ``v = a^2 s^2 + Xi`` (THEORY 6)."""
        _check_x(x)
        a, Xi = _time_factors(process, t, x, 0)
        v = a * a * target.s**2 + Xi
        am = a * target.mu
        return (-x + am * torch.tanh(am * x / v)) / v

    return score


def _scalar_time(t: Time, name: str) -> float:
    if isinstance(t, torch.Tensor) and t.numel() != 1:
        raise ValueError(f"{name} scores take a scalar time t, got shape {tuple(t.shape)}")
    return float(t)


def _dataset_score(target, process: Process) -> ScoreFn:
    event = target.event_shape if isinstance(target, EmpiricalDataset) else ()

    def score(x: torch.Tensor, t: Time) -> torch.Tensor:
        _check_x(x, event)
        return target.score(x, process, _scalar_time(t, type(target).__name__))

    return score


def _density_score(density: Density1D, process: Process) -> ScoreFn:
    def score(x: torch.Tensor, t: Time) -> torch.Tensor:
        _check_x(x)
        return density.score(x, process, _scalar_time(t, "quadrature"))

    return score


def exact_score(target, process: Process) -> ScoreFn:
    """The exact score ``s(x, t) = grad_x log p_t(x)`` of ``target`` under ``process``."""
    if not isinstance(process, Process):
        raise TypeError(f"process must implement a(t), Xi(t), gamma(t), g(t) and T, got {type(process).__name__}")
    if isinstance(target, GaussianField):
        return fourier_score(target, process)
    if isinstance(target, TwoGaussianMixture):
        return _two_peak_score(target, process)
    if isinstance(target, GaussianMixture1D):
        return _mixture_score(target, process)
    if isinstance(target, (TwoDeltas, EmpiricalDataset)):
        return _dataset_score(target, process)
    if isinstance(target, Phi4ZeroD):
        return _density_score(target.density(), process)
    if isinstance(target, Density1D):
        return _density_score(target, process)
    if isinstance(target, Phi4Lattice):
        if target.lam != 0.0:
            raise ValueError(
                f"lattice phi^4 has no closed-form diffusion score for lam > 0 (got lam={target.lam});"
                " only lam = 0 (the free field) is exact"
            )
        return fourier_score(target.free_field(), process)
    raise TypeError(f"no exact score for target of type {type(target).__name__}")


# -- flow-matching velocity (rectified flow) ---------------------------------------------------------
def _fourier_velocity(target: GaussianField, process: RectifiedFlow) -> ScoreFn:
    """``v_k = x_k (t - (1 - t) c0(k)) / C_t(k)``, ``C_t = (1 - t)^2 c0 + t^2`` (THEORY 1); 0 on a removed zero mode."""
    d, mask_zero = target.d, target.zero_mode_removed
    kernels: OrderedDict = OrderedDict()

    def velocity(x: torch.Tensor, t: Time) -> torch.Tensor:
        _check_x(x, target.shape)
        tf = _scalar_time(t, "velocity")
        key = (tf, x.dtype, x.device)
        K = kernels.get(key)
        if K is None:
            check_time(process, tf)  # once per time: a NaN or out-of-range t is an error, not a NaN field
            c = target.c0_half(dtype=x.dtype, device=x.device)
            K = (tf - (1.0 - tf) * c) / ((1.0 - tf) ** 2 * c + tf * tf)
            if mask_zero:
                K[..., *([0] * d)] = 0.0  # removed zero mode (THEORY 0); 0/0 at t = 0 otherwise
            kernels[key] = K
            while len(kernels) > 1024:
                kernels.popitem(last=False)
        return lattice.real_filter(x, K, d, half=True)

    return velocity


def _mixture_posterior_mean(target: GaussianMixture1D, x: torch.Tensor, a: float, Xi: float) -> torch.Tensor:
    """``E[x_0 | x_t = x]``: responsibilities times component posterior means ``m + a s^2 (x - a m)/(a^2 s^2 + Xi)``."""
    kw = dict(dtype=x.dtype, device=x.device)
    w, m, s2 = torch.tensor(target.weights, **kw), torch.tensor(target.means, **kw), torch.tensor(target.stds, **kw) ** 2
    var = a * a * s2 + Xi
    diff = x.unsqueeze(-1) - a * m
    logits = torch.log(w) - 0.5 * diff * diff / var - 0.5 * torch.log(var)
    return (torch.softmax(logits, dim=-1) * (m + a * s2 * diff / var)).sum(-1)


def _target_mean(target) -> float:
    if isinstance(target, Phi4ZeroD):
        return target.density().moment(1)
    return float(target.moment(1))


def exact_velocity(target, process: RectifiedFlow) -> ScoreFn:
    """Exact velocity ``v(x, t) = E[z - x_0 | x_t] = -(x + t s_t(x)) / (1 - t)`` of the rectified flow (THEORY 1).

    ``v`` is the PF-ODE drift ``-gamma x - (g^2/2) s`` and stays finite at ``t = 1`` (pure noise), where
    ``v = x - E[x_0]``.  Forms: Gaussian field (and lattice phi^4 at ``lam = 0``): per mode
    ``x (t - (1 - t) c0) / C_t``, exact on ``[0, 1]``.  Targets with an exact posterior mean ``D``
    (Gaussian mixtures, two deltas, data sets): the score form for ``t <= 1/2`` and the denoiser form
    ``(x - D)/t`` for ``t > 1/2`` (each well conditioned on its half).  Quadrature densities (0-D phi^4):
    the score form for ``t < 1`` (relative rounding ~ ``eps/(1 - t)``), its limit ``x - E[x_0]`` at ``t = 1``.
    ``t`` is a float or a one-element tensor; ``x`` as for :func:`exact_score`.
    """
    if not isinstance(process, RectifiedFlow):
        raise TypeError(f"process must be a RectifiedFlow (the velocity is its parametrisation), got {type(process).__name__}")
    if isinstance(target, Phi4Lattice) and target.lam == 0.0:
        target = target.free_field()
    if isinstance(target, GaussianField):
        return _fourier_velocity(target, process)
    score = exact_score(target, process)  # raises TypeError / ValueError for targets without an exact score
    if isinstance(target, TwoGaussianMixture):
        mix = target.as_mixture()
        mean_fn = lambda x, t: _mixture_posterior_mean(mix, x, 1.0 - t, t * t)  # noqa: E731
    elif isinstance(target, GaussianMixture1D):
        mean_fn = lambda x, t: _mixture_posterior_mean(target, x, 1.0 - t, t * t)  # noqa: E731
    elif isinstance(target, (TwoDeltas, EmpiricalDataset)):
        mean_fn = lambda x, t: target.posterior_mean(x, process, t)  # noqa: E731
    else:
        mean = _target_mean(target)
        mean_fn = None

    def velocity(x: torch.Tensor, t: Time) -> torch.Tensor:
        tf = _scalar_time(t, "velocity")
        check_time(process, tf)
        if mean_fn is not None and tf > 0.5:
            _check_x(x)
            return (x - mean_fn(x, tf)) / tf
        if mean_fn is None and tf == 1.0:
            _check_x(x)
            return x - mean
        return -(x + tf * score(x, tf)) / (1.0 - tf)

    return velocity


# -- exact consistency function of the rectified flow -------------------------------------------
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
