"""The chain machinery shared by the MCMC samplers (THEORY 8): the target protocol, the result
record, argument checks and the loop (burn-in, thinning, acceptance, progress callback, and a
:class:`~.guard.FiniteGuard` that raises :class:`FloatingPointError` naming the first non-finite
update, without a per-update host sync on a GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..guard import FiniteGuard

__all__ = ["Action", "ChainResult", "Callback"]

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
