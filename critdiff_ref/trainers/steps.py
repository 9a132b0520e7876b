"""Steps to accuracy of deterministic full-batch descent on the exact population loss (THEORY 3, 4, 5).

No autograd: the population loss of a linear score is a sum of per-mode quadratics (one and two
layers, Fourier-diagonal) or a quadratic form on the box (a local kernel), so descent is iterated
directly on those variables.  :func:`critdiff_ref.trainers.train` on the torch modules follows the
same iterates (tested in ``invariants/``).
"""

from __future__ import annotations

import math

import torch

from .. import theory
from ..processes import OU, Process, check_time
from ..targets import GaussianField

__all__ = [
    "ARCHS",
    "fourier_descent",
    "heavy_ball_parameters",
    "mismatch_descent",
    "local_descent",
    "default_ell",
    "steps_to_accuracy",
]

ARCHS = ("one-layer", "one-layer-momentum", "two-layer", "local")


def _check_max_steps(max_steps) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got max_steps={max_steps!r}")
    return max_steps


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {name}={value!r}")
    return float(value)


def fourier_descent(
    arch: str, C: torch.Tensor, eta: float, eps: float, *, beta: float = 0.0, a0=0.1, b0=0.1, max_steps: int = 10**6
) -> int:
    """Steps of per-mode full-batch descent until every mode has ``|w_k - K_k| / |K_k| < eps``.

    ``arch="one-layer"``: ``w <- w - eta C (w - K) + beta (w - w_prev)`` from ``w = 0`` (heavy ball for
    ``beta > 0``; THEORY 3).  ``arch="two-layer"``: ``a <- a - eta b (C a b - 1)``,
    ``b <- b - eta a (C a b - 1)`` from ``(a0, b0)`` (scalars or per-mode tensors; THEORY 4).  Complex
    per-mode starts (the multipliers of real-space kernels, e.g. :func:`kaiming_kernels`) use
    ``a <- a - eta conj(b) (C a b - 1)``, the exact image of real-space GD; ``|a|^2 - |b|^2`` is conserved.
    ``C``: the fluctuating mode variances (any shape).  Raises RuntimeError after ``max_steps``
    (divergence or too slow).
    """
    eta = _check_rate("eta", eta)
    max_steps = _check_max_steps(max_steps)
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1), got eps={eps!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1), got beta={beta!r}")
    C = torch.as_tensor(C, dtype=torch.float64).flatten()
    if not bool((C > 0).all()):
        raise ValueError("C must be > 0 in every mode (pass the fluctuating modes only)")
    K = -1.0 / C
    if arch == "one-layer":
        w = torch.zeros_like(C)
        w_prev = w.clone()
        for n in range(1, max_steps + 1):
            w, w_prev = w - eta * C * (w - K) + beta * (w - w_prev), w
            if bool(((w * C + 1.0).abs() < eps).all()):
                return n
            if not bool(torch.isfinite(w).all()):
                break
    elif arch == "two-layer":
        a, b = torch.as_tensor(a0), torch.as_tensor(b0)
        dtype = torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64
        a = (a.flatten() if a.ndim else a).to(dtype).expand_as(C).clone()
        b = (b.flatten() if b.ndim else b).to(dtype).expand_as(C).clone()
        for n in range(1, max_steps + 1):
            g = C * a * b - 1.0
            a, b = a - eta * b.conj() * g, b - eta * a.conj() * g
            if bool(((C * a * b - 1.0).abs() < eps).all()):
                return n
            if not bool(torch.isfinite(a).all()):
                break
    else:
        raise ValueError(f"arch must be 'one-layer' or 'two-layer', got {arch!r}")
    raise RuntimeError(f"{arch} descent did not reach eps={eps} within {max_steps} steps (eta={eta}, beta={beta})")


def heavy_ball_parameters(C: torch.Tensor) -> tuple[float, float]:
    """Optimal heavy-ball ``(eta, beta)`` for curvatures in ``[min C, max C]`` (THEORY 3):
    ``eta = 4 / (sqrt(max) + sqrt(min))^2``, ``beta = ((sqrt(max) - sqrt(min)) / (sqrt(max) + sqrt(min)))^2``."""
    C = torch.as_tensor(C, dtype=torch.float64)
    if C.numel() == 0 or not bool((C > 0).all()):
        raise ValueError("C must be non-empty and > 0 everywhere")
    hi, lo = math.sqrt(float(C.max())), math.sqrt(float(C.min()))
    return 4.0 / (hi + lo) ** 2, ((hi - lo) / (hi + lo)) ** 2


