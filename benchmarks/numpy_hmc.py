"""A plain numpy HMC for lattice phi^4 (THEORY 8), the baseline of the library's ``mcmc.hmc``.

Written the way a physicist would write it in an afternoon: vectorised over sites and chains with
``np.roll``, the same action, force, leapfrog (half kick, ``n_steps`` drift-kicks with the last kick
halved) and accept/reject as :mod:`critdiff_ref.samplers.mcmc`, float64 by default.  It lives in
``benchmarks/`` (not in the package): the library's speed is tracked as a ratio to it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["action", "force", "trajectory", "trajectory_given", "hmc"]


def _hop(phi: np.ndarray, d: int) -> np.ndarray:
    return sum(np.roll(phi, -1, axis=-1 - mu) for mu in range(d))


def action(phi: np.ndarray, kappa: float, lam: float, d: int) -> np.ndarray:
    """``S = sum_x [-2 kappa phi_x sum_mu phi_{x+mu} + (1 - 2 lam) phi_x^2 + lam phi_x^4]`` per chain."""
    phi2 = phi * phi
    dens = -2.0 * kappa * phi * _hop(phi, d) + (1.0 - 2.0 * lam) * phi2 + lam * phi2 * phi2
    return dens.reshape(phi.shape[0], -1).sum(axis=1)


def force(phi: np.ndarray, kappa: float, lam: float, d: int) -> np.ndarray:
    """``-dS/dphi_x = 2 kappa sum_mu (phi_{x+mu} + phi_{x-mu}) - 2 (1 - 2 lam) phi_x - 4 lam phi_x^3``."""
    nn = sum(np.roll(phi, s, axis=-1 - mu) for mu in range(d) for s in (1, -1))
    # phi * phi * phi, not phi**3: numpy's float power is ~60x slower than two products
    return 2.0 * kappa * nn - 2.0 * (1.0 - 2.0 * lam) * phi - 4.0 * lam * (phi * phi * phi)


def trajectory(phi: np.ndarray, rng: np.random.Generator, kappa: float, lam: float, d: int,
               eps: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """One HMC trajectory per chain: ``(phi_new, accepted)``; ``phi`` ``(n_chains, *lattice)``, float32
    or float64 (numpy 2 keeps Python-float products in the array's dtype)."""
    pi = rng.standard_normal(phi.shape, dtype=phi.dtype)
    u = rng.random(phi.shape[0], dtype=phi.dtype)
    return trajectory_given(phi, pi, u, kappa, lam, d, eps, n_steps)


def trajectory_given(phi: np.ndarray, pi: np.ndarray, u: np.ndarray, kappa: float, lam: float, d: int,
                     eps: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory with its momenta ``pi`` and uniforms ``u`` given (to check it against the library's)."""
    H0 = action(phi, kappa, lam, d) + 0.5 * (pi * pi).reshape(phi.shape[0], -1).sum(axis=1)
    q = phi
    p = pi + 0.5 * eps * force(q, kappa, lam, d)
    for i in range(n_steps):
        q = q + eps * p
        p = p + (eps if i < n_steps - 1 else 0.5 * eps) * force(q, kappa, lam, d)
    H1 = action(q, kappa, lam, d) + 0.5 * (p * p).reshape(phi.shape[0], -1).sum(axis=1)
    accept = np.log(u) < -(H1 - H0)
    return np.where(accept.reshape((-1,) + (1,) * (phi.ndim - 1)), q, phi), accept


def hmc(phi0: np.ndarray, n_traj: int, *, kappa: float, lam: float, eps: float, n_steps: int,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_traj`` trajectories from ``phi0``: ``(magnetisations (n_traj, n_chains), acceptance (n_chains,))``."""
    rng = np.random.default_rng(seed)
    d = phi0.ndim - 1
    phi, M, acc = phi0.copy(), np.empty((n_traj, phi0.shape[0])), np.zeros(phi0.shape[0])
    for t in range(n_traj):
        phi, accepted = trajectory(phi, rng, kappa, lam, d, eps, n_steps)
        acc += accepted
        M[t] = phi.reshape(phi.shape[0], -1).mean(axis=1)
    return M, acc / n_traj
