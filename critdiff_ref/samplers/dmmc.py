"""Diffusion-model MCMC: independence Metropolis with probability-flow proposals (THEORY 8, "Diffusion-model MCMC").

- Independence Metropolis (DM-MCMC): proposals ``x' ~ q`` accepted with
  ``min(1, q(x) p(x') / (p(x) q(x')))``, ``p ∝ exp(-S)``.  ``log q`` of the current state is the one
  computed when it was proposed (the chain starts at a proposal), so no ODE inversion is needed.
- Proposals and their ``log q`` come from :mod:`critdiff_ref.samplers.likelihood` (priors, divergences,
  :func:`pf_sample`, :func:`flow_jacobian_log_density`).

What is exact and what is not (THEORY 8, "Exactness"):

- ``log_q="jacobian"`` (EXACT): the log-density of the *discretised* flow map ``x_T -> x_0``,
  ``log p_T(x_T) - log|det dx_0/dx_T|``, by :func:`~critdiff_ref.samplers.flow_jacobian.flow_jacobian_log_density`
  (one sampler forward pass plus ``V / chunk`` vmapped backward passes per batch, then ``slogdet``):
  the density of the proposal as generated, so the chain targets ``p`` exactly for any step count and
  any score.  Cost ``~ V`` backward passes through the sampler per proposal (measured against V in
  ``BENCHMARKS.md``).
- ``log_q="stepwise"`` (EXACT): the same density by the chain rule, step by step
  (:func:`~critdiff_ref.samplers.flow_jacobian.stepwise_flow_log_density`), for a score with a cheap exact
  Jacobian ``score.score_jacobian(x, t)`` (e.g. :class:`~critdiff_ref.trainers.fourier_local.FourierLocalScore`,
  whose step Jacobians stay circulant-plus-band operators, :mod:`critdiff_ref.samplers.circulant_band`):
  no backward pass through the sampler; per proposal one ``V x V`` ``slogdet`` per step (``O(steps V^3)``,
  the floor) plus ``O(steps W V^2)`` for the Heun products (docs/results/dm_mcmc.md).
- ``log_q="exact"``: the ODE-integrated log q with the exact divergence; exact only up to the ODE
  discretisation error ``O(h^p)`` of the method (small, not zero).
- ``log_q="hutchinson"`` (APPROXIMATE): the ODE-integrated log q with a Hutchinson divergence; the
  probe noise in ``log q`` biases the chain (the stationary law is ``p(x) E[exp(-noise) | x]``:
  no bias only when the noise law does not depend on ``x``, e.g. a linear score).  A Gaussian
  ``control_variate`` (mode variances ``c_ref``) makes Hutchinson estimate only the divergence of
  ``s - s_ref`` and adds the exact ``sum_k K_ref(k)``: less noise, still approximate.

:func:`chain_from_proposals` runs the accept/reject on given proposals and ``log q`` (for
re-using one set of proposals with another ``log q``, e.g. the planted-bug checks).

Shapes: configurations ``(batch, *lattice)``; dtype/device follow the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..processes import Process
from .flow_jacobian import flow_jacobian_log_density, stepwise_flow_log_density
from .likelihood import DIVERGENCES, ModePrior, Score, pf_sample
from .mcmc._chains import Action, _count

__all__ = [
    "independence_metropolis",
    "DMMCResult",
    "chain_from_proposals",
    "dm_mcmc",
]

LOG_Q = DIVERGENCES + ("jacobian", "stepwise")


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


def chain_from_proposals(
    proposals: torch.Tensor,
    log_q: torch.Tensor,
    action: torch.Tensor,
    *,
    burn_in: int = 0,
    thin: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independence Metropolis on given proposals: ``(samples (n_kept, n_chains, *lattice), acceptance (n_chains,))``.

    ``proposals`` ``(n_iter, n_chains, *lattice)``, ``log_q`` and ``action`` ``(n_iter, n_chains)``;
    log-weights ``-S - log q``; keeps every ``thin``-th state after ``burn_in``; the acceptance is over
    steps ``max(burn_in, 1) .. n_iter - 1`` (step 0 is the start).
    """
    if proposals.ndim < 3 or log_q.shape != proposals.shape[:2] or action.shape != proposals.shape[:2]:
        raise ValueError(f"need proposals (n_iter, n_chains, *lattice) and log_q, action (n_iter, n_chains); got "
                         f"{tuple(proposals.shape)}, {tuple(log_q.shape)}, {tuple(action.shape)}")
    n_iter, n_chains = log_q.shape
    burn_in, thin = _count("burn_in", burn_in, 0), _count("thin", thin, 1)
    if burn_in >= n_iter:
        raise ValueError(f"burn_in must be < n_iter = {n_iter}, got burn_in={burn_in}")
    index, accepted = independence_metropolis(-action - log_q, generator)
    keep = torch.arange(burn_in + thin - 1, n_iter, thin, device=proposals.device)
    ar = torch.arange(n_chains, device=proposals.device)
    samples = proposals[index[keep], ar]
    acceptance = accepted[max(burn_in, 1):].to(torch.float64).mean(dim=0) if n_iter > 1 else accepted[0].double()
    return samples, acceptance


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
    chunk: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> DMMCResult:
    """Diffusion-model MCMC (THEORY 8): independence Metropolis for ``p ∝ exp(-S)`` with PF-ODE proposals.

    ``n_chains x n_iter`` proposals (iid, generated in batches of ``batch_size``) with ``log q`` from
    ``log_q``: ``"jacobian"`` (EXACT density of the discretised flow; ``chunk`` Jacobian rows per vmapped
    backward pass, default capped by ``likelihood.MAX_CHUNK_ELEMENTS``), ``"stepwise"`` (EXACT, the same
    density by the chain rule; needs ``score.score_jacobian``), ``"exact"`` (ODE-integrated,
    exact divergence: exact up to ``O(h^p)``) or ``"hutchinson"`` (APPROXIMATE; see module docstring);
    accept with ``min(1, q(old) p(new) / (p(old) q(new)))``. Keeps every ``thin``-th state after ``burn_in``.
    """
    if not hasattr(target, "action"):
        raise TypeError(f"target must have action(phi), got {type(target).__name__}")
    if log_q not in LOG_Q:
        raise ValueError(f"log_q must be one of {LOG_Q}, got log_q={log_q!r}")
    if log_q == "stepwise" and not callable(getattr(score, "score_jacobian", None)):
        raise TypeError(f"log_q='stepwise' needs a score with score_jacobian(x, t) -> (s, J), got {type(score).__name__}")
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
            x, lq = flow_jacobian_log_density(score, process, xT, prior, steps=steps, method=method, grid=grid,
                                              t_min=t_min, chunk=chunk)
        elif log_q == "stepwise":
            xT = prior.sample(b, generator, dtype=dtype, device=device)
            x, lq = stepwise_flow_log_density(score, process, xT, prior, steps=steps, method=method, grid=grid,
                                              t_min=t_min)
        else:
            x, lq = pf_sample(score, process, b, prior, steps=steps, method=method, grid=grid, t_min=t_min,
                              divergence=log_q, n_probes=n_probes, control_variate=control_variate, generator=generator,
                              dtype=dtype, device=device)
        xs.append(x)
        lqs.append(lq)
    x = torch.cat(xs).reshape(n_iter, n_chains, *prior.shape)
    lq = torch.cat(lqs).reshape(n_iter, n_chains)
    S = target.action(x)
    samples, acceptance = chain_from_proposals(x, lq, S, burn_in=burn_in, thin=thin, generator=generator)
    return DMMCResult(samples, acceptance, x, lq, S)
