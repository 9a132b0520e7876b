"""Diffusion-model MCMC: independence Metropolis with probability-flow proposals (THEORY 8, "Diffusion-model MCMC").

- Independence Metropolis (DM-MCMC): proposals ``x' ~ q`` accepted with
  ``min(1, q(x) p(x') / (p(x) q(x')))``, ``p ∝ exp(-S)``.  ``log q`` of the current state is the one
  computed when it was proposed (the chain starts at a proposal), so no ODE inversion is needed.
- Proposals and their ``log q`` come from :mod:`critdiff_ref.samplers.likelihood` (priors, divergences,
  :func:`pf_sample`, :func:`flow_jacobian_log_density`).

``log_q="jacobian"`` replaces the ODE estimate by the exact log-density of the *discretised* flow map
``x_T -> x_0`` (``log p_T(x_T) - log|det dx_0/dx_T|``, full Jacobian by autograd, small V): the
chain is then exact for any step count and any score.  With ``"exact"``/``"hutchinson"`` divergences
the acceptance uses the ODE-integrated ``log q``, exact up to the ODE discretisation error (Hutchinson
adds noise to ``log q``, which biases the chain slightly; use it for likelihoods and R^2, not for exact MCMC).
A Gaussian ``control_variate`` (mode variances ``c_ref``) makes Hutchinson estimate only the divergence of
``s - s_ref`` and adds the exact ``sum_k K_ref(k)``: unbiased, with far less noise when the score is close
to Gaussian.

Shapes: configurations ``(batch, *lattice)``; dtype/device follow the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..processes import Process
from .likelihood import (
    DIVERGENCES,
    ModePrior,
    Score,
    flow_jacobian_log_density,
    pf_sample,
)
from .mcmc._chains import Action, _count

__all__ = [
    "independence_metropolis",
    "DMMCResult",
    "dm_mcmc",
]

LOG_Q = DIVERGENCES + ("jacobian",)


# -- independence Metropolis -------------------------------------------------------------------------
def independence_metropolis(
    log_w: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independence Metropolis over a stream of proposals with importance log-weights ``log p - log q``.

    ``log_w`` ``(n_iter, n_chains)``: proposal ``i`` of chain ``c`` has ``log_w[i, c]``. The chain
    starts at proposal 0 and at step ``i >= 1`` accepts proposal ``i`` with
    ``min(1, exp(log_w[i] - log_w[current]))``. Returns ``(index, accepted)``, both ``(n_iter, n_chains)``:
    the proposal index held after step ``i``, and whether proposal ``i`` was accepted (step 0: True).
    """
    if not isinstance(log_w, torch.Tensor) or log_w.ndim != 2 or log_w.shape[0] < 1:
        raise ValueError("log_w must be a tensor of shape (n_iter >= 1, n_chains)")
    n_iter, n_chains = log_w.shape
    gdev = generator.device if generator is not None else log_w.device
    u = torch.rand((n_iter, n_chains), generator=generator, dtype=torch.float64, device=gdev).to(log_w.device)
    lw = log_w.to(torch.float64)
    cur = torch.zeros(n_chains, dtype=torch.long, device=log_w.device)
    index = torch.zeros((n_iter, n_chains), dtype=torch.long, device=log_w.device)
    accepted = torch.zeros((n_iter, n_chains), dtype=torch.bool, device=log_w.device)
    accepted[0] = True
    ar = torch.arange(n_chains, device=log_w.device)
    for i in range(1, n_iter):
        acc = torch.log(u[i]) < lw[i] - lw[cur, ar]  # NaN weights are rejected
        cur = torch.where(acc, torch.full_like(cur, i), cur)
        index[i], accepted[i] = cur, acc
    return index, accepted


@dataclass(frozen=True)
class DMMCResult:
    """Output of :func:`dm_mcmc`: ``samples`` ``(n_kept, n_chains, *lattice)``, ``acceptance``
    ``(n_chains,)`` after burn-in, the raw ``proposals`` ``(n_iter, n_chains, *lattice)`` (the diffusion
    model's own samples), and ``log_q`` and ``action`` ``(n_iter, n_chains)`` of every proposal."""

    samples: torch.Tensor
    acceptance: torch.Tensor
    proposals: torch.Tensor
    log_q: torch.Tensor
    action: torch.Tensor

    @property
    def log_w(self) -> torch.Tensor:
        """Importance log-weights ``-S - log q`` of the proposals, ``(n_iter, n_chains)``."""
        return -self.action - self.log_q


def dm_mcmc(
    target: Action,
    score: Score,
    process: Process,
    prior: ModePrior,
    *,
    n_chains: int,
    n_iter: int,
    steps: int = 50,
    method: str = "rk4",
    grid="uniform",
    t_min: float = 0.0,
    log_q: str = "exact",
    n_probes: int = 1,
    control_variate: ModePrior | None = None,
    burn_in: int = 0,
    thin: int = 1,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> DMMCResult:
    """Diffusion-model MCMC (THEORY 8): independence Metropolis for ``p ∝ exp(-S)`` with PF-ODE proposals.

    ``n_chains x n_iter`` proposals (iid, generated in batches of ``batch_size``) with ``log q`` from
    ``log_q`` in ``("exact", "hutchinson")`` (ODE-integrated divergence) or ``"jacobian"`` (exact
    density of the discretised flow, see module docstring); accept with
    ``min(1, q(old) p(new) / (p(old) q(new)))``. Keeps every ``thin``-th state after ``burn_in``.
    """
    if not hasattr(target, "action"):
        raise TypeError(f"target must have action(phi), got {type(target).__name__}")
    if log_q not in LOG_Q:
        raise ValueError(f"log_q must be one of {LOG_Q}, got log_q={log_q!r}")
    n_chains, n_iter = _count("n_chains", n_chains, 1), _count("n_iter", n_iter, 1)
    burn_in, thin, batch_size = _count("burn_in", burn_in, 0), _count("thin", thin, 1), _count("batch_size", batch_size, 1)
    if burn_in >= n_iter:
        raise ValueError(f"burn_in must be < n_iter = {n_iter}, got burn_in={burn_in}")
    total = n_chains * n_iter
    xs, lqs = [], []
    for start in range(0, total, batch_size):
        b = min(batch_size, total - start)
        if log_q == "jacobian":
            xT = prior.sample(b, generator, dtype=dtype, device=device)
            x, lq = flow_jacobian_log_density(score, process, xT, prior, steps=steps, method=method, grid=grid, t_min=t_min)
        else:
            x, lq = pf_sample(score, process, b, prior, steps=steps, method=method, grid=grid, t_min=t_min,
                              divergence=log_q, n_probes=n_probes, control_variate=control_variate, generator=generator,
                              dtype=dtype, device=device)
        xs.append(x)
        lqs.append(lq)
    x = torch.cat(xs).reshape(n_iter, n_chains, *prior.shape)
    lq = torch.cat(lqs).reshape(n_iter, n_chains)
    S = target.action(x)
    index, accepted = independence_metropolis(-S - lq, generator)
    keep = torch.arange(burn_in + thin - 1, n_iter, thin, device=x.device)
    ar = torch.arange(n_chains, device=x.device)
    samples = x[index[keep], ar]  # (n_kept, n_chains, *lattice)
    # step 0 is the start (no accept/reject): acceptance over steps max(burn_in, 1) .. n_iter - 1
    acceptance = accepted[max(burn_in, 1):].to(torch.float64).mean(dim=0) if n_iter > 1 else accepted[0].double()
    return DMMCResult(samples, acceptance, x, lq, S)
