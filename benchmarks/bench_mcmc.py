"""Lattice phi^4 Monte Carlo cost (THEORY 8): HMC trajectories, leapfrog steps, checkerboard
Metropolis sweeps and Langevin steps, over L, d, device and dtype, with the leapfrog's achieved
fraction of the measured copy-bandwidth roofline; DM-MCMC proposals (PF-ODE sample + log q) when
:mod:`critdiff_ref.samplers.dmmc` provides ``pf_sample`` and ``exact_prior`` (skipped otherwise).

Bandwidth model: one leapfrog step reads ``phi`` and ``pi`` and writes both back, so a
perfectly fused kernel moves ``4 * itemsize`` bytes per site (16 B in float32); the roofline is the
device's measured ``copy_`` bandwidth (:func:`benchmarks.common.copy_bandwidth`).

:class:`HMCVersusNumpy`: whole HMC runs of the library's default long-run path (the compiled
trajectory, compile excluded and tracked apart) and its eager path against a plain numpy HMC
(:mod:`benchmarks.numpy_hmc`, same action, integrator, eps = 0.1 and 10 steps), timed interleaved in
one process so that their ratio is a same-run figure; trajectories/s of each, the ratios, and the
library's fraction of the copy roofline with accept/reject, momentum draws and kept samples included.
``python -m benchmarks.bench_mcmc`` prints the same figures as a table.
"""

from __future__ import annotations

import importlib
import importlib.util
import time

import numpy as np
import torch

from critdiff_ref import VP, GaussianField, Phi4Lattice, exact_score
from critdiff_ref.samplers.mcmc import triton_steps as triton_mcmc
from critdiff_ref.samplers.fused import require_compiler
from critdiff_ref.samplers.mcmc import hmc, hmc_step, langevin_step, leapfrog, metropolis_sweep

from . import numpy_hmc

