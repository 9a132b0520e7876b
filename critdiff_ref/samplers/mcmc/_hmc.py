"""Markov chain Monte Carlo for lattice phi^4 (THEORY 8): HMC, checkerboard Metropolis, Langevin.

Every sampler runs a batch of independent chains at once: ``phi`` has shape
``(n_chains, *lattice)``; dtype and device follow the start configuration. Randomness only
through the ``generator`` argument. A target is anything with ``action(phi) -> (*batch,)`` and
``force(phi) = -dS/dphi`` (:class:`~critdiff_ref.targets.Phi4Lattice`); local Metropolis needs
the lattice action itself.

- HMC: momenta ``pi ~ N(0, 1)``, ``H = S(phi) + sum pi^2 / 2``, leapfrog with step ``eps``
  and ``n_steps`` steps, accept with ``min(1, exp(-dH))``.
- Local Metropolis: ``phi_x -> phi_x + U(-step_size, step_size)`` on all even sites at once,
  then all odd sites (no two same-parity sites are neighbours when L is even).
- Langevin (stochastic quantisation): ``phi <- phi + dtau F(phi) + sqrt(2 dtau) xi`` (Euler;
  O(dtau) bias), optionally Metropolis-corrected (MALA; exact).

Every update's arithmetic is a private body function with its random numbers passed in;
``fused=True`` runs the same bodies compiled by ``torch.compile`` (:mod:`..fused`: one kernel per
leapfrog step instead of a dozen), with the same draws from ``generator``. ``fused="triton"``
(Langevin without correction, Metropolis; :mod:`.triton_steps`) runs one hand-written kernel per
update that draws its noise in-kernel (Philox seeded from ``generator``): no noise array in memory,
a different chain from the eager one with the same seed. A non-finite field
raises :class:`FloatingPointError` naming the update (checked without a per-update host sync on
a GPU, :mod:`.guard`).

HMC lives here; Metropolis in :mod:`._metropolis`, Langevin in :mod:`._langevin`, the shared chain
loop in :mod:`._chains`; the package :mod:`critdiff_ref.samplers.mcmc` is their public face.
"""

from __future__ import annotations

import torch

from ._chains import Action, Callback, ChainResult, _check_state, _count, _positive, _run, _site_sum
from ..fused import check_fused, kernel

__all__ = [
    "hamiltonian",
    "leapfrog",
    "hmc_step",
    "hmc",
]


# -- HMC ------------------------------------------------------------------------------------------
def hamiltonian(target: Action, phi: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """``H = S(phi) + 1/2 sum_x pi_x^2`` per chain (THEORY 8), shape ``(n_chains,)``."""
    return target.action(phi) + 0.5 * _site_sum(pi * pi)


def _kick(target: Action, phi: torch.Tensor, pi: torch.Tensor, amount: float) -> torch.Tensor:
    return pi + amount * target.force(phi)


def _drift_kick(
    target: Action, phi: torch.Tensor, pi: torch.Tensor, eps: float, amount: float
) -> tuple[torch.Tensor, torch.Tensor]:
    phi = phi + eps * pi
    return phi, pi + amount * target.force(phi)


def leapfrog(
    target: Action, phi: torch.Tensor, pi: torch.Tensor, eps: float, n_steps: int, *, fused: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leapfrog: ``pi += eps/2 F``; ``n_steps`` x (``phi += eps pi``; ``pi += eps F``) with the last
    momentum kick halved. Time-reversible and volume-preserving; ``dH = O(eps^2)`` at fixed length.
    ``fused``: each drift-kick step is one compiled kernel (:mod:`.fused`)."""
    kick, drift_kick = kernel(_kick, fused), kernel(_drift_kick, fused)
    pi = kick(target, phi, pi, 0.5 * eps)
    for i in range(n_steps):
        phi, pi = drift_kick(target, phi, pi, eps, eps if i < n_steps - 1 else 0.5 * eps)
    return phi, pi


def hmc_step(
    target: Action,
    phi: torch.Tensor,
    generator: torch.Generator | None,
    *,
    eps: float,
    n_steps: int,
    fused: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One HMC trajectory per chain: ``(phi_new, accepted (n_chains,) bool, dH (n_chains,))``."""
    pi = torch.randn(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    H0 = hamiltonian(target, phi, pi)
    phi_new, pi_new = leapfrog(target, phi, pi, eps, n_steps, fused=fused)
    dH = hamiltonian(target, phi_new, pi_new) - H0
    u = torch.rand(dH.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    accept = torch.log(u) < -dH  # NaN dH (a diverged trajectory) is rejected
    mask = accept.reshape((-1,) + (1,) * (phi.ndim - 1))
    return torch.where(mask, phi_new, phi), accept, dH


def hmc(
    target: Action,
    phi0: torch.Tensor,
    *,
    n_traj: int,
    eps: float,
    n_steps: int,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    fused: bool = False,
) -> ChainResult:
    """Batched HMC (THEORY 8): ``burn_in`` then ``n_traj`` trajectories, every ``thin``-th kept.

    ``phi0`` ``(n_chains, *lattice)``; ``callback(done, total, phi)`` after each trajectory;
    ``fused`` compiles the leapfrog steps (same chain to rounding, :mod:`.fused`).
    """
    phi = _check_state(target, phi0)
    eps = _positive("eps", eps)
    n_steps, n_traj = _count("n_steps", n_steps, 1), _count("n_traj", n_traj, 1)
    burn_in, thin = _count("burn_in", burn_in, 0), _count("thin", thin, 1)
    fused = check_fused(fused, phi.device)
    return _run(
        lambda p: hmc_step(target, p, generator, eps=eps, n_steps=n_steps, fused=fused),
        phi, n_traj, burn_in, thin, callback, "hmc",
    )
