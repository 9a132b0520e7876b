"""Estimators (THEORY 2 "Error measures", 6 "Estimators", 8 "Observables").

- Unbiased k-statistics ``kstat(x, n)``, n = 1..8, from power sums with exact rational coefficients,
  and :func:`kstat_bootstrap` (k-statistics of several orders with bootstrap errors, vectorised).
- Gaussian error measures for generated mode variances: relative Frobenius error, W2, KL.
- phi^4 observables: ``M``, ``|M|``, ``chi_2``, Binder ``U_L``, connected two-point functions.

Errors of Monte Carlo estimates (bootstrap, jackknife, autocorrelation, Gamma method, ``tau_int``)
are in :mod:`critdiff_ref.errors`.

Samples have the sample axis first: ``(N, *rest)``; all estimators reduce over that axis.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

import torch

from . import lattice
from ._args import float_tensor as _as_float_tensor, integer as _check_int
from .errors import (
    Estimate,
    jackknife,
)

__all__ = [
    "kstat",
    "kstat_coefficients",
    "kstat_bootstrap",
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
