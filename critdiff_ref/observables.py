"""Estimators with honest errors (THEORY 2 "Error measures", 6 "Estimators", 8 "Observables").

- Unbiased k-statistics ``kstat(x, n)``, n = 1..8, from power sums with exact rational coefficients.
- Resampling errors: :func:`bootstrap` and :func:`jackknife` for any statistic of a sample.
- Markov-chain errors: :func:`autocorrelation` and :func:`gamma_method` (Wolff's automatic
  windowing, hep-lat/0306017) for functions of means over one or several replica chains.
- Gaussian error measures for generated mode variances: relative Frobenius error, W2, KL.
- phi^4 observables: ``M``, ``|M|``, ``chi_2``, Binder ``U_L``, connected two-point functions.

Samples have the sample axis first: ``(N, *rest)``; all estimators reduce over that axis.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch

from . import lattice

__all__ = [
    "Estimate",
    "GammaResult",
    "kstat",
    "kstat_coefficients",
    "kstat_bootstrap",
    "bootstrap",
    "jackknife",
    "autocorrelation",
    "gamma_method",
    "effective_sample_size",
    "relative_frobenius_error",
    "gaussian_w2",
    "gaussian_kl",
    "magnetization",
    "susceptibility",
    "binder_cumulant",
    "connected_two_point",
    "connected_two_point_momentum",
    "phi4_observables",
]

MAX_KSTAT_ORDER = 8


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (tensors of equal shape, or floats)."""

    value: torch.Tensor | float
    err: torch.Tensor | float


