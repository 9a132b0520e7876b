"""Estimators of the phi^4 DM-MCMC figures (THEORY 8, "Diffusion-model MCMC" and "Observables"): the stationary
acceptance of an independence sampler, magnetisation series, tunnelling counts and the Gamma-method
autocorrelation row. Used by :mod:`critdiff_ref.phi4.figures`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import autocorrelation, gamma_method

__all__ = ["stationary_acceptance", "magnetisation_series", "well_changes", "autocorrelation_row"]


def stationary_acceptance(log_w: torch.Tensor | np.ndarray) -> float:
    """Stationary acceptance of independence Metropolis from iid proposals (THEORY 8, DM-MCMC).

    With importance weights ``w = p / q`` (up to a constant) the chain at stationarity (``x ~ p``) accepts
    ``y ~ q`` with probability ``min(1, w(y) / w(x))``, so ``a = E_{q x q}[min(w(x), w(y))] / E_q[w]``;
    estimated by the U-statistic over all pairs ``i != j`` of the ``n`` given ``log_w`` (any shape).
    Equals 1 iff ``w`` is constant (``q = p``).
    """
    lw = torch.as_tensor(log_w, dtype=torch.float64).reshape(-1)
    n = lw.numel()
    if n < 2 or not bool(torch.isfinite(lw).all()):
        raise ValueError(f"log_w must hold >= 2 finite log-weights, got {n} (finite: {bool(torch.isfinite(lw).all())})")
    w = torch.exp(lw - lw.max())
    ws = torch.sort(w).values
    # sum_{i != j} min(w_i, w_j) = 2 sum_k ws_k (n - 1 - k) over the ascending order (k = 0..n-1)
    pair_sum = 2.0 * float((ws * (n - 1 - torch.arange(n, dtype=torch.float64, device=ws.device))).sum())
    return pair_sum / (n * (n - 1)) / float(w.mean())


def magnetisation_series(configs: torch.Tensor, d: int) -> np.ndarray:
    """``M = (1/V) sum_x phi_x`` per configuration of ``(N, R, *lattice)`` chains: ``(N, R)`` float64."""
    if configs.ndim != d + 2:
        raise ValueError(f"configs must have shape (N, R, *lattice) with {d} lattice axes, got {tuple(configs.shape)}")
    return configs.to(torch.float64).mean(dim=tuple(range(2, configs.ndim))).cpu().numpy()


def well_changes(M: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Tunnelling events per chain of an ``(N, R)`` series: moves between the wells ``M > threshold`` and
    ``M < -threshold``, with hysteresis (a configuration with ``|M| <= threshold``, e.g. a two-domain
    state whose ``M`` fluctuates about 0, keeps the last well). ``threshold = 0``: sign changes. ``(R,)``."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] < 2:
        raise ValueError(f"M must have shape (N >= 2, R), got {M.shape}")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite real >= 0, got threshold={threshold!r}")
    well = np.where(M > threshold, 1, np.where(M < -threshold, -1, 0))
    changes = np.zeros(M.shape[1], dtype=np.int64)
    last = well[0].copy()
    for w in well[1:]:
        moved = (w != 0) & (last != 0) & (w != last)
        changes += moved
        last = np.where(w != 0, w, last)
    return changes


def autocorrelation_row(abs_m: np.ndarray, *, seconds_per_update: float, unit: str, t_max: int) -> dict:
    """Gamma-method ``tau_int`` of ``|M|`` (THEORY 8: ``tau_int = 1/2 + sum_{t=1}^W rho(t)``, automatic window),
    ``rho(t)`` for ``t = 0..t_max`` (fewer when the chains are shorter), in units of ``unit``, and the cost
    ``2 tau_int x seconds_per_update`` of one independent measurement. ``abs_m`` ``(N, R)``."""
    g = gamma_method(abs_m)
    t_max = min(t_max, abs_m.shape[0] - 1)
    return {"unit": unit, "tau_int": g.tau_int, "tau_int_err": g.tau_int_err, "W": g.W, "n_total": g.n_total,
            "n_per_chain": int(abs_m.shape[0]), "n_chains": int(abs_m.shape[1]),
            "absM": g.value, "absM_err": g.err, "rho": autocorrelation(abs_m, t_max=t_max).tolist(),
            "seconds_per_update": seconds_per_update,
            "seconds_per_independent": 2.0 * g.tau_int * seconds_per_update}

