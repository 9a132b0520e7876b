"""Closed forms for linear score networks (THEORY 3, 4, 5): no training loops, no state.

Everything here is per Fourier mode in the unitary convention of THEORY 0: ``C`` is a mode
variance ``C_t(k)``, the exact score kernel is ``K = -1/C``, and a learning rate ``eta`` multiplies
the gradient of the per-mode population loss ``l_k = 1/2 C_k (w_k - K_k)^2``.  Arrays are numpy
float64 (``C`` may be a scalar or any array); the local-kernel functions use the torch
``GaussianField`` only to build kernels and return Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, optimize, special

from . import lattice
from .processes import OU, Process, check_time
from .targets import GaussianField

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
    "truncated_kernel",
    "local_truncation_error",
    "max_local_truncation_error",
    "local_normal_equations",
    "optimal_local_kernel",
    "trained_score_log_gain",
    "trained_score_log_gain_ou",
    "generation_std_error",
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


# --------------------------------------------------------------------------------------------
# THEORY 5: local kernels
# --------------------------------------------------------------------------------------------
def _check_ell(ell: int, L: int) -> int:
    if isinstance(ell, bool) or not isinstance(ell, int) or ell < 0:
        raise ValueError(f"ell must be an int >= 0, got ell={ell!r}")
    return ell


def truncated_kernel(field: GaussianField, process: Process, t: float, ell: int) -> torch.Tensor:
    """Real-space score kernel truncated to the box: ``K_ell(x) = K_t(x)`` if ``|x|_inf <= ell`` else 0 (THEORY 5).

    Shape ``(L,)*d``, float64, with ``s(x) = sum_y K_ell(x - y) phi(y)``.
    """
    _check_ell(ell, field.L)
    K = field.real_space_score_kernel(process, t)
    return torch.where(lattice.box_mask(field.L, field.d, ell), K, torch.zeros_like(K))


def _truncation_errors(field: GaussianField, process: Process, ts: np.ndarray, ell: int, chunk: int) -> np.ndarray:
    dims = lattice.lattice_dims(field.d)
    box = lattice.box_mask(field.L, field.d, ell)
    out = []
    for start in range(0, len(ts), chunk):
        tt = torch.as_tensor(ts[start : start + chunk], dtype=torch.float64)
        C = field.mode_variance(process, tt)  # (nt, *lattice), 0 on a removed zero mode
        mask = field.mode_mask()
        K = torch.where(mask, -1.0 / torch.where(mask, C, torch.ones_like(C)), torch.zeros_like(C))
        K_x = torch.fft.ifftn(K, dim=dims).real
        K_ell = torch.fft.fftn(torch.where(box, K_x, torch.zeros_like(K_x)), dim=dims)
        num = ((K - K_ell).abs() ** 2 * C).sum(dim=dims)
        den = (K.abs() ** 2 * C).sum(dim=dims)
        out.append(torch.sqrt(num / den).numpy())
    return np.concatenate(out)


def local_truncation_error(field: GaussianField, process: Process, t, ell: int) -> np.ndarray | float:
    """Relative local-score error ``eps(t; ell) = sqrt(sum_k |K_t - K_ell|^2 C_t / sum_k |K_t|^2 C_t)`` (THEORY 5).

    Exact on the lattice via FFTs; ``t`` a float (float result) or a 1-D array of times in ``(0, T]``.
    """
    _check_ell(ell, field.L)
    check_time(process, t)
    ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if np.any(ts <= 0):
        raise ValueError(f"t must be > 0 (K_t is singular at t = 0 on a critical lattice), got {t!r}")
    chunk = max(1, 2**22 // field.V)
    err = _truncation_errors(field, process, ts, ell, chunk)
    return float(err[0]) if np.ndim(t) == 0 else err


def max_local_truncation_error(
    L: int, d: int, ell: int, *, r: float = 0.0, process: Process | None = None,
    t_min: float = 1e-3, t_max: float = 10.0, n_times: int = 80,
) -> float:
    """``eps_max(ell, L, d) = max_t eps(t; ell, L, d)`` over ``n_times`` log-spaced ``t`` in ``[t_min, t_max]`` (THEORY 5).

    ``process`` defaults to ``OU(T=t_max)`` (THEORY 5 measured OU, 80 times in [1e-3, 10]).
    """
    field = GaussianField(L, d, r)
    t_min, t_max = _positive("t_min", t_min), _positive("t_max", t_max)
    if not t_max > t_min:
        raise ValueError(f"need t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if isinstance(n_times, bool) or not isinstance(n_times, int) or n_times < 1:
        raise ValueError(f"n_times must be an int >= 1, got n_times={n_times!r}")
    process = OU(T=t_max) if process is None else process
    ts = np.geomspace(t_min, t_max, n_times)
    return float(np.max(local_truncation_error(field, process, ts, ell)))


def local_normal_equations(
    field: GaussianField, process: Process, t: float, ell: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Population loss of a radius-``ell`` kernel as a quadratic form: ``(A, h, sites)`` (THEORY 5).

    For a kernel supported on the box sites ``z`` (``sites``, ``(m, d)``) with values ``kappa``,
    ``sum_k C_t |K_hat - K_t|^2 = kappa^T A kappa - 2 h^T kappa + const`` with ``A(z, z') = G(z - z')``,
    ``G(z) = sum_k C_t(k) e^{ikz}`` (the forward-marginal covariance times V) and
    ``h(z) = sum_k C_t(k) K_t(k) e^{ikz}``.  ``A`` is ``(m, m)``, ``h`` is ``(m,)``, float64.
    """
    _check_ell(ell, field.L)
    if field.zero_mode_removed and 2 * ell + 1 >= field.L:
        raise ValueError(f"need 2 ell + 1 < L at r = 0 (a full box has a free constant mode), got ell={ell}, L={field.L}")
    check_time(process, t)
    dims = lattice.lattice_dims(field.d)
    C = field.mode_variance(process, t)
    K = field.score_kernel(process, t)
    G = torch.fft.ifftn(C, dim=dims).real * field.V
    h = torch.fft.ifftn(C * K, dim=dims).real * field.V
    box = lattice.box_mask(field.L, field.d, min(ell, field.L // 2))
    sites = box.nonzero()  # (m, d)
    diff = (sites[:, None, :] - sites[None, :, :]) % field.L
    A = G[tuple(diff[..., mu] for mu in range(field.d))]
    rhs = h[tuple(sites[:, mu] for mu in range(field.d))]
    return A, rhs, sites


def optimal_local_kernel(field: GaussianField, process: Process, t: float, ell: int) -> torch.Tensor:
    """Best radius-``ell`` kernel for the population loss: argmin over box kernels of ``sum_k C_t |K_hat - K_t|^2``.

    THEORY 5 network version: no box-supported network (the 3-layer net included) can reach a lower
    loss.  Solves the normal equations ``A kappa = h`` of :func:`local_normal_equations`.  Shape ``(L,)*d``.
    """
    A, rhs, sites = local_normal_equations(field, process, t, ell)
    sol = torch.linalg.solve(A, rhs)
    out = torch.zeros(field.shape, dtype=torch.float64)
    out[tuple(sites[:, mu] for mu in range(field.d))] = sol
    return out


# --------------------------------------------------------------------------------------------
# THEORY 3: generation with a score trained for a fixed time tau at every diffusion time
# --------------------------------------------------------------------------------------------
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
    eta, u0 = _positive("eta", eta), _positive("u0", u0)
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
    T, tau = _positive("T", T), float(tau)
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
