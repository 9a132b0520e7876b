"""Langevin dynamics (stochastic quantisation) for lattice phi^4 and any target with a force (THEORY 8).

Euler ``phi <- phi + dtau F(phi) + sqrt(2 dtau) xi`` (O(dtau) bias, known exactly on a Gaussian:
:func:`euler_langevin_variance`), optionally Metropolis-corrected (MALA; exact).  ``fused=True``
compiles the proposal and the MALA ratio (:mod:`.fused`, same chain to rounding); ``fused="triton"``
(unadjusted, Phi4Lattice) is one Triton kernel per step with in-kernel noise (:mod:`.triton_steps`).
"""

from __future__ import annotations

import math

import torch

from . import triton_steps
from ._chains import Action, Callback, ChainResult, _check_state, _count, _positive, _run, _site_sum
from ..fused import check_fused, kernel

__all__ = ["langevin_step", "langevin", "euler_langevin_variance"]


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
    if fused == "triton":  # one kernel, noise drawn in-kernel (.triton_steps)
        if metropolize:
            raise ValueError("fused='triton' runs unadjusted Langevin only (metropolize=False); MALA: fused=True")
        phi_new = triton_steps.langevin_step(target, phi, triton_steps.draw_seed(generator, phi.device), dtau)
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
    (:mod:`.triton_steps`; CUDA)."""
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