@dataclass(frozen=True)
class GammaResult:
    """Output of :func:`gamma_method` (Wolff 2004).

    ``value`` = f(means), ``err`` its standard error, ``tau_int`` the integrated autocorrelation
    time of the projected fluctuations at the chosen window ``W`` and ``tau_int_err`` its error
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
# input checks
# --------------------------------------------------------------------------------------------
def _as_float_tensor(x, name: str = "x") -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``: torch tensors pass (floating only); array-likes become float64."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
        return x, False
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or a real array, got {type(x).__name__}") from err
    return torch.from_numpy(arr), True


def _check_int(name: str, value, lower: int, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < lower or (upper is not None and value > upper):
        rng = f">= {lower}" if upper is None else f"in [{lower}, {upper}]"
        raise ValueError(f"{name} must be {rng}, got {name}={value}")
    return value


# --------------------------------------------------------------------------------------------
# k-statistics (THEORY 6)
# --------------------------------------------------------------------------------------------
def _integer_partitions(n: int, largest: int | None = None):
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for p in range(min(n, largest), 0, -1):
        for rest in _integer_partitions(n - p, p):
            yield (p,) + rest


def _set_partitions(items: list):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [[first]] + part
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1 :]


@lru_cache(maxsize=None)
def _kstat_structure(n: int) -> dict[tuple[int, ...], dict[int, Fraction]]:
    """``{power-sum monomial: {m: c}}`` with ``k_n = sum_mono sum_m c / (N)_m * prod_j s_{mono_j}``.

    Derivation: ``kappa_n = sum_{set partitions pi of [n]} (-1)^{|pi|-1} (|pi|-1)! prod_B mu'_{|B|}``;
    the unbiased estimator of ``prod_{j=1}^m mu'_{b_j}`` is the distinct-index sum
    ``[b_1 ... b_m] = sum_{i_1..i_m distinct} prod_j x_{i_j}^{b_j}`` divided by the falling
    factorial ``(N)_m``; Moebius inversion on the partition lattice gives
    ``[b_1 ... b_m] = sum_{set partitions sigma of [m]} prod_{C in sigma} (-1)^{|C|-1} (|C|-1)! s_{sum_{j in C} b_j}``
    with power sums ``s_r = sum_i x_i^r``.
    """
    terms: dict[tuple[int, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for lam in _integer_partitions(n):
        m = len(lam)
        mult = defaultdict(int)
        for p in lam:
            mult[p] += 1
        count = math.factorial(n)
        for p in lam:
            count //= math.factorial(p)
        for k in mult.values():
            count //= math.factorial(k)
        c_lam = (-1) ** (m - 1) * math.factorial(m - 1) * count
        for sigma in _set_partitions(list(range(m))):
            coef = 1
            for block in sigma:
                coef *= (-1) ** (len(block) - 1) * math.factorial(len(block) - 1)
            mono = tuple(sorted((sum(lam[j] for j in block) for block in sigma), reverse=True))
            terms[mono][m] += c_lam * coef
    return {mono: {m: Fraction(c) for m, c in v.items()} for mono, v in terms.items()}


def _falling(N: int, m: int) -> int:
    out = 1
    for j in range(m):
        out *= N - j
    return out


@lru_cache(maxsize=256)
def kstat_coefficients(n: int, N: int, centred: bool = True) -> dict[tuple[int, ...], Fraction]:
    """Exact coefficients of ``k_n`` as a polynomial in power sums for sample size ``N``.

    ``k_n = sum_mono coeff[mono] * prod_j s_{mono_j}`` (see :func:`_kstat_structure`). With
    ``centred=True`` monomials containing ``s_1`` are dropped: for ``n >= 2`` ``k_n`` is shift
    invariant, so evaluating on ``x - mean(x)`` (where ``s_1 = 0``) gives the same value.
    """
    n = _check_int("n", n, 1, MAX_KSTAT_ORDER)
    N = _check_int("N", N, n)
    out = {}
    for mono, by_m in _kstat_structure(n).items():
        if centred and n >= 2 and 1 in mono:
            continue
        c = sum((v / _falling(N, m) for m, v in by_m.items()), Fraction(0))
        if c != 0:
            out[mono] = c
    return out


def _kstat_from_power_sums(s: dict[int, torch.Tensor], n: int, N: int, centred: bool) -> torch.Tensor:
    """Evaluate ``k_n`` from power sums ``s[r] = sum_i x_i^r`` (``r = 1..n``) of a size-``N`` sample."""
    like = s[2] if n >= 2 else s[1]
    out = torch.zeros_like(like)
    for mono, c in kstat_coefficients(n, N, centred).items():
        term = torch.ones_like(like)
        for r in mono:
            term = term * s[r]
        out = out + float(c) * term
    return out


def kstat(x, n: int, *, axis: int = 0):
    """Unbiased k-statistic ``k_n`` (``E[k_n] = kappa_n``) along ``axis``, ``n = 1..8`` (THEORY 6).

    Computed from power sums of the centred sample with exact rational coefficients
    (:func:`kstat_coefficients`); agrees with ``scipy.stats.kstat`` for ``n <= 4``. Needs at
    least ``n`` samples along ``axis``. Tensors give tensors (dtype/device kept), arrays give arrays.
    """
    xt, was_numpy = _as_float_tensor(x)
    n = _check_int("n", n, 1, MAX_KSTAT_ORDER)
    if xt.ndim == 0:
        raise ValueError("x must have at least one axis (the sample axis)")
    N = xt.shape[axis]
    if N < n:
        raise ValueError(f"kstat of order n={n} needs at least n samples along axis {axis}, got N={N}")
    mean = xt.mean(dim=axis)
    if n == 1:
        out = mean
    else:
        xc = xt - mean.unsqueeze(axis)
        s = {1: torch.zeros_like(mean)}
        p = xc
        for r in range(2, n + 1):
            p = p * xc
            s[r] = p.sum(dim=axis)
        out = _kstat_from_power_sums(s, n, N, centred=True)
    return out.numpy() if was_numpy else out


def kstat_bootstrap(
    x, orders: Sequence[int], *, n_boot: int = 200, generator: torch.Generator | None = None, chunk: int = 25
) -> Estimate:
    """k-statistics of several orders of a 1-D sample with bootstrap standard errors, vectorised.

    Each resample is represented by its multiplicity vector ``c`` (``sum c = N``); its power sums are
    ``c @ (x - mean)^r``, and :func:`kstat`'s polynomial (with the ``s_1`` terms, since a resample
    is not centred) gives its k-statistics. ``value[j] = kstat(x, orders[j])``; ``err[j]`` the
    standard deviation (ddof 1) over ``n_boot`` resamples drawn through ``generator``.
    """
    xt, _ = _as_float_tensor(x)
    if xt.ndim != 1:
        raise ValueError(f"x must be 1-D (flatten a lattice sample first), got shape {tuple(xt.shape)}")
    orders = [_check_int("orders[j]", n, 1, MAX_KSTAT_ORDER) for n in orders]
    if not orders:
        raise ValueError("orders must be a non-empty sequence of ints in [1, 8]")
    n_boot = _check_int("n_boot", n_boot, 2)
    chunk = _check_int("chunk", chunk, 1)
    N = xt.shape[0]
    if N < max(orders):
        raise ValueError(f"need N >= max(orders) = {max(orders)} samples, got N={N}")
    n_max = max(orders)
    mean = xt.mean()
    xc = xt - mean
    powers = torch.stack([xc**r for r in range(1, n_max + 1)], dim=1)  # (N, n_max)
    value = torch.stack([kstat(xt, n) for n in orders])
    gdev = generator.device if generator is not None else xt.device
    reps = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = torch.randint(0, N, (b, N), generator=generator, device=gdev).to(xt.device)
        counts = torch.zeros((b, N), dtype=xt.dtype, device=xt.device)
        counts.scatter_add_(1, idx, torch.ones_like(counts))
        s_all = counts @ powers  # (b, n_max)
        s = {r: s_all[:, r - 1] for r in range(1, n_max + 1)}
        ks = [s[1] / N + mean if n == 1 else _kstat_from_power_sums(s, n, N, centred=False) for n in orders]
        reps.append(torch.stack(ks, dim=1))
    reps = torch.cat(reps)
    return Estimate(value, reps.std(dim=0, correction=1))


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
    CF = gam[0] + 2.0 * gam[1 : W + 1].sum()
    gam = gam + CF / n_total  # bias correction (Wolff eq. 49)
    CF = gam[0] + 2.0 * gam[1 : W + 1].sum()
    CF = max(CF, 0.0)
    tau_int = CF / (2.0 * gam[0])
    tau_err = tau_int * math.sqrt(max(4.0 * (W + 0.5 - tau_int) / n_total, 0.0))
    return GammaResult(value, math.sqrt(CF / n_total), tau_int, tau_err, W, gam[: W + 1] / gam[0], n_total)


def effective_sample_size(x, *, S: float = 1.5) -> float:
    """``N / (2 tau_int)`` for a series ``(N,)`` or ``(N, R)`` (THEORY 8), ``N`` counting all replicas."""
    return gamma_method(x, S=S).ess


# --------------------------------------------------------------------------------------------
# Gaussian error measures (THEORY 2)
# --------------------------------------------------------------------------------------------
def _mode_pair(v, c0) -> tuple[torch.Tensor, torch.Tensor]:
    vt, _ = _as_float_tensor(v, "v")
    ct, _ = _as_float_tensor(c0, "c0")
    ct = ct.to(dtype=vt.dtype, device=vt.device)
    if vt.shape != ct.shape:
        raise ValueError(f"v and c0 must have equal shapes, got {tuple(vt.shape)} and {tuple(ct.shape)}")
    if bool((vt < 0).any()) or bool((ct < 0).any()):
        raise ValueError("mode variances v and c0 must be >= 0")
    return vt, ct


def relative_frobenius_error(v, c0) -> float:
    """``||Sigma_gen - Sigma||_F / ||Sigma||_F = sqrt(sum_k (v - c0)^2 / sum_k c0^2)`` (THEORY 2)."""
    vt, ct = _mode_pair(v, c0)
    return float(torch.sqrt(((vt - ct) ** 2).sum() / (ct**2).sum()))


def gaussian_w2(v, c0) -> float:
    """Wasserstein-2 between ``N(0, diag v)`` and ``N(0, diag c0)``: ``sqrt(sum_k (sqrt v - sqrt c0)^2)``."""
    vt, ct = _mode_pair(v, c0)
    return float(torch.sqrt(((vt.sqrt() - ct.sqrt()) ** 2).sum()))


def gaussian_kl(v, c0) -> float:
    """``KL(N(0, diag v) || N(0, diag c0)) = 1/2 sum_k (v/c0 - 1 - ln(v/c0))`` over modes with c0 > 0.

    Modes with ``c0 = 0`` (a removed zero mode) must have ``v = 0`` and are skipped; ``v = 0``
    where ``c0 > 0`` gives ``inf``.
    """
    vt, ct = _mode_pair(v, c0)
    zero = ct == 0
    if bool((vt[zero] != 0).any()):
        raise ValueError("v must be 0 on modes where c0 = 0 (KL is infinite otherwise)")
    r = vt[~zero] / ct[~zero]
    if bool((r == 0).any()):
        return math.inf
    return float(0.5 * (r - 1.0 - torch.log(r)).sum())


# --------------------------------------------------------------------------------------------
# phi^4 observables (THEORY 8)
# --------------------------------------------------------------------------------------------
def _check_configs(phi, d: int) -> torch.Tensor:
    d = _check_int("d", d, 1)
    pt, _ = _as_float_tensor(phi, "phi")
    if pt.ndim < d + 1:
        raise ValueError(f"phi must have shape (n_configs, *lattice) with {d} lattice axes, got {tuple(pt.shape)}")
    return pt


def magnetization(phi: torch.Tensor, d: int) -> torch.Tensor:
    """``M = (1/V) sum_x phi_x`` per configuration: ``(*batch, *lattice) -> (*batch,)``."""
    d = _check_int("d", d, 1)
    pt, _ = _as_float_tensor(phi, "phi")
    if pt.ndim < d:
        raise ValueError(f"phi must have at least d={d} lattice axes, got shape {tuple(pt.shape)}")
    return pt.mean(dim=lattice.lattice_dims(d))


def susceptibility(M: torch.Tensor, V: int) -> torch.Tensor:
    """``chi_2 = V (<M^2> - <M>^2)`` over the sample axis 0 of ``M`` (plug-in means)."""
    return V * ((M * M).mean(dim=0) - M.mean(dim=0) ** 2)


def binder_cumulant(M: torch.Tensor) -> torch.Tensor:
    """``U_L = 1 - <M^4> / (3 <M^2>^2)`` over the sample axis 0 of ``M``."""
    m2 = (M * M).mean(dim=0)
    return 1.0 - (M**4).mean(dim=0) / (3.0 * m2 * m2)


def connected_two_point(phi: torch.Tensor, d: int) -> torch.Tensor:
    """``G(x) = (1/V) sum_y <phi_{y+x} phi_y> - <M>^2``, averaged over translations, shape ``(L,)*d``.

    Computed as ``ifftn(<|phi_k|^2>)`` (non-unitary inverse) minus ``<M>^2``; equals
    ``real_space_covariance`` of a Gaussian field with mode variances ``c0``.
    """
    pt = _check_configs(phi, d)
    dims = lattice.lattice_dims(d)
    power = (lattice.fft(pt, d).abs() ** 2).mean(dim=0)
    G = torch.fft.ifftn(power, dim=dims).real
    return G - pt.mean() ** 2


def connected_two_point_momentum(phi: torch.Tensor, d: int) -> torch.Tensor:
    """``G(k) = <|phi_k|^2> - |<phi_k>|^2`` with the unitary FFT, shape ``(L,)*d`` (mode variances).

    ``G(k) = sum_x G(x) e^{-i k x}``; by translation invariance ``<phi_k> = 0`` for ``k != 0``, so
    only the zero mode is corrected, by ``V <M>^2``.
    """
    pt = _check_configs(phi, d)
    power = (lattice.fft(pt, d).abs() ** 2).mean(dim=0)
    V = math.prod(pt.shape[-d:])
    corr = torch.zeros_like(power)
    corr[(0,) * d] = V * pt.mean() ** 2
    return power - corr


def phi4_observables(phi: torch.Tensor, d: int, *, n_blocks: int = 20) -> dict[str, Estimate]:
    """``M, |M|, chi_2, U_L`` with blocked-jackknife errors from configurations ``(N, *lattice)``.

    Appropriate for independent (or blocked, ``N / n_blocks >> tau_int``) configurations; for
    Markov chains with replicas use :func:`gamma_method`.
    """
    pt = _check_configs(phi, d)
    V = math.prod(pt.shape[-d:])
    M = magnetization(pt, d)
    n_blocks = min(_check_int("n_blocks", n_blocks, 2), M.shape[0])
    return {
        "M": jackknife(lambda m: m.mean(), M, n_blocks=n_blocks),
        "absM": jackknife(lambda m: m.abs().mean(), M, n_blocks=n_blocks),
        "chi2": jackknife(lambda m: susceptibility(m, V), M, n_blocks=n_blocks),
        "binder": jackknife(binder_cumulant, M, n_blocks=n_blocks),
    }