from .common import (
    DEVICES,
    DIMS,
    DTYPES,
    LATTICE_SIZES,
    VERSION,
    best_seconds,
    copy_bandwidth,
    median_seconds,
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


# -- the library's HMC against a plain numpy HMC ------------------------------------------
VS_KAPPA, VS_LAM, VS_EPS, VS_STEPS = 0.2, 0.022, 0.1, 10  # the `critdiff phi4` defaults (symmetric phase, d = 2)
VS_SITES_CAP = 2**22  # chains * L^2 per point: 64 chains reach L = 256, the numpy run stays under ~10 s
VS_WORK = 2**21  # site-trajectories per timed run: ~0.1-1 s for every code at every size


def _vs_start(L: int, chains: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return 0.5**0.5 * torch.randn((chains, L, L), generator=gen, dtype=dtype)


def _library_run(target, phi, n_traj: int, fused) -> None:
    hmc(target, phi, n_traj=n_traj, eps=VS_EPS, n_steps=VS_STEPS, generator=torch.Generator().manual_seed(1),
        fused=fused, adapt=False)


def _numpy_run(phi: np.ndarray, n_traj: int) -> None:
    numpy_hmc.hmc(phi, n_traj, kappa=VS_KAPPA, lam=VS_LAM, eps=VS_EPS, n_steps=VS_STEPS, seed=1)


def check_numpy_baseline(L: int = 6, chains: int = 3) -> None:
    """The numpy trajectory is the library's: the same draws give the same state to rounding (float64)."""
    from critdiff_ref.samplers.mcmc._hmc import _trajectory

    target = Phi4Lattice(L, 2, VS_KAPPA, VS_LAM)
    gen = torch.Generator().manual_seed(2)
    phi = _vs_start(L, chains, torch.float64)
    pi = torch.randn(phi.shape, generator=gen, dtype=torch.float64)
    u = torch.rand(chains, generator=gen, dtype=torch.float64)
    ours, acc, _ = _trajectory(target, VS_STEPS, phi, pi, u, VS_EPS)
    theirs, acc_np = numpy_hmc.trajectory_given(phi.numpy(), pi.numpy(), u.numpy(), VS_KAPPA, VS_LAM, 2, VS_EPS, VS_STEPS)
    if not (np.array_equal(acc.numpy(), acc_np) and np.allclose(ours.numpy(), theirs, rtol=0, atol=1e-12)):
        raise AssertionError("benchmarks.numpy_hmc is not the library's HMC trajectory")


def compare_with_numpy(L: int, chains: int, dtype: str = "float64", repeats: int = 3, work: int = VS_WORK) -> dict:
    """Trajectories/s of numpy, the library's eager and compiled (default long-run) paths, interleaved
    (best of ``repeats`` rounds, each round numpy, eager, compiled, then a copy for the roofline), the
    compile seconds of this process (0 when built before in it), and the compiled run's fraction of the
    copy roofline measured in the same rounds (a shared machine's bandwidth drifts with its load).
    ``work``: site-trajectories per timed run (at least 8 trajectories)."""
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    target = Phi4Lattice(L, 2, VS_KAPPA, VS_LAM)
    phi = _vs_start(L, chains, dt)
    n_traj = max(8, work // (chains * L * L))  # >= 8: the first trajectory's layout copy amortised
    t0 = time.perf_counter()
    _library_run(target, phi, 1, True)  # builds the compiled trajectory (or loads it from the caches)
    compile_seconds = time.perf_counter() - t0
    src = torch.ones(COPY_BYTES // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    runs = {"numpy": lambda: _numpy_run(phi.numpy(), n_traj),
            "eager": lambda: _library_run(target, phi, n_traj, False),
            "compiled": lambda: _library_run(target, phi, n_traj, True),
            "copy": lambda: [dst.copy_(src) for _ in range(COPY_REPEATS)]}
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {name: n_traj / best[name] for name in ("numpy", "eager", "compiled")}
    bandwidth = 2 * COPY_BYTES * COPY_REPEATS / best["copy"]  # one read and one write per byte copied
    site_bytes = chains * L * L * phi.element_size()
    roofline = VS_STEPS * 4 * site_bytes * rate["compiled"] / bandwidth
    return {"numpy": rate["numpy"], "eager": rate["eager"], "compiled": rate["compiled"],
            "compiled/numpy": rate["compiled"] / rate["numpy"], "eager/numpy": rate["eager"] / rate["numpy"],
            "roofline": roofline, "copy_GBps": bandwidth / 1e9, "compile_s": compile_seconds, "n_traj": n_traj}


COPY_BYTES, COPY_REPEATS = 2**26, 4  # the roofline copy: 64 MiB, as benchmarks.common.copy_bandwidth


def vs_grid() -> list[tuple[int, int, str]]:
    """The (L, chains, dtype) points of :class:`HMCVersusNumpy` under :data:`VS_SITES_CAP`."""
    return [(L, c, dt) for dt in HMCVersusNumpy.params[2] for L in HMCVersusNumpy.params[0]
            for c in HMCVersusNumpy.params[1] if c * L * L <= VS_SITES_CAP]


class HMCVersusNumpy:
    """HMC trajectories/s of the library (default long-run path: compiled whole trajectory;
    eager path) and of a plain numpy HMC, interleaved in one process, d = 2, eps 0.1 x 10 steps, CPU;
    the compiled run's fraction of the copy roofline (10 steps x 4 itemsizes per site per trajectory).
    The whole grid is measured once (``setup_cache``, one process: the compiled programs are built once)
    and every ``track_`` reads it."""

    params = ([16, 32, 64, 128, 256], [1, 4, 16, 64], ["float64", "float32"])
    param_names = ["L", "chains", "dtype"]
    version = VERSION
    timeout = 900

    @staticmethod
    def measure(points, work: int = VS_WORK) -> dict:
        """``{(L, chains, dtype): compare_with_numpy(...)}`` for ``points`` ({} without a C++ compiler)."""
        torch.set_num_threads(1)
        try:
            require_compiler("cpu")
        except RuntimeError:
            return {}
        check_numpy_baseline()
        return {tuple(point): compare_with_numpy(*point, work=work) for point in points}

    def setup_cache(self):
        return self.measure(vs_grid())

    setup_cache.timeout = 3600

    def setup(self, figures, L, chains, dtype):
        if (L, chains, dtype) not in figures:
            raise NotImplementedError(f"not measured: chains * L^2 = {chains * L * L} over the cap {VS_SITES_CAP},"
                                      " or no C++ compiler")
        self.figures = figures[(L, chains, dtype)]

    def track_numpy_trajectories_per_second(self, figures, L, chains, dtype):
        return self.figures["numpy"]

    track_numpy_trajectories_per_second.unit = "trajectories/s"

    def track_library_trajectories_per_second(self, figures, L, chains, dtype):
        return self.figures["compiled"]

    track_library_trajectories_per_second.unit = "trajectories/s"

    def track_library_eager_trajectories_per_second(self, figures, L, chains, dtype):
        return self.figures["eager"]

    track_library_eager_trajectories_per_second.unit = "trajectories/s"

    def track_library_over_numpy(self, figures, L, chains, dtype):
        return self.figures["compiled/numpy"]

    track_library_over_numpy.unit = "ratio"

    def track_eager_over_numpy(self, figures, L, chains, dtype):
        return self.figures["eager/numpy"]

    track_eager_over_numpy.unit = "ratio"

    def track_library_roofline_fraction(self, figures, L, chains, dtype):
        return self.figures["roofline"]

    track_library_roofline_fraction.unit = "fraction of copy bandwidth"

    def track_compile_seconds(self, figures, L, chains, dtype):
        return self.figures["compile_s"]

    track_compile_seconds.unit = "s"


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


if __name__ == "__main__":  # python -m benchmarks.bench_mcmc [dtype]: the table of docs/results/performance.md
    import sys

    torch.set_num_threads(1)
    check_numpy_baseline()
    dtype = sys.argv[1] if len(sys.argv) > 1 else "float64"
    print(f"| L | chains | numpy traj/s | eager traj/s | compiled traj/s | compiled/numpy | eager/numpy | roofline | copy GB/s | compile s |  ({dtype}, 1 thread)")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for L, chains, _ in (point for point in vs_grid() if point[2] == dtype):
        f = compare_with_numpy(L, chains, dtype)
        print(f"| {L} | {chains} | {f['numpy']:.0f} | {f['eager']:.0f} | {f['compiled']:.0f} | {f['compiled/numpy']:.2f}"
              f" | {f['eager/numpy']:.2f} | {f['roofline']:.2f} | {f['copy_GBps']:.1f} | {f['compile_s']:.1f} |", flush=True)


class DiffusionMCMCExactLogQ:
    """The EXACT DM-MCMC log q, ``flow_jacobian.flow_jacobian_log_density`` (log-det of the
    discretised flow map: one sampler forward pass, ``V / chunk`` vmapped backward passes), for a batch
    of 4 proposals, 16 Heun steps, exact Fourier score of a Gaussian field, float64; ``chunk`` "auto"
    (memory-capped vmapped chunks) or 1 (one Jacobian row per backward pass, the old path).  The cost
    per proposal against V is ``track_ms_per_proposal``."""

    params = ([4, 8, 16], list(DEVICES), ["auto", "1"])
    param_names = ["L", "device", "chunk"]
    version = VERSION
    timeout = 600

    def setup(self, L, device, chunk):
        likelihood = _likelihood_module()
        self.device, dtype = resolve(device, "float64")
        require_sites(L, 2, 4 * L * L, device)
        process = VP()
        field = GaussianField(L, 2, 0.5)
        prior = likelihood.exact_prior(field, process)
        xT = prior.sample(4, torch.Generator(device=self.device).manual_seed(0), dtype=dtype, device=self.device)
        c = None if chunk == "auto" else int(chunk)
        score = exact_score(field, process)
        from critdiff_ref.samplers import flow_jacobian

        self.run = lambda: flow_jacobian.flow_jacobian_log_density(score, process, xT, prior, steps=16, method="heun",
                                                                t_min=1e-3, chunk=c)
        self.run()  # warm-up
        synchronize(self.device)

    def time_exact_log_q(self, L, device, chunk):
        self.run()
        synchronize(self.device)

    def track_ms_per_proposal(self, L, device, chunk):
        return 1e3 * median_seconds(self.run, self.device, repeats=3) / 4

    track_ms_per_proposal.unit = "ms per proposal"
