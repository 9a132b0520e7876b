"""Closed forms for linear score networks (THEORY 3, 4, 5): no training loops, no state.

Training dynamics (THEORY 3, 4); local kernels (THEORY 5) are in :mod:`.local` and generation
with a trained score (THEORY 3) in :mod:`.generation`.

Everything here is per Fourier mode in the unitary convention of THEORY 0: ``C`` is a mode
variance ``C_t(k)``, the exact score kernel is ``K = -1/C``, and a learning rate ``eta`` multiplies
the gradient of the per-mode population loss ``l_k = 1/2 C_k (w_k - K_k)^2``.  Arrays are numpy
float64 (``C`` may be a scalar or any array).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize


__all__ = [
    "one_layer_flow",
    "one_layer_gd",
    "mode_timescale",
    "one_layer_stability_bound",
    "one_layer_steps",
    "logistic_product",
    "two_layer_time_to",
    "two_layer_product",
    "two_layer_rate",
    "two_layer_stability_bound",
    "two_layer_steps_estimate",
]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------
def _positive_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"{name} must be finite and > 0 everywhere, got {name}={value!r}")
    return arr


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number > 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {name}={value}")
    return value


def _accuracy(eps: float) -> float:
    eps = _positive("eps", eps)
    if eps >= 1:
        raise ValueError(f"eps must lie in (0, 1), got eps={eps}")
    return eps


# --------------------------------------------------------------------------------------------
# THEORY 3: one-layer linear score
# --------------------------------------------------------------------------------------------
def one_layer_flow(C, eta: float, tau, w0=0.0) -> np.ndarray:
    """Gradient flow of the one-layer score ``w(tau) = K + (w0 - K) exp(-eta C tau)``, ``K = -1/C`` (THEORY 3).

    From ``w0 = 0`` this is ``K (1 - exp(-eta C tau))``.  ``C``, ``tau``, ``w0`` broadcast.
    """
    C = _positive_array("C", C)
    eta = _positive("eta", eta)
    tau = np.asarray(tau, dtype=np.float64)
    if np.any(tau < 0):
        raise ValueError(f"tau must be >= 0, got {tau!r}")
    K = -1.0 / C
    return K + (np.asarray(w0, dtype=np.float64) - K) * np.exp(-eta * C * tau)


def one_layer_gd(C, eta: float, n, w0=0.0) -> np.ndarray:
    """Gradient descent on the one-layer loss: ``w_n - K = (1 - eta C)^n (w0 - K)`` (THEORY 3)."""
    C = _positive_array("C", C)
    eta = _positive("eta", eta)
    n = np.asarray(n)
    if np.any(n < 0):
        raise ValueError(f"n must be >= 0, got {n!r}")
    K = -1.0 / C
    return K + (1.0 - eta * C) ** n * (np.asarray(w0, dtype=np.float64) - K)


def mode_timescale(C, eta: float) -> np.ndarray:
    """Relaxation time of mode k under gradient flow, ``1 / (eta C_k)`` (THEORY 3)."""
    return 1.0 / (_positive("eta", eta) * _positive_array("C", C))


def one_layer_stability_bound(C) -> float:
    """Largest stable GD learning rate of the one-layer loss, ``2 / max_k C_k`` (THEORY 3)."""
    return 2.0 / float(np.max(_positive_array("C", C)))


def one_layer_steps(C, eta: float, eps: float, w0=0.0) -> np.ndarray:
    """Per-mode GD steps until the relative error ``|1 - eta C|^n |w0 - K| / |K|`` is below ``eps``.

    THEORY 3: ``n_k = min{n : |1 - eta C_k|^n r_0 < eps}`` with ``r_0 = |w0 C + 1|`` the initial
    relative error (1 from ``w0 = 0``).  ``inf`` where GD does not converge (``eta C >= 2``).
    """
    C = _positive_array("C", C)
    eta, eps = _positive("eta", eta), _accuracy(eps)
    q = np.abs(1.0 - eta * C)
    r0 = np.abs(np.asarray(w0, dtype=np.float64) * C + 1.0) * np.ones_like(C)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.floor(np.log(eps / r0) / np.log(q)) + 1.0
    n = np.where(r0 < eps, 0.0, n)
    n = np.where((q == 0) & (r0 >= eps), 1.0, n)
    return np.where((q >= 1) & (r0 >= eps), np.inf, n)


# --------------------------------------------------------------------------------------------
# THEORY 4: two-layer linear score, product u = a b, target u* = 1/C
# --------------------------------------------------------------------------------------------
def logistic_product(C, eta: float, tau, u0) -> np.ndarray:
    """Balanced two-layer flow ``u(tau) = u* / (1 + (u*/u0 - 1) exp(-2 eta tau))``, ``u* = 1/C`` (THEORY 4)."""
    C = _positive_array("C", C)
    eta = _positive("eta", eta)
    u0 = _positive_array("u0", u0)
    ustar = 1.0 / C
    return ustar / (1.0 + (ustar / u0 - 1.0) * np.exp(-2.0 * eta * np.asarray(tau, dtype=np.float64)))


def _check_two_layer(C: float, Delta: float, eta: float, u0: float) -> tuple[float, float, float, float]:
    C, eta = _positive("C", C), _positive("eta", eta)
    Delta, u0 = float(Delta), float(u0)
    if not (math.isfinite(Delta) and math.isfinite(u0)):
        raise ValueError(f"Delta and u0 must be finite, got Delta={Delta}, u0={u0}")
    if Delta == 0.0 and u0 <= 0.0:
        raise ValueError(f"a balanced start (Delta = 0) needs u0 > 0 (else u -> 0, never 1/C), got u0={u0}")
    if u0 == 1.0 / C:
        raise ValueError("u0 equals the fixed point 1/C; the trajectory is constant")
    return C, Delta, eta, u0


def _two_layer_potential(u, C: float, Delta: float):
    """``F(u) = (1/(C R)) ln|(R S(u) + 4 u* u + Delta^2) / (u - u*)|`` with ``tau = (F(u) - F(u0)) / eta``.

    Antiderivative of ``1/(sqrt(Delta^2 + 4u^2)(1 - C u))``: ``u* = 1/C``, ``S(u) = sqrt(Delta^2 + 4u^2)``,
    ``R = S(u*)``.  Cauchy–Schwarz gives ``R S >= |4 u* u + Delta^2|``, so the log argument is > 0.
    """
    u = np.asarray(u, dtype=np.float64)
    ustar = 1.0 / C
    R = math.hypot(Delta, 2.0 * ustar)
    S = np.hypot(Delta, 2.0 * u)
    num = R * S + 4.0 * ustar * u + Delta * Delta
    return (np.log(num) - np.log(np.abs(u - ustar))) / (C * R)


def two_layer_time_to(u, C: float, Delta: float, eta: float, u0: float) -> np.ndarray:
    """Closed-form time for the two-layer product to reach ``u`` from ``u0`` (THEORY 4, general start).

    Separable ODE ``du/dtau = eta sqrt(Delta^2 + 4u^2) (1 - C u)``, ``Delta = a^2 - b^2`` conserved:
    ``tau(u) = (1/(eta sqrt(4 + C^2 Delta^2))) ln[(R S(u) + 4u/C + Delta^2)(u0 - 1/C) / ((R S(u0) + 4u0/C + Delta^2)(u - 1/C))]``
    (``S(u) = sqrt(Delta^2 + 4 u^2)``, ``R = S(1/C)``; ``C R = sqrt(4 + C^2 Delta^2)``); the logistic law at ``Delta = 0``.
    """
    C, Delta, eta, u0 = _check_two_layer(C, Delta, eta, u0)
    return (_two_layer_potential(u, C, Delta) - _two_layer_potential(u0, C, Delta)) / eta


def two_layer_product(tau, C: float, Delta: float, eta: float, u0: float) -> np.ndarray:
    """Two-layer product ``u(tau)`` for any start, by inverting :func:`two_layer_time_to` with brentq.

    ``u`` moves monotonically from ``u0`` to ``u* = 1/C``; where ``u`` is within a few ulps of ``u*``
    the result is ``u*``.  ``tau`` a scalar or array (>= 0).
    """
    C, Delta, eta, u0 = _check_two_layer(C, Delta, eta, u0)
    taus = np.asarray(tau, dtype=np.float64)
    if np.any(taus < 0) or not np.all(np.isfinite(taus)):
        raise ValueError(f"tau must be finite and >= 0, got {tau!r}")
    ustar = 1.0 / C
    side = math.copysign(1.0, u0 - ustar)
    u_end = ustar + side * 8.0 * np.finfo(float).eps * max(abs(ustar), abs(u0))
    F0 = float(_two_layer_potential(u0, C, Delta))
    tau_end = (float(_two_layer_potential(u_end, C, Delta)) - F0) / eta
    out = np.empty(taus.shape)
    for i, ti in np.ndenumerate(taus):
        if ti == 0:
            out[i] = u0
        elif ti >= tau_end:
            out[i] = ustar
        else:
            f = lambda v: (float(_two_layer_potential(v, C, Delta)) - F0) / eta - ti  # noqa: E731
            out[i] = optimize.brentq(f, u0, u_end, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return out if out.ndim else float(out)


def two_layer_rate(C, Delta, eta: float) -> np.ndarray:
    """Decay rate of ``u - u*`` near the fixed point, ``eta sqrt(4 + C^2 Delta^2)`` (THEORY 4)."""
    C = _positive_array("C", C)
    return _positive("eta", eta) * np.sqrt(4.0 + (C * np.asarray(Delta, dtype=np.float64)) ** 2)


def two_layer_stability_bound(C, Delta) -> np.ndarray:
    """Largest stable GD learning rate at the two-layer fixed point, ``2 / sqrt(4 + C^2 Delta^2)`` (THEORY 4).

    The loss Hessian in ``(a, b)`` at ``a b = 1/C`` has eigenvalues 0 and ``C (a^2 + b^2) = sqrt(4 + C^2 Delta^2)``.
    """
    C = _positive_array("C", C)
    return 2.0 / np.sqrt(4.0 + (C * np.asarray(Delta, dtype=np.float64)) ** 2)


def two_layer_steps_estimate(C, eta: float, eps: float, u0) -> np.ndarray:
    """Gradient-flow time to relative accuracy ``eps`` from a balanced start, ``ln((u*/u0 - 1)/eps) / (2 eta)``.

    THEORY 4 (leading order in ``eps``); logarithmic in ``C``, independent of the condition number.
    """
    C = _positive_array("C", C)
    eta, eps = _positive("eta", eta), _accuracy(eps)
    u0 = _positive_array("u0", u0)
    return np.log(np.abs(1.0 / (C * u0) - 1.0) / eps) / (2.0 * eta)
