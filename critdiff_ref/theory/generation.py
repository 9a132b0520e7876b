"""Generation with a score trained for a fixed time tau at every diffusion time (THEORY 3): the
per-mode log gain of the PF-ODE with the trained linear score (any process by quadrature, OU in
closed form) and the generated-standard-deviation error.  Numpy float64.  Re-exported by
:mod:`critdiff_ref.theory`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from .._args import real
from ..processes import OU, Process
from ..targets import GaussianField

__all__ = [
    "trained_score_log_gain",
    "trained_score_log_gain_ou",
    "generation_std_error",
]


def _c0_modes(field: GaussianField) -> np.ndarray:
    return field.c0()[field.mode_mask()].numpy()


def trained_score_log_gain(
    field: GaussianField, process: Process, tau: float, *, arch: str = "one-layer", eta: float = 0.25,
    u0: float = 0.01, epsrel: float = 1e-10,
) -> np.ndarray:
    """Per-mode log PF-ODE gain ``int_0^T (gamma + (g^2/2) w_t(k)) dt`` of a linear score trained for ``tau``.

    THEORY 3: one layer, ``w_t = K_t (1 - exp(-eta_t C_t tau))`` (gradient flow from 0) with
    ``eta_t = 1/max_k C_t(k)``.  THEORY 4 (``arch="two-layer"``): ``w_t = -u(tau)``, the balanced
    logistic flow from ``u0`` with the L-independent ``eta``.  The exact score (``tau -> inf``) gives
    ``(1/2) ln(C_0/C_T)``.  Adaptive vector quadrature (scipy ``quad_vec``); one value per
    fluctuating mode (mode-mask order).
    """
    tau = float(tau)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be finite and >= 0, got tau={tau}")
    if arch not in ("one-layer", "two-layer"):
        raise ValueError(f"arch must be 'one-layer' or 'two-layer', got {arch!r}")
    eta, u0 = real("eta", eta, positive=True), real("u0", u0, positive=True)
    c0 = _c0_modes(field)
    c0_max = float(c0.max())

    def integrand(t: float) -> np.ndarray:
        a2, Xi = float(process.a(t)) ** 2, float(process.Xi(t))
        C = a2 * c0 + Xi
        if arch == "one-layer":
            w = -(1.0 / C) * -np.expm1(-tau * C / (a2 * c0_max + Xi))
        else:
            w = -(1.0 / C) / (1.0 + (1.0 / (C * u0) - 1.0) * math.exp(-2.0 * eta * tau))
        return float(process.gamma(t)) + 0.5 * float(process.g(t)) ** 2 * w

    T = float(process.T)
    pts = np.concatenate([[0.0], np.geomspace(1e-6 * T, T, 13)])
    total = np.zeros_like(c0)
    for lo, hi in zip(pts[:-1], pts[1:]):
        total += integrate.quad_vec(integrand, lo, hi, epsabs=0.0, epsrel=epsrel)[0]
    return total


def _exp_scaled_expi(z: np.ndarray) -> np.ndarray:
    """``exp(-z) Ei(z)`` without overflow (asymptotic series ``sum n!/z^{n+1}`` for ``z > 500``)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = z <= 500.0
    out[small] = np.exp(-z[small]) * special.expi(z[small])
    zl = z[~small]
    term, acc = 1.0 / zl, np.zeros_like(zl)
    for n in range(40):  # error ~ 40!/z^41 < 1e-60 at z > 500
        acc += term
        term = term * (n + 1) / zl
    out[~small] = acc
    return out


def trained_score_log_gain_ou(field: GaussianField, T: float, tau: float) -> np.ndarray:
    """Closed form of :func:`trained_score_log_gain` for OU with exponential integrals (THEORY 3).

    With ``u = e^{-2t}``, ``C = 1 + u (c0 - 1)``, ``max C = 1 + u (c0max - 1)`` the variable
    ``x = C / max C`` satisfies ``dt / C = -dx / (2 x (x - 1))``, so
    ``log gain = (1/2) ln(c0 / C_T) + (1/2) [F(x_0) - F(x_T)]``,
    ``F(x) = e^{-tau} Ei(tau (1 - x)) - Ei(-tau x)``, ``x_0 = c0/c0max``; ``x = 1`` (the stiffest
    mode) gives ``e^{-tau} (T - (1/2) ln(c0/C_T))`` for the second term.
    """
    T, tau = real("T", T, positive=True), float(tau)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be finite and >= 0, got tau={tau}")
    c0 = _c0_modes(field)
    c0_max = float(c0.max())
    uT = math.exp(-2.0 * T)
    C_T = 1.0 + uT * (c0 - 1.0)
    exact = 0.5 * np.log(c0 / C_T)
    x0 = c0 / c0_max
    xT = C_T / (1.0 + uT * (c0_max - 1.0))
    flat = np.isclose(x0, 1.0, rtol=0.0, atol=1e-12)
    second = np.empty_like(c0)
    if tau == 0.0:
        second = -exact.copy() + T  # w = 0: gain exp(int gamma) = e^T
        return exact + second
    x0n, xTn = x0[~flat], xT[~flat]

    def F(x: np.ndarray) -> np.ndarray:
        y = tau * (1.0 - x)
        return np.exp(-tau * x) * _exp_scaled_expi(y) - special.expi(-tau * x)

    second[~flat] = 0.5 * (F(x0n) - F(xTn))
    second[flat] = math.exp(-tau) * (T - exact[flat])
    return exact + second


def generation_std_error(
    field: GaussianField, tau: float, *, process: Process | None = None, method: str = "auto",
    arch: str = "one-layer", eta: float = 0.25, u0: float = 0.01,
) -> dict:
    """Relative std-dev error of generated modes, ``e_k = sqrt(v_gen(k)/c0(k)) - 1`` (THEORY 3).

    The PF-ODE starts from the exact ``N(0, C_T)`` and multiplies mode k by the gain of
    :func:`trained_score_log_gain`, so ``v_gen = C_T gain^2`` and ``e_k = expm1(log gain - (1/2) ln(c0/C_T))``.
    ``method``: ``"closed"`` (OU, one layer only), ``"quadrature"`` or ``"auto"`` (closed form for OU, one layer).
    ``arch``, ``eta``, ``u0``: as in :func:`trained_score_log_gain` (``eta``, ``u0`` for two layers only).
    Returns ``{"rms": sqrt(mean e_k^2), "max": max |e_k|, "per_mode": e_k}`` over fluctuating modes.
    """
    process = OU() if process is None else process
    if method not in ("auto", "closed", "quadrature"):
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
    use_closed = method == "closed" or (method == "auto" and isinstance(process, OU) and arch == "one-layer")
    if use_closed:
        if not isinstance(process, OU) or arch != "one-layer":
            raise ValueError("method='closed' needs an OU process and arch='one-layer'")
        log_gain = trained_score_log_gain_ou(field, process.T, tau)
    else:
        log_gain = trained_score_log_gain(field, process, tau, arch=arch, eta=eta, u0=u0)
    c0 = _c0_modes(field)
    T = float(process.T)
    C_T = float(process.a(T)) ** 2 * c0 + float(process.Xi(T))
    e = np.expm1(log_gain - 0.5 * np.log(c0 / C_T))
    return {"rms": float(np.sqrt(np.mean(e**2))), "max": float(np.max(np.abs(e))), "per_mode": e}
