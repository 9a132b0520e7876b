"""Local Metropolis for lattice phi^4 with checkerboard sweeps (THEORY 8).

``phi_x -> phi_x + U(-step_size, step_size)`` on all even sites at once, then all odd sites (no two
same-parity sites are neighbours when L is even), each accepted with ``min(1, exp(-dS_x))`` from
the exact local action change.  ``fused=True`` compiles each colour's update (:mod:`.fused`, same
chain to rounding); ``fused="triton"`` is one Triton kernel per colour with in-kernel uniforms
(:mod:`.triton_steps`, a different chain with the same law).
"""

from __future__ import annotations

import functools

import torch

from ... import lattice
from ...targets import Phi4Lattice
from . import triton_steps
from ._chains import Callback, ChainResult, _check_state, _count, _positive, _run, _site_sum
from ..fused import check_fused, kernel

__all__ = ["checkerboard_masks", "local_action_change", "metropolis_sweep", "metropolis"]


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
    if fused == "triton":  # one kernel per colour, uniforms drawn in-kernel (.triton_steps)
        return triton_steps.metropolis_sweep(target, phi, triton_steps.draw_seed(generator, phi.device), step_size)
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
    kernel per colour with in-kernel uniforms (:mod:`.triton_steps`; CUDA)."""
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
