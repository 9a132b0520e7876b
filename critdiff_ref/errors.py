"""Errors of Monte Carlo estimates (THEORY 8 "Observables": jackknife, bootstrap, Gamma method, tau_int).

- Resampling errors: :func:`bootstrap` and :func:`jackknife` for any statistic of a sample
  (independent configurations, or blocks much longer than ``tau_int``).
- Markov-chain errors: :func:`autocorrelation` and :func:`gamma_method` (Wolff's automatic
  windowing, hep-lat/0306017) for functions of means over one or several replica chains;
  ``tau_int = 1/2 + sum_{t=1}^W rho(t)`` and :func:`effective_sample_size` ``N / (2 tau_int)``.
- Results: :class:`Estimate` (value and standard error), :class:`GammaResult`.

The estimators these errors are attached to (k-statistics, phi^4 observables, Gaussian error
measures) are in :mod:`critdiff_ref.observables`.

Samples have the sample axis first: ``(N, *rest)``; all estimators reduce over that axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ._args import float_tensor as _as_float_tensor, integer as _check_int

__all__ = [
    "Estimate",
    "GammaResult",
    "bootstrap",
    "jackknife",
    "autocorrelation",
    "gamma_method",
    "effective_sample_size",
]


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (tensors of equal shape, or floats)."""

    value: torch.Tensor | float
    err: torch.Tensor | float


@dataclass(frozen=True)
class GammaResult:
    """Output of :func:`gamma_method` (Wolff 2004).

    ``value`` = f(means), ``err`` its standard error, ``tau_int`` the integrated autocorrelation
    time of the projected fluctuations at the chosen window ``W`` (floored at 1/2) and ``tau_int_err`` its error
    (Wolff eq. 42), ``rho`` the normalised autocorrelation function up to ``W`` (``rho[0] = 1``),
    ``n_total`` the number of measurements over all replicas.
    """

    value: float
    err: float
    tau_int: float
    tau_int_err: float
    W: int
    rho: np.ndarray
    n_total: int

    @property
    def ess(self) -> float:
        """Effective sample size ``N / (2 tau_int)`` (THEORY 8)."""
        return self.n_total / (2.0 * self.tau_int)


