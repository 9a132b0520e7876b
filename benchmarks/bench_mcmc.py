"""Lattice phi^4 Monte Carlo cost (THEORY 8): HMC trajectories, leapfrog steps, checkerboard
Metropolis sweeps and Langevin steps, over L, d, device and dtype, with the leapfrog's achieved
fraction of the measured copy-bandwidth roofline; DM-MCMC proposals (PF-ODE sample + log q) when
:mod:`critdiff_ref.samplers.dmmc` provides ``pf_sample`` and ``exact_prior`` (skipped otherwise).

Bandwidth model (issue 8): one leapfrog step reads ``phi`` and ``pi`` and writes both back, so a
perfectly fused kernel moves ``4 * itemsize`` bytes per site (16 B in float32); the roofline is the
device's measured ``copy_`` bandwidth (:func:`benchmarks.common.copy_bandwidth`).
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from critdiff_ref import VP, GaussianField, Phi4Lattice, exact_score
from critdiff_ref.samplers.mcmc import triton_steps as triton_mcmc
from critdiff_ref.samplers.fused import require_compiler
from critdiff_ref.samplers.mcmc import hmc_step, langevin_step, leapfrog, metropolis_sweep

from .common import (
    DEVICES,
    DIMS,
    DTYPES,
    LATTICE_SIZES,
    VERSION,
    best_seconds,
    copy_bandwidth,
    require_sites,
    resolve,
    synchronize,
)

CHAINS = 16
LEAPFROG_STEPS = 10
EPS = 0.05  # leapfrog step: trajectory length 0.5, far inside the stability limit eps < 2 sqrt(min c0)
KAPPA, LAM = 0.1, 0.022  # symmetric phase in d = 1..3 (kappa < kappa_c = (1 - 2 lam) / (2d) >= 0.159)


def _setup_chains(L: int, d: int, device: str, dtype: str, chains: int = CHAINS):
    dev, dt = resolve(device, dtype)
    require_sites(L, d, chains, device)
    target = Phi4Lattice(L, d, kappa=KAPPA, lam=LAM)
    gen = torch.Generator(device=dev).manual_seed(0)
    phi = 0.5 * torch.randn((chains, *target.shape), generator=gen, dtype=dt, device=dev)
    pi = torch.randn(phi.shape, generator=gen, dtype=dt, device=dev)
    return target, phi, pi, gen, dev


class PhiFourMCMC:
    """One update of 16 independent chains: HMC trajectory (10 leapfrog steps), 10 leapfrog steps alone,
    one checkerboard Metropolis sweep, one Euler Langevin step."""

    params = (list(LATTICE_SIZES), list(DIMS), list(DEVICES), list(DTYPES))
    param_names = ["L", "d", "device", "dtype"]
    version = VERSION

    def setup(self, L, d, device, dtype):
        self.target, self.phi, self.pi, self.gen, self.device = _setup_chains(L, d, device, dtype)
        synchronize(self.device)

    def time_hmc_trajectory(self, L, d, device, dtype):
        hmc_step(self.target, self.phi, self.gen, eps=EPS, n_steps=LEAPFROG_STEPS)
        synchronize(self.device)

    def time_leapfrog(self, L, d, device, dtype):
        leapfrog(self.target, self.phi, self.pi, EPS, LEAPFROG_STEPS)
        synchronize(self.device)

    def time_metropolis_sweep(self, L, d, device, dtype):
        metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5)
        synchronize(self.device)

    def time_langevin_step(self, L, d, device, dtype):
        langevin_step(self.target, self.phi, self.gen, dtau=0.01)
        synchronize(self.device)


class _ChainBandwidth:
    """Shared setup of the bandwidth benchmarks: d = 2, float32, 16 chains, L in (64, 256)."""

    params = ([64, 256], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION
    timeout = 300

    def setup(self, L, device):
        self.target, self.phi, self.pi, self.gen, self.device = _setup_chains(L, 2, device, "float32")
        self.site_bytes = self.phi.element_size() * self.phi.numel()

    def _fraction(self, fn, passes: int, per_call: int = 1) -> float:
        seconds = best_seconds(fn, self.device) / per_call
        return passes * self.site_bytes / seconds / copy_bandwidth(self.device)


class MCMCBandwidth(_ChainBandwidth):
    """Achieved fraction of the copy roofline by the eager phi^4 updates (issue target: >= 0.8 for
    L >= 64), d = 2, float32, 16 chains; and the roofline itself.

    Minimal traffic of a fused kernel per site: leapfrog step reads and writes ``phi`` and ``pi``
    (4 itemsizes); Langevin step reads and writes ``phi`` with the noise generated in-kernel
    (2 itemsizes); checkerboard Metropolis sweep reads and writes ``phi`` once per colour (4 itemsizes).
    """

    def track_leapfrog_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: leapfrog(self.target, self.phi, self.pi, EPS, LEAPFROG_STEPS), 4, LEAPFROG_STEPS)

    track_leapfrog_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_langevin_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: langevin_step(self.target, self.phi, self.gen, dtau=0.01), 2)

    track_langevin_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_metropolis_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5), 4)

    track_metropolis_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_copy_bandwidth(self, L, device):
        return copy_bandwidth(self.device) / 1e9

    track_copy_bandwidth.unit = "GB/s"


class FusedMCMCBandwidth(_ChainBandwidth):
    """The same updates with ``fused=True`` (:mod:`critdiff_ref.samplers.fused`: the update bodies
    compiled by torch.compile) against the same roofline; the random numbers are still drawn eagerly
    (``randn`` / ``rand`` into memory), which the Langevin / Metropolis byte counts do not include."""

    timeout = 600

    def setup(self, L, device):
        super().setup(L, device)
        try:
            require_compiler(self.device)
        except RuntimeError as exc:
            raise NotImplementedError(str(exc)) from exc
        # compile outside the timed region (one call of each fused update)
        leapfrog(self.target, self.phi, self.pi, EPS, LEAPFROG_STEPS, fused=True)
        langevin_step(self.target, self.phi, self.gen, dtau=0.01, fused=True)
        metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5, fused=True)
        synchronize(self.device)

    def track_leapfrog_bandwidth_fraction(self, L, device):
        step = lambda: leapfrog(self.target, self.phi, self.pi, EPS, LEAPFROG_STEPS, fused=True)  # noqa: E731
        return self._fraction(step, 4, LEAPFROG_STEPS)

    track_leapfrog_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_langevin_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: langevin_step(self.target, self.phi, self.gen, dtau=0.01, fused=True), 2)

    track_langevin_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_metropolis_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5, fused=True), 4)

    track_metropolis_bandwidth_fraction.unit = "fraction of copy bandwidth"


class TritonMCMCBandwidth(_ChainBandwidth):
    """Langevin step and Metropolis sweep with ``fused="triton"`` (:mod:`critdiff_ref.samplers.mcmc.triton_steps`:
    one kernel per update, noise drawn in-kernel) against the copy roofline; the byte counts of
    :class:`MCMCBandwidth` are then the kernels' real traffic.  CUDA only (Triton's CPU interpreter is
    a test vehicle, not a fast path)."""

    params = ([64, 256], ["cuda"])
    timeout = 600

    def setup(self, L, device):
        super().setup(L, device)
        try:
            triton_mcmc.require_triton(self.device)
        except RuntimeError as exc:
            raise NotImplementedError(str(exc)) from exc
        langevin_step(self.target, self.phi, self.gen, dtau=0.01, fused="triton")  # compile outside the timing
        metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5, fused="triton")
        synchronize(self.device)

    def track_langevin_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: langevin_step(self.target, self.phi, self.gen, dtau=0.01, fused="triton"), 2)

    track_langevin_bandwidth_fraction.unit = "fraction of copy bandwidth"

    def track_metropolis_bandwidth_fraction(self, L, device):
        return self._fraction(lambda: metropolis_sweep(self.target, self.phi, self.gen, step_size=0.5, fused="triton"), 4)

    track_metropolis_bandwidth_fraction.unit = "fraction of copy bandwidth"


def _likelihood_module():
    """:mod:`critdiff_ref.samplers.likelihood` if it exists with the API used here, else NotImplementedError (skip)."""
    try:
        module = importlib.import_module("critdiff_ref.samplers.likelihood")
    except ImportError as exc:
        raise NotImplementedError(f"critdiff_ref.samplers.likelihood is not available: {exc}") from exc
    if not all(hasattr(module, name) for name in ("pf_sample", "exact_prior")):
        raise NotImplementedError("critdiff_ref.samplers.likelihood lacks pf_sample / exact_prior")
    return module


# The exact divergence takes V autograd probes of a V-site score per stage: cost ~ batch * V^2.
EXACT_DIVERGENCE_COST = {"cpu": 2**14, "cuda": 2**26}


class DiffusionMCMCProposal:
    """One batch of 4 DM-MCMC proposals (THEORY 8): exact-prior draw, 16 RK4 PF-ODE steps with the
    exact score and the accumulated log q, divergence exact (V autograd probes) or Hutchinson (1 probe).
    Gaussian field r = 0.5, d = 2, float64 (the reference path)."""

    params = ([8, 16, 32], list(DEVICES), ["exact", "hutchinson"])
    param_names = ["L", "device", "divergence"]
    version = VERSION
    timeout = 300

    def setup(self, L, device, divergence):
        likelihood = _likelihood_module()
        self.device, self.dtype = resolve(device, "float64")
        require_sites(L, 2, 4, device)
        if divergence == "exact" and 4 * L**4 > EXACT_DIVERGENCE_COST[device]:
            raise NotImplementedError(f"exact divergence: 4 V^2 = {4 * L**4} over the cap on {device}")
        field, self.process = GaussianField(L, 2, 0.5), VP()
        self.score = exact_score(field, self.process)
        self.prior = likelihood.exact_prior(field, self.process)
        self.pf_sample = likelihood.pf_sample
        self.gen = torch.Generator(device=self.device).manual_seed(0)
        self.divergence = divergence

    def time_proposal(self, L, device, divergence):
        self.pf_sample(
            self.score, self.process, 4, self.prior, steps=16, method="rk4", divergence=self.divergence,
            generator=self.gen, dtype=self.dtype, device=self.device,
        )
        synchronize(self.device)
