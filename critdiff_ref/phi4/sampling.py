"""Diffusion-model MCMC with a trained phi^4 DM (THEORY 8, "Diffusion-model MCMC"): settings and one run.

:func:`run_dm_mcmc` draws PF-ODE proposals of the model of :mod:`critdiff_ref.phi4.dm`, stopped at its
``t_min``, with their model log-density ``log q`` (:class:`DMMCConfig` ``divergence``: the exact log-det of the
discretised flow, whole-sampler ``"jacobian"`` or ``"stepwise"``; ``"exact"`` ODE-integrated divergence;
``"hutchinson"``: approximate, the chain is then biased by the probe noise) and runs independence Metropolis
on them (:func:`critdiff_ref.samplers.dmmc.dm_mcmc`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from .. import lattice
from .._args import ConfigError
from ..samplers import dmmc, likelihood
from .dm import EXACT_DIVERGENCE_MAX_V, DMConfig

__all__ = ["DIVERGENCES", "ODE_METHODS", "DMMCConfig", "dm_burn_in", "iterations_for", "run_dm_mcmc"]

DIVERGENCES = ("auto", "jacobian", "stepwise", "exact", "hutchinson")
ODE_METHODS = ("euler", "heun", "rk4")


def dm_burn_in(iterations: int) -> int:
    """Proposals discarded per DM-MCMC chain: ``min(8, iterations // 4)``."""
    return min(8, iterations // 4)


def iterations_for(kept_per_chain: int) -> int:
    """The fewest proposals per chain that keep ``kept_per_chain`` after :func:`dm_burn_in`."""
    i = kept_per_chain
    while i - dm_burn_in(i) < kept_per_chain:
        i += 1
    return i


@dataclass(frozen=True)
class DMMCConfig:
    """How DM-MCMC runs: ``chains`` independent chains of ``iterations`` proposals each (the first
    :func:`dm_burn_in` discarded), PF-ODE by ``ode_method`` with ``ode_steps`` steps, ``log q`` by ``divergence``
    (:data:`DIVERGENCES`; ``probes`` Hutchinson probes). Validated on construction (:class:`ConfigError`)."""

    chains: int = 8
    iterations: int = 64
    ode_steps: int = 16
    ode_method: str = "heun"
    divergence: str = "auto"
    probes: int = 2

    def __post_init__(self) -> None:
        for name, lower in (("chains", 1), ("iterations", 1), ("ode_steps", 1), ("probes", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lower:
                raise ConfigError(name, v, f"an int >= {lower}")
        if self.ode_method not in ODE_METHODS:
            raise ConfigError("ode_method", self.ode_method, f"one of {ODE_METHODS}")
        if self.divergence not in DIVERGENCES:
            raise ConfigError("divergence", self.divergence, f"one of {DIVERGENCES}")

    @property
    def kept(self) -> int:
        """Kept proposals over all chains (after :func:`dm_burn_in`)."""
        return self.chains * (self.iterations - dm_burn_in(self.iterations))

    def resolve_divergence(self, dm: DMConfig) -> str:
        """``"auto"``: the exact step-by-step log q for the fourier-local network (cheap exact step Jacobians),
        else the exact whole-sampler Jacobian log q for ``V <= EXACT_DIVERGENCE_MAX_V`` and Hutchinson
        (approximate) beyond. ``"stepwise"`` needs the fourier-local network."""
        if self.divergence == "stepwise" and dm.net != "fourier-local":
            raise ValueError("divergence='stepwise' needs dm_net='fourier-local' (the network with cheap exact step Jacobians)")
        if self.divergence != "auto":
            return self.divergence
        if dm.net == "fourier-local":
            return "stepwise"
        return "jacobian" if dm.L**dm.d <= EXACT_DIVERGENCE_MAX_V else "hutchinson"


def run_dm_mcmc(dm: DMConfig, model: torch.nn.Module, hmc_configs: torch.Tensor, sampling: DMMCConfig = DMMCConfig(),
                *, seed: int, device: str = "cpu", dtype: torch.dtype | None = None,
                progress: bool = False) -> tuple[dmmc.DMMCResult, str]:
    """DM-MCMC (THEORY 8) with PF-ODE proposals of ``model`` stopped at ``dm.t_min``: the prior's variance and
    the Hutchinson control variate (the Gaussian with the ensemble's ``<|phi_k|^2>``) come from ``hmc_configs``.
    ``dtype``: of the proposals (default ``dm.dtype``). Returns ``(result, divergence used)``; randomness from a
    generator seeded ``seed + 3``."""
    target, process = dm.target, dm.process
    dtype = dm.torch_dtype if dtype is None else dtype
    data = hmc_configs.reshape(-1, *target.shape).to(dtype=dtype, device=device)
    divergence = sampling.resolve_divergence(dm)
    if progress:
        print(f"[critdiff] DM-MCMC: {sampling.chains} x {sampling.iterations} PF-ODE proposals ({sampling.ode_method},"
              f" {sampling.ode_steps} steps, {divergence} divergence)", file=sys.stderr)
    prior = likelihood.isotropic_prior(process, target.L, target.d, data_variance=float(data.var()))
    power = (lattice.fft(data.to(torch.float64), target.d).abs() ** 2).mean(dim=0).cpu()
    reference = likelihood.ModePrior(power.clamp_min(1e-12), target.d)
    gen = torch.Generator(device=device).manual_seed(seed + 3)
    res = dmmc.dm_mcmc(target, model, process, prior, n_chains=sampling.chains, n_iter=sampling.iterations,
                       steps=sampling.ode_steps, method=sampling.ode_method, t_min=dm.t_min, log_q=divergence,
                       n_probes=sampling.probes, control_variate=reference, burn_in=dm_burn_in(sampling.iterations),
                       generator=gen, dtype=dtype, device=device)
    return res, divergence