# --------------------------------------------------------------------------------------------
# resampling errors
# --------------------------------------------------------------------------------------------
def _result_tensor(v, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def bootstrap(
    statistic: Callable[[torch.Tensor], torch.Tensor],
    x,
    *,
    n_boot: int = 200,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Bootstrap standard error of ``statistic`` over the sample axis 0 of ``x``.

    ``value = statistic(x)``; ``err`` = standard deviation (ddof 1) of ``statistic`` over
    ``n_boot`` resamples drawn with replacement via ``generator``. ``statistic`` maps a tensor
    ``(N, *rest)`` to a tensor (any shape).
    """
    xt, _ = _as_float_tensor(x)
    n_boot = _check_int("n_boot", n_boot, 2)
    if xt.ndim == 0 or xt.shape[0] < 2:
        raise ValueError("x must have a sample axis 0 of length >= 2")
    N = xt.shape[0]
    value = _result_tensor(statistic(xt), xt)
    reps = []
    for _ in range(n_boot):
        idx = torch.randint(0, N, (N,), generator=generator, device=generator.device if generator else xt.device)
        reps.append(_result_tensor(statistic(xt[idx.to(xt.device)]), xt))
    reps = torch.stack(reps)
    return Estimate(value, reps.std(dim=0, correction=1))


def jackknife(
    statistic: Callable[[torch.Tensor], torch.Tensor], x, *, n_blocks: int | None = None
) -> Estimate:
    """Delete-one-block jackknife standard error of ``statistic`` over axis 0 of ``x``.

    ``x`` is cut into ``n_blocks`` contiguous blocks (default: one sample per block; for
    autocorrelated data use blocks much longer than ``tau_int``); with ``theta_b`` the statistic
    without block b, ``err^2 = (B - 1)/B sum_b (theta_b - mean theta)^2``. ``value = statistic(x)``.
    Leftover samples (``N mod B``) are dropped from the leave-one-out replicas' blocks but kept in
    ``value``.
    """
    xt, _ = _as_float_tensor(x)
    if xt.ndim == 0:
        raise ValueError("x must have a sample axis 0")
    N = xt.shape[0]
    B = N if n_blocks is None else _check_int("n_blocks", n_blocks, 2, N)
    if B < 2:
        raise ValueError(f"jackknife needs at least 2 samples, got N={N}")
    size = N // B
    xt_used = xt[: B * size]
    value = _result_tensor(statistic(xt), xt)
    reps = []
    for b in range(B):
        keep = torch.cat([xt_used[: b * size], xt_used[(b + 1) * size :]])
        reps.append(_result_tensor(statistic(keep), xt))
    reps = torch.stack(reps)
    err = torch.sqrt((B - 1) / B * ((reps - reps.mean(dim=0)) ** 2).sum(dim=0))
    return Estimate(value, err)


# --------------------------------------------------------------------------------------------
# Markov chains: autocorrelation and Wolff's Gamma method (THEORY 8)
# --------------------------------------------------------------------------------------------
def _replicas(x) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"series must have shape (N,) or (N, R) (time, replica), got {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"series needs N >= 2 time steps, got N={arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError("series contains non-finite values")
    return arr


def _gamma_function(delta: np.ndarray, t_max: int) -> np.ndarray:
    """``Gamma(t) = sum_r sum_{i < N - t} delta_i^r delta_{i+t}^r / (R (N - t))``, t = 0..t_max (FFT)."""
    N, R = delta.shape
    nfft = 1 << int(math.ceil(math.log2(2 * N)))
    f = np.fft.rfft(delta, n=nfft, axis=0)
    acf = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[: t_max + 1].sum(axis=1)
    return acf / (R * (N - np.arange(t_max + 1)))


def autocorrelation(x, *, t_max: int | None = None) -> np.ndarray:
    """Normalised autocorrelation function ``rho(t) = Gamma(t) / Gamma(0)``, t = 0..t_max.

    ``x`` has shape ``(N,)`` or ``(N, R)`` (R independent replicas, fluctuations about the
    common mean). Default ``t_max = N // 2``.
    """
    arr = _replicas(x)
    N = arr.shape[0]
    t_max = N // 2 if t_max is None else _check_int("t_max", t_max, 0, N - 1)
    g = _gamma_function(arr - arr.mean(), t_max)
    return g / g[0] if g[0] > 0 else np.concatenate([[1.0], np.zeros(t_max)])


def gamma_method(
    x, f: Callable[[torch.Tensor], torch.Tensor] | None = None, *, S: float = 1.5
) -> GammaResult:
    """Wolff's Gamma method: mean (or ``f`` of means) with autocorrelation-aware error.

    ``x``: ``(N,)`` one chain, ``(N, R)`` R replica chains, or ``(N, R, A)`` with A primary
    observables when ``f`` maps the A means (a float64 tensor) to a scalar (with ``f``, a
    ``(N,)`` or ``(N, R)`` input is one primary). The fluctuations
    are projected on the gradient of ``f`` (autograd), ``Gamma(t)`` is averaged over replicas,
    and the window ``W`` is the first with ``g(W) = exp(-W/tau) - tau / sqrt(W N) < 0``,
    ``tau = S / ln((2 tau_int(W) + 1)/(2 tau_int(W) - 1))``. ``Gamma`` gets the bias correction
    ``+ C_F / N``; ``err^2 = C_F / N`` with ``C_F = Gamma(0) + 2 sum_{t=1}^W Gamma(t)``,
    ``tau_int = C_F / (2 Gamma(0))`` and ``tau_int_err^2 = 4 (W + 1/2 - tau_int) tau_int^2 / N``.

    ``C_F`` is floored at ``Gamma(0)`` (``tau_int >= 1/2``, as pyerrors does): the windowing assumes
    decaying positive correlations and stops where the running ``tau_int(W)`` first falls to 1/2 or
    below, which on anti-correlated data cuts the alternating sum at a low point (``C_F <= 0`` when
    ``rho(1) <= -1/2``). The error is then the naive one, an upper bound there, never 0.
    """
    if isinstance(S, bool) or not isinstance(S, (int, float)) or not (0 < S < 100):
        raise ValueError(f"S must be a real number in (0, 100), got S={S!r}")
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    arr = np.asarray(arr, dtype=np.float64)
    if f is None:
        series = _replicas(arr)
        value = float(series.mean())
        delta = series - value
    else:
        if arr.ndim == 1:
            arr = arr[:, None, None]
        elif arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"with f, x must have shape (N, R, A), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("x contains non-finite values")
        if arr.shape[0] < 2:
            raise ValueError(f"series needs N >= 2 time steps, got N={arr.shape[0]}")
        means = torch.tensor(arr.mean(axis=(0, 1)), dtype=torch.float64, requires_grad=True)
        fv = f(means)
        if not isinstance(fv, torch.Tensor) or fv.numel() != 1:
            raise TypeError("f must return a scalar tensor")
        (grad,) = torch.autograd.grad(fv.reshape(()), means)
        value = float(fv.detach())
        delta = (arr - means.detach().numpy()) @ grad.numpy()
    N, R = delta.shape
    n_total = N * R
    t_max = N // 2
    gam = _gamma_function(delta, t_max)
    if gam[0] <= 0:
        return GammaResult(value, 0.0, 0.5, 0.0, 0, np.ones(1), n_total)
    # automatic windowing
    W = t_max
    tau_cum = 0.5
    for w in range(1, t_max + 1):
        tau_cum += gam[w] / gam[0]
        tau = S / math.log((2 * tau_cum + 1) / (2 * tau_cum - 1)) if tau_cum > 0.5 else 1e-300
        if math.exp(-w / tau) - tau / math.sqrt(w * n_total) < 0:
            W = w
            break
    # floor tau_int at 1/2 (docstring): at the chosen W the truncated sum may be below Gamma(0), even negative
    CF = max(gam[0] + 2.0 * gam[1 : W + 1].sum(), gam[0])
    gam = gam + CF / n_total  # bias correction (Wolff eq. 49)
    CF = max(gam[0] + 2.0 * gam[1 : W + 1].sum(), gam[0])
    tau_int = CF / (2.0 * gam[0])
    tau_err = tau_int * math.sqrt(max(4.0 * (W + 0.5 - tau_int) / n_total, 0.0))
    return GammaResult(value, math.sqrt(CF / n_total), tau_int, tau_err, W, gam[: W + 1] / gam[0], n_total)


def effective_sample_size(x, *, S: float = 1.5) -> float:
    """``N / (2 tau_int)`` for a series ``(N,)`` or ``(N, R)`` (THEORY 8), ``N`` counting all replicas."""
    return gamma_method(x, S=S).ess
