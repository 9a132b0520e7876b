"""Local score kernels (THEORY 5): the exact kernel truncated to a box of radius ``ell``, its
relative error per diffusion time and its worst case, and the optimal (normal-equation) local kernel.
Kernels are built with the torch ``GaussianField``; errors are Python floats / numpy float64.
Re-exported by :mod:`critdiff_ref.theory`.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import lattice
from .._args import real
from ..processes import OU, Process, check_time
from ..targets import GaussianField

__all__ = [
    "truncated_kernel",
    "local_truncation_error",
    "max_local_truncation_error",
    "local_normal_equations",
    "optimal_local_kernel",
]


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
    t_min, t_max = real("t_min", t_min, positive=True), real("t_max", t_max, positive=True)
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
