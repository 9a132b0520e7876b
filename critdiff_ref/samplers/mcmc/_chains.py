"""The chain machinery shared by the MCMC samplers (THEORY 8): the target protocol, the result
record, argument checks, the thread policy and the loop (burn-in, thinning, acceptance, progress
callback, and a :class:`~.guard.FiniteGuard` that raises :class:`FloatingPointError` naming the first
non-finite update, without a per-update host sync on a GPU).

Thread policy: the package policy of :mod:`critdiff_ref._threads` (one thread per
``WORK_PER_THREAD`` sites of all chains together), never more than torch's current setting (the
caller's ``torch.set_num_threads``), and never more than the cores the load average leaves idle -- unless
the user said: ``OMP_NUM_THREADS`` or a CLI ``--threads N`` is kept as it is.  On a loaded machine extra
threads only spin at OpenMP
barriers (measured: 16 chains at L = 64 ran 7x slower with torch's default threads on a loaded 2-core
machine).  The loop runs under :func:`chain_threads` and restores torch's setting afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ... import _threads
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
    otherwise); ``final`` the last state ``(n_chains, *lattice)``; ``eps`` the HMC leapfrog step
    used after burn-in (the adapted one, frozen; None for the other samplers).
    """

    samples: torch.Tensor
    acceptance: torch.Tensor
    final: torch.Tensor
    dH: torch.Tensor | None = None
    eps: float | None = None


# -- thread policy ------------------------------------------------------------------------------
def chain_threads(n_sites: int, device: torch.device | str) -> int:
    """Intra-op threads for a chain update over ``n_sites`` (all chains) on ``device`` (module docstring)."""
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    chosen = _threads.choose_threads(n_sites)
    if chosen is None or _threads.user_threads() is not None:  # OMP_NUM_THREADS or --threads: the user's choice
        return torch.get_num_threads()
    return max(1, min(chosen, torch.get_num_threads(), _threads.idle_cores()))


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
    *,
    finite_by_construction: bool = False,
) -> ChainResult:
    """The shared chain loop: burn-in, thinning, acceptance bookkeeping, progress callback.

    ``update(phi)`` returns a new tensor (never ``phi`` modified in place), so kept states are not
    copied.  ``finite_by_construction``: the update can only accept finite states (HMC: a non-finite
    proposal has a NaN or infinite ``dH`` and is rejected), so the per-update finiteness check is skipped.
    """
    kept, accs, dHs = [], [], []
    total = burn_in + n_updates
    guard = None if finite_by_construction else FiniteGuard(
        total, phi.device, lambda it: f"{name}: non-finite field after update {it} (step size too large?)")
    with _threads.threads(requested=chain_threads(phi.numel(), phi.device)):
        for it in range(total):
            phi, accepted, dH = update(phi)
            if guard is not None:
                guard.record(it, phi)
            if it >= burn_in:
                accs.append(accepted)
                if dH is not None:
                    dHs.append(dH)
                if (it - burn_in) % thin == thin - 1:
                    kept.append(phi)
            if callback is not None:
                callback(it + 1, total, phi)
    if guard is not None:
        guard.check()
    samples = torch.stack(kept) if kept else phi.new_zeros((0, *phi.shape))
    acceptance = torch.stack(accs).to(torch.float64).mean(dim=0) if accs else phi.new_zeros(phi.shape[0], dtype=torch.float64)
    return ChainResult(samples, acceptance, phi, torch.stack(dHs) if dHs else None)