def mismatch_descent(C: torch.Tensor, Delta: float, eps: float = 1e-2, *, u0: float = 0.01, max_steps: int = 10**6) -> int:
    """Two-layer GD steps from an unbalanced start with the same mismatch ``Delta = a^2 - b^2`` in every mode (THEORY 4).

    Start ``a^2 = (Delta + sqrt(Delta^2 + 4 u0^2)) / 2``, ``b = u0 / a`` (product ``u0``); learning rate a
    quarter of the fixed-point stability bound of the stiffest mode, ``eta = 0.5 / sqrt(4 + C_max^2 Delta^2)``
    (``0.25`` at ``Delta = 0``, the balanced rule).  For ``C_max Delta >> 1`` the rate falls like
    ``1 / (C_max Delta)`` and the soft modes, whose decay rate is ``~2 eta``, need ``~ C_max Delta`` steps.
    """
    C = torch.as_tensor(C, dtype=torch.float64).flatten()
    Delta = float(Delta)
    if not (math.isfinite(Delta) and Delta >= 0):
        raise ValueError(f"Delta must be finite and >= 0, got Delta={Delta}")
    u0 = _check_rate("u0", u0)
    a = math.sqrt((Delta + math.hypot(Delta, 2.0 * u0)) / 2.0)
    b = u0 / a
    eta = 0.5 / math.sqrt(4.0 + (float(C.max()) * Delta) ** 2)
    return fourier_descent("two-layer", C, eta, eps, a0=a, b0=b, max_steps=max_steps)


def default_ell(L: int) -> int:
    """Local radius growing like ``ln L`` (THEORY 5): ``round(ln L)``, at least 1, at most ``(L - 2) // 2``."""
    return max(1, min(round(math.log(L)), (L - 2) // 2))


def local_descent(
    field: GaussianField, process: Process, t: float, ell: int, eps: float = 1e-2, *, max_steps: int = 10**6
) -> int:
    """GD steps of a radius-``ell`` one-layer kernel on the exact population loss (THEORY 5).

    The loss is ``kappa^T A kappa - 2 h^T kappa + const`` on the box (:func:`theory.local_normal_equations`);
    from ``kappa = 0`` with ``eta = 1 / lambda_max(A)``, ``kappa <- kappa - eta (A kappa - h)``, until the
    excess loss over the best local kernel ``kappa* = A^{-1} h`` has fallen to ``eps^2`` of its start, i.e.
    ``||kappa - kappa*||_A / ||kappa*||_A < eps`` (the analogue of the per-mode criterion; the truncation
    error itself cannot be trained away).  The curvature spread is that of the field restricted to the box.
    """
    max_steps = _check_max_steps(max_steps)
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1), got eps={eps!r}")
    A, h, _ = theory.local_normal_equations(field, process, t, ell)
    lam_max = float(torch.linalg.eigvalsh(A)[-1])
    eta = 1.0 / lam_max
    kappa_star = torch.linalg.solve(A, h)

    def a_norm(v: torch.Tensor) -> float:
        return math.sqrt(max(float(v @ (A @ v)), 0.0))

    target = eps * a_norm(kappa_star)
    kappa = torch.zeros_like(h)
    for n in range(1, max_steps + 1):
        kappa = kappa - eta * (A @ kappa - h)
        if a_norm(kappa - kappa_star) < target:
            return n
    raise RuntimeError(f"local descent did not reach eps={eps} within {max_steps} steps (ell={ell})")


def steps_to_accuracy(
    arch: str, L: int, d: int = 2, r: float = 0.0, t: float = 0.01, eps: float = 1e-2,
    process: Process | None = None, *, eta: float | None = None, u0: float = 0.01, ell: int | None = None,
    max_steps: int = 10**6,
) -> int:
    """Full-batch GD steps on the exact population loss until every mode's relative error is below ``eps``.

    THEORY 3/4/5.  ``arch``: ``"one-layer"`` (start ``w = 0``, ``eta = 1/max C`` unless given),
    ``"one-layer-momentum"`` (optimal heavy ball, :func:`heavy_ball_parameters`), ``"two-layer"``
    (balanced start ``a = b = sqrt(u0)``, default ``u0 = 0.01``, ``eta = 0.25`` independent of L),
    ``"local"`` (radius-``ell`` kernel, default :func:`default_ell`, criterion of :func:`local_descent`).
    ``process`` defaults to ``OU()``.  Deterministic.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1), got eps={eps!r}")
    process = OU() if process is None else process
    target = GaussianField(L, d, r)
    check_time(process, t)
    if t <= 0:
        raise ValueError(f"t must be > 0, got t={t}")
    if eta is not None:
        eta = _check_rate("eta", eta)
    C = target.mode_variance(process, t)[target.mode_mask()]
    if arch == "one-layer":
        return fourier_descent("one-layer", C, 1.0 / float(C.max()) if eta is None else eta, eps, max_steps=max_steps)
    if arch == "one-layer-momentum":
        hb_eta, beta = heavy_ball_parameters(C)
        return fourier_descent("one-layer", C, hb_eta if eta is None else eta, eps, beta=beta, max_steps=max_steps)
    if arch == "local":
        return local_descent(target, process, t, default_ell(L) if ell is None else ell, eps, max_steps=max_steps)
    u0 = _check_rate("u0", u0)
    s = math.sqrt(u0)
    return fourier_descent("two-layer", C, 0.25 if eta is None else eta, eps, a0=s, b0=s, max_steps=max_steps)
