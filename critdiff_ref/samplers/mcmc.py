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
``fused=True`` runs the same bodies compiled by ``torch.compile`` (:mod:`.fused`: one kernel per
leapfrog step instead of a dozen), with the same draws from ``generator``. ``fused="triton"``
(Langevin without correction, Metropolis; :mod:`.triton_mcmc`) runs one hand-written kernel per
update that draws its noise in-kernel (Philox seeded from ``generator``): no noise array in memory,
a different chain from the eager one with the same seed. A non-finite field
raises :class:`FloatingPointError` naming the update (checked without a per-update host sync on
a GPU, :mod:`.guard`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .. import lattice
from ..targets import Phi4Lattice
from . import triton_mcmc
from .fused import check_fused, kernel
from .guard import FiniteGuard

__all__ = [
    "Action",
    "ChainResult",
    "hamiltonian",
    "leapfrog",
    "hmc_step",
    "hmc",
    "checkerboard_masks",
    "local_action_change",
    "metropolis_sweep",
    "metropolis",
    "langevin_step",
    "langevin",
    "euler_langevin_variance",
]

Callback = Callable[[int, int, torch.Tensor], None]


class Action(Protocol):
    """A lattice action: ``action(phi) -> (*batch,)`` and ``force(phi) = -dS/dphi``."""

    def action(self, phi: torch.Tensor) -> torch.Tensor: ...
    def force(self, phi: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ChainResult:
    """Output of a sampler run.

    ``samples`` ``(n_kept, n_chains, *lattice)`` (after burn-in, every ``thin``-th update);
    ``acceptance`` ``(n_chains,)`` the accepted fraction after burn-in (site updates for
    Metropolis); ``dH`` ``(n_updates_after_burn_in, n_chains)`` the HMC energy violations (None
    otherwise); ``final`` the last state ``(n_chains, *lattice)``.
    """

    samples: torch.Tensor
    acceptance: torch.Tensor
    final: torch.Tensor
    dH: torch.Tensor | None = None


# -- argument checks ----------------------------------------------------------------------------
def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number > 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {name}={value}")
    return value


def _count(name: str, value, lower: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {lower}, got {value!r}")
    if value < lower:
        raise ValueError(f"{name} must be >= {lower}, got {name}={value}")
    return value


def _check_state(target: Action, phi0: torch.Tensor) -> torch.Tensor:
    if not (hasattr(target, "action") and hasattr(target, "force")):
        raise TypeError(f"target must have action(phi) and force(phi), got {type(target).__name__}")
    if not isinstance(phi0, torch.Tensor) or not phi0.is_floating_point():
        raise TypeError("phi0 must be a floating torch.Tensor of shape (n_chains, *lattice)")
    shape = getattr(target, "shape", None)
    if shape is not None and (phi0.ndim != len(shape) + 1 or tuple(phi0.shape[1:]) != tuple(shape)):
        raise ValueError(f"phi0 must have shape (n_chains, {', '.join(map(str, shape))}), got {tuple(phi0.shape)}")
    if not bool(torch.isfinite(phi0).all()):
        raise ValueError("phi0 must be finite")
    return phi0.clone()


def _site_sum(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


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


def _run(
    update: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    phi: torch.Tensor,
    n_updates: int,
    burn_in: int,
    thin: int,
    callback: Callback | None,
    name: str,
) -> ChainResult:
    """The shared chain loop: burn-in, thinning, acceptance bookkeeping, progress callback."""
    kept, dHs = [], []
    acc = torch.zeros(phi.shape[0], dtype=torch.float64, device=phi.device)
    total = burn_in + n_updates
    guard = FiniteGuard(total, phi.device, lambda it: f"{name}: non-finite field after update {it} (step size too large?)")
    for it in range(total):
        phi, accepted, dH = update(phi)
        guard.record(it, phi)
        if it >= burn_in:
            acc += accepted.to(torch.float64)
            if dH is not None:
                dHs.append(dH)
            if (it - burn_in) % thin == thin - 1:
                kept.append(phi.clone())
        if callback is not None:
            callback(it + 1, total, phi)
    guard.check()
    samples = torch.stack(kept) if kept else phi.new_zeros((0, *phi.shape))
    return ChainResult(samples, acc / max(n_updates, 1), phi, torch.stack(dHs) if dHs else None)


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


# -- local Metropolis -----------------------------------------------------------------------------
def checkerboard_masks(L: int, d: int, *, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of even and odd sites (``sum_mu x_mu`` mod 2), shape ``(L,)*d``; L must be even."""
    lattice.check_lattice(L, d)
    if L % 2:
        raise ValueError(f"checkerboard updates need an even L (odd L makes wrap-around neighbours equal parity), got L={L}")
    idx = torch.zeros((L,) * d, dtype=torch.long, device=device)
    n = torch.arange(L, device=device)
    for mu in range(d):
        shape = [1] * d
        shape[mu] = L
        idx = idx + n.reshape(shape)
    even = idx % 2 == 0
    return even, ~even


@functools.lru_cache(maxsize=32)
def _cached_masks(L: int, d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`checkerboard_masks` built once per lattice and device (read-only: a sweep never writes them)."""
    return checkerboard_masks(L, d, device=device)


def local_action_change(target: Phi4Lattice, phi: torch.Tensor, phi_new: torch.Tensor) -> torch.Tensor:
    """Per-site ``S(phi with phi_x -> phi_new_x) - S(phi)``, shape of ``phi`` (THEORY 8 action):
    ``-2 kappa (phi'_x - phi_x) sum_mu (phi_{x+mu} + phi_{x-mu}) + (1 - 2 lam)(phi'^2 - phi^2) + lam (phi'^4 - phi^4)``.

    Exact for any set of simultaneously changed sites of which no two are neighbours.
    """
    nn = sum(torch.roll(phi, s, dims=mu) for mu in lattice.lattice_dims(target.d) for s in (1, -1))
    p2, q2 = phi * phi, phi_new * phi_new
    return (
        -2.0 * target.kappa * (phi_new - phi) * nn
        + (1.0 - 2.0 * target.lam) * (q2 - p2)
        + target.lam * (q2 * q2 - p2 * p2)
    )


def _colour_update(
    target: Phi4Lattice, phi: torch.Tensor, u: torch.Tensor, r: torch.Tensor, mask: torch.Tensor, step_size: float
) -> tuple[torch.Tensor, torch.Tensor]:
    proposal = phi + step_size * (2.0 * u - 1.0)
    dS = local_action_change(target, phi, proposal)
    accept = (torch.log(r) < -dS) & mask
    return torch.where(accept, proposal, phi), _site_sum(accept.to(phi.dtype))


def metropolis_sweep(
    target: Phi4Lattice,
    phi: torch.Tensor,
    generator: torch.Generator | None,
    *,
    step_size: float,
    fused: bool | str = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One checkerboard sweep (even sites, then odd): ``(phi_new, accepted fraction (n_chains,))``.
    Per site: ``u, r ~ U(0, 1)``, proposal ``phi + step_size (2u - 1)``, accept iff ``log r < -dS``.
    ``u`` and ``r`` are drawn once per sweep, one pair per site (each colour reads its own sites):
    half the random numbers of a draw per colour, which bound the sweep's cost on the CPU."""
    if fused == "triton":  # one kernel per colour, uniforms drawn in-kernel (.triton_mcmc)
        return triton_mcmc.metropolis_sweep(target, phi, triton_mcmc.draw_seed(generator, phi.device), step_size)
    update = kernel(_colour_update, fused)
    n_acc = torch.zeros(phi.shape[0], dtype=phi.dtype, device=phi.device)
    u = torch.rand(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    r = torch.rand(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    for mask in _cached_masks(target.L, target.d, phi.device):
        phi, accepted = update(target, phi, u, r, mask, step_size)
        n_acc = n_acc + accepted
    return phi, n_acc / target.V


def metropolis(
    target: Phi4Lattice,
    phi0: torch.Tensor,
    *,
    n_sweeps: int,
    step_size: float,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    fused: bool | str = False,
) -> ChainResult:
    """Batched local Metropolis with checkerboard sweeps (THEORY 8); acceptance per site update;
    ``fused=True`` compiles each colour's update (:mod:`.fused`), ``fused="triton"`` runs one Triton
    kernel per colour with in-kernel uniforms (:mod:`.triton_mcmc`; CUDA)."""
    if not isinstance(target, Phi4Lattice):
        raise TypeError(f"metropolis needs a Phi4Lattice target (local action), got {type(target).__name__}")
    phi = _check_state(target, phi0)
    checkerboard_masks(target.L, target.d)  # validates even L
    step_size = _positive("step_size", step_size)
    n_sweeps = _count("n_sweeps", n_sweeps, 1)
    burn_in, thin = _count("burn_in", burn_in, 0), _count("thin", thin, 1)
    fused = check_fused(fused, phi.device, triton=True)

    def update(p):
        p, frac = metropolis_sweep(target, p, generator, step_size=step_size, fused=fused)
        return p, frac, None

    return _run(update, phi, n_sweeps, burn_in, thin, callback, "metropolis")


# -- Langevin ---------------------------------------------------------------------------------------
def _langevin_proposal(target: Action, phi: torch.Tensor, xi: torch.Tensor, dtau: float) -> torch.Tensor:
    return phi + dtau * target.force(phi) + math.sqrt(2.0 * dtau) * xi


def _mala_log_alpha(
    target: Action, phi: torch.Tensor, proposal: torch.Tensor, xi: torch.Tensor, dtau: float
) -> torch.Tensor:
    back = phi - proposal - dtau * target.force(proposal)
    log_q_back = -_site_sum(back * back) / (4.0 * dtau)
    log_q_fwd = -_site_sum(xi * xi) / 2.0  # |phi' - phi - dtau F|^2 / (4 dtau) = xi^2 / 2
    return target.action(phi) - target.action(proposal) + log_q_back - log_q_fwd


def langevin_step(
    target: Action,
    phi: torch.Tensor,
    generator: torch.Generator | None,
    *,
    dtau: float,
    metropolize: bool = False,
    fused: bool | str = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler Langevin ``phi' = phi + dtau F(phi) + sqrt(2 dtau) xi``; with ``metropolize`` (MALA)
    accept with ``min(1, exp(-S(phi') + S(phi)) q(phi | phi') / q(phi' | phi))``,
    ``q(y | x) ∝ exp(-|y - x - dtau F(x)|^2 / (4 dtau))``. Returns ``(phi_new, accepted)``."""
    if fused == "triton":  # one kernel, noise drawn in-kernel (.triton_mcmc)
        if metropolize:
            raise ValueError("fused='triton' runs unadjusted Langevin only (metropolize=False); MALA: fused=True")
        phi_new = triton_mcmc.langevin_step(target, phi, triton_mcmc.draw_seed(generator, phi.device), dtau)
        return phi_new, torch.ones(phi.shape[0], dtype=torch.bool, device=phi.device)
    xi = torch.randn(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    proposal = kernel(_langevin_proposal, fused)(target, phi, xi, dtau)
    if not metropolize:
        return proposal, torch.ones(phi.shape[0], dtype=torch.bool, device=phi.device)
    log_alpha = kernel(_mala_log_alpha, fused)(target, phi, proposal, xi, dtau)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    accept = torch.log(u) < log_alpha
    mask = accept.reshape((-1,) + (1,) * (phi.ndim - 1))
    return torch.where(mask, proposal, phi), accept


def langevin(
    target: Action,
    phi0: torch.Tensor,
    *,
    n_steps: int,
    dtau: float,
    metropolize: bool = False,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    fused: bool | str = False,
) -> ChainResult:
    """Batched Langevin / MALA chains (THEORY 8); without ``metropolize`` acceptance is 1;
    ``fused=True`` compiles the proposal and the MALA ratio (:mod:`.fused`); ``fused="triton"``
    (unadjusted Langevin on a Phi4Lattice) is one Triton kernel per step with in-kernel noise
    (:mod:`.triton_mcmc`; CUDA)."""
    phi = _check_state(target, phi0)
    dtau = _positive("dtau", dtau)
    n_steps = _count("n_steps", n_steps, 1)
    burn_in, thin = _count("burn_in", burn_in, 0), _count("thin", thin, 1)
    if not isinstance(metropolize, bool):
        raise TypeError(f"metropolize must be a bool, got {metropolize!r}")
    fused = check_fused(fused, phi.device, triton=True)

    def update(p):
        p, acc = langevin_step(target, p, generator, dtau=dtau, metropolize=metropolize, fused=fused)
        return p, acc, None

    return _run(update, phi, n_steps, burn_in, thin, callback, "langevin")


def euler_langevin_variance(c0: torch.Tensor, dtau: float) -> torch.Tensor:
    """Stationary mode variance of uncorrected Euler Langevin on a Gaussian with variances ``c0``.

    With stiffness ``lambda_k = 1/c0(k)`` the mode recursion ``phi' = (1 - dtau lambda) phi +
    sqrt(2 dtau) xi`` has fixed point ``v = 2 dtau / (1 - (1 - dtau lambda)^2) = c0 / (1 - dtau / (2 c0))``:
    an ``O(dtau)`` excess ``dtau / 2 + O(dtau^2)``, stable iff ``dtau < 2 min c0``. Modes with
    ``c0 = 0`` (removed) stay 0.
    """
    dtau = _positive("dtau", dtau)
    c0 = torch.as_tensor(c0)
    pos = c0 > 0
    if bool((dtau >= 2.0 * c0[pos]).any()):
        raise ValueError(f"dtau must be < 2 min c0 = {2.0 * float(c0[pos].min())} for a stationary state, got {dtau}")
    safe = torch.where(pos, c0, torch.ones_like(c0))
    return torch.where(pos, safe / (1.0 - dtau / (2.0 * safe)), torch.zeros_like(c0))
