"""Sampler cost and sampler errors (THEORY 1, 2): the exact FFT Gaussian-field sampler, PF-ODE RK4
and Euler–Maruyama reverse SDE with the exact score over N steps, and the exact generated-variance
errors at fixed step counts (from per-mode gains: no sampling noise, so a correctness regression
shows in the history as a changed number).
"""

from __future__ import annotations

import torch

from critdiff_ref import VP, GaussianField, exact_score
from critdiff_ref.observables import relative_frobenius_error
from critdiff_ref import samplers  # module access: a bare `time_grid` name would be collected by asv as a benchmark
from critdiff_ref.samplers import exact_start, ode_gain, probability_flow, reverse_sde, sde_variance
from critdiff_ref.trainers.dsm import ScoreUNet

from .common import (
    DEVICES,
    DIMS,
    DTYPES,
    LATTICE_SIZES,
    VERSION,
    ell_for,
    kernel_seconds,
    local_conv_score,
    real_fft_pair,
    median_seconds,
    require_sites,
    resolve,
    synchronize,
)

BATCH = 8
STEPS = 16


def _setup_field(L: int, d: int, device: str, dtype: str, batch: int = BATCH):
    dev, dt = resolve(device, dtype)
    require_sites(L, d, batch, device)
    field, process = GaussianField(L, d, 0.0), VP()
    gen = torch.Generator(device=dev).manual_seed(0)
    return field, process, dev, dt, gen


class ExactSampler:
    """Exact Gaussian-field sampler ``field.sample``: white noise drawn on the half spectrum ->
    ``sqrt(c0)`` -> one inverse real FFT (``lattice.filtered_noise``)."""

    params = (list(LATTICE_SIZES), list(DIMS), list(DEVICES), list(DTYPES))
    param_names = ["L", "d", "device", "dtype"]
    version = VERSION

    def setup(self, L, d, device, dtype):
        self.field, _, self.device, self.dtype, self.gen = _setup_field(L, d, device, dtype)
        self.field.sample(BATCH, self.gen, dtype=self.dtype, device=self.device)
        synchronize(self.device)

    def time_sample(self, L, d, device, dtype):
        self.field.sample(BATCH, self.gen, dtype=self.dtype, device=self.device)
        synchronize(self.device)


class ExactSamplerRatios:
    """Exact sampler against the real FFT pair rfftn/irfftn of the issue's target (<= 1.2; the sampler
    itself now needs only the inverse half, its noise being drawn in Fourier space), and its throughput,
    d = 2, float32."""

    params = ([64, 256], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION + ".2"  # .2: the reference pair is the real pair (was the complex fftn/ifftn pair)

    def setup(self, L, device):
        self.field, _, self.device, self.dtype, self.gen = _setup_field(L, 2, device, "float32")
        self.x = torch.randn((BATCH, L, L), generator=self.gen, dtype=self.dtype, device=self.device)

    def _sample_seconds(self) -> float:
        return median_seconds(lambda: self.field.sample(BATCH, self.gen, dtype=self.dtype, device=self.device), self.device)

    def track_sampler_over_fft_pair(self, L, device):
        pair = median_seconds(lambda: real_fft_pair(self.x, 2), self.device)
        return self._sample_seconds() / pair

    track_sampler_over_fft_pair.unit = "ratio"

    def track_sites_per_second(self, L, device):
        return BATCH * self.field.V / self._sample_seconds() / 1e9

    track_sites_per_second.unit = "G sites/s"


class ReverseSamplers:
    """PF-ODE RK4 and Euler–Maruyama reverse SDE with the exact FFT score, ``N = 16`` uniform steps under VP."""

    params = (list(LATTICE_SIZES), list(DIMS), list(DEVICES), list(DTYPES))
    param_names = ["L", "d", "device", "dtype"]
    version = VERSION
    timeout = 300

    def setup(self, L, d, device, dtype):
        self.field, self.process, self.device, self.dtype, gen = _setup_field(L, d, device, dtype)
        self.score = exact_score(self.field, self.process)
        self.x_T = exact_start(self.field, self.process, BATCH, gen, dtype=self.dtype, device=self.device)
        self.gen = gen
        synchronize(self.device)

    def time_pf_ode_rk4(self, L, d, device, dtype):
        probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4")
        synchronize(self.device)

    def time_reverse_sde(self, L, d, device, dtype):
        reverse_sde(self.score, self.process, self.x_T, STEPS, self.gen, noise=self.field.noise)
        synchronize(self.device)

    def peakmem_pf_ode_rk4(self, L, d, device, dtype):
        """Host peak memory (asv's peakmem_ sees the process RSS only; GPU memory: SamplerGPUMemory)."""
        probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4")


class SamplerGPUMemory:
    """Peak GPU memory of the PF-ODE RK4 sampler over the input size (``max_memory_allocated`` after a
    reset; asv's ``peakmem_`` sees host memory only).  d = 2, float32, batch 8; CUDA only."""

    params = ([64, 512, 4096], ["cuda"])
    param_names = ["L", "device"]
    version = VERSION

    def setup(self, L, device):
        self.field, self.process, self.device, self.dtype, gen = _setup_field(L, 2, device, "float32")
        self.score = exact_score(self.field, self.process)
        self.x_T = exact_start(self.field, self.process, BATCH, gen, dtype=self.dtype, device=self.device)

    def track_peak_memory_over_input(self, L, device):
        synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4")
        synchronize(self.device)
        extra = torch.cuda.max_memory_allocated(self.device) - base
        return extra / (self.x_T.element_size() * self.x_T.numel())

    track_peak_memory_over_input.unit = "peak extra bytes / input bytes"


class SamplerOverhead:
    """Per-step cost of the PF-ODE RK4 sampler at small L, d = 2, float32, relative to its kernels.

    ``track_rk4_step_over_score_evals``: time per RK4 step / (4 x one exact score evaluation) -- the
    launch and bookkeeping overhead of the visible Python loop (issue target: within 2x at L = 32).
    ``track_local_over_fft_sampler``: the whole sampler with the local conv score (ell = round(ln L))
    over the sampler with the exact FFT score, side by side.
    """

    params = ([32, 64], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION
    timeout = 300

    def setup(self, L, device):
        self.field, self.process, self.device, self.dtype, gen = _setup_field(L, 2, device, "float32")
        self.score = exact_score(self.field, self.process)
        self.local = local_conv_score(self.field, self.process, ell_for(L))
        self.x_T = exact_start(self.field, self.process, BATCH, gen, dtype=self.dtype, device=self.device)

    def _sampler_seconds(self, score) -> float:
        return median_seconds(lambda: probability_flow(score, self.process, self.x_T, STEPS, method="rk4"), self.device, repeats=5)

    def track_rk4_step_over_score_evals(self, L, device):
        one_eval = median_seconds(lambda: self.score(self.x_T, 0.5), self.device)
        return self._sampler_seconds(self.score) / STEPS / (4.0 * one_eval)

    track_rk4_step_over_score_evals.unit = "ratio"

    def track_local_over_fft_sampler(self, L, device):
        return self._sampler_seconds(self.local) / self._sampler_seconds(self.score)

    track_local_over_fft_sampler.unit = "ratio"


class _CapturedRK4:
    """Setup shared by the captured-sampler benchmarks: d = 2, float32, ``N = 16`` RK4 steps, exact FFT
    score; the captured sampler is compiled in setup (~20 s on the CPU), outside every timing."""

    param_names = ["L", "device"]
    version = VERSION
    timeout = 600

    def setup(self, L, device):
        self.field, self.process, self.device, self.dtype, gen = _setup_field(L, 2, device, "float32")
        self.score = exact_score(self.field, self.process)
        self.x_T = exact_start(self.field, self.process, BATCH, gen, dtype=self.dtype, device=self.device)
        self._captured()
        self._graph()
        synchronize(self.device)

    def _captured(self):
        return probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4", fused=True)

    def _graph(self):
        return probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4", fused="graph")

    def _eager(self):
        return probability_flow(self.score, self.process, self.x_T, STEPS, method="rk4")


class CapturedSampler(_CapturedRK4):
    """The whole PF-ODE RK4 sampler captured and compiled (``fused=True``: one program, one CUDA graph on
    a GPU) against the eager loop.

    ``track_eager_over_captured``: speed-up of capture; ``track_captured_step_over_score_evals``: time
    per captured RK4 step / (4 x one eager score evaluation), to set beside
    ``SamplerOverhead.track_rk4_step_over_score_evals`` (below 1 where the compiled loop beats the
    eager score calls it replaces).
    """

    params = ([16, 32, 64], list(DEVICES))

    def time_captured_pf_ode_rk4(self, L, device):
        self._captured()
        synchronize(self.device)

    def track_eager_over_captured(self, L, device):
        return median_seconds(self._eager, self.device, repeats=5) / median_seconds(self._captured, self.device, repeats=5)

    track_eager_over_captured.unit = "ratio"

    def track_eager_over_graph(self, L, device):
        """``fused="graph"``: the recording replayed uncompiled (a CUDA graph on a GPU, the FX replay on the CPU)."""
        return median_seconds(self._eager, self.device, repeats=5) / median_seconds(self._graph, self.device, repeats=5)

    track_eager_over_graph.unit = "ratio"

    def track_captured_step_over_score_evals(self, L, device):
        one_eval = median_seconds(lambda: self.score(self.x_T, 0.5), self.device)
        return median_seconds(self._captured, self.device, repeats=5) / STEPS / (4.0 * one_eval)

    track_captured_step_over_score_evals.unit = "ratio"


class CapturedSamplerLaunchOverhead(_CapturedRK4):
    """The launch target on a GPU: (wall - kernel time) / kernel time of the captured N-step RK4
    sampler at L = 32 (target <= 2), kernel time from the profiler (:func:`common.kernel_seconds`)."""

    params = ([32], ["cuda"])

    def track_overhead_over_kernel_time(self, L, device):
        return self._overhead(self._captured)

    track_overhead_over_kernel_time.unit = "ratio"

    def track_graph_overhead_over_kernel_time(self, L, device):
        """The same for ``fused="graph"`` (recorded kernels replayed as a CUDA graph, not compiled)."""
        return self._overhead(self._graph)

    track_graph_overhead_over_kernel_time.unit = "ratio"

    def _overhead(self, sampler) -> float:
        wall = median_seconds(sampler, self.device, repeats=15)
        kernels = kernel_seconds(sampler, self.device)
        return (wall - kernels) / kernels


class LocalVersusUNet:
    """Performance target: diffusion sampling with the local linear score at least 100x faster than with
    the default U-Net score (``trainers.dsm.ScoreUNet`` defaults, untrained: the cost does not depend
    on the weights), side by side in one process.  PF-ODE RK4, 16 steps to ``t_min = 1e-3`` (the
    U-Net needs ``Xi(t) > 0``), d = 2, float32, batch 8, no autograd."""

    params = ([32], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION
    timeout = 300

    def setup(self, L, device):
        self.field, self.process, self.device, self.dtype, gen = _setup_field(L, 2, device, "float32")
        self.local = local_conv_score(self.field, self.process, ell_for(L))
        self.unet = ScoreUNet(L, 2, self.process, generator=torch.Generator().manual_seed(0)).to(self.device).eval()
        self.x_T = exact_start(self.field, self.process, BATCH, gen, dtype=self.dtype, device=self.device)

    def _sampler_seconds(self, score) -> float:
        def run():
            with torch.no_grad():
                probability_flow(score, self.process, self.x_T, STEPS, method="rk4", t_min=1e-3)

        return median_seconds(run, self.device, repeats=3)

    def track_unet_over_local_sampler(self, L, device):
        return self._sampler_seconds(self.unet) / self._sampler_seconds(self.local)

    track_unet_over_local_sampler.unit = "ratio"


class SamplerErrors:
    """Exact relative Frobenius covariance error of the generated field (THEORY 2) after ``steps``
    uniform steps from the exact start ``N(0, C_T)`` under VP, L = 32, d = 2 (float64, per-mode gains).

    Deterministic: the value changes only when the sampler maths changes.  Orders: Euler 1, Heun 2,
    RK4 4, Euler–Maruyama 1.
    """

    params = (["euler", "heun", "rk4", "euler-maruyama"], [8, 32])
    param_names = ["method", "steps"]
    version = VERSION

    def setup(self, method, steps):
        if method not in self.params[0]:
            raise ValueError(f"method must be one of {tuple(self.params[0])}, got method={method!r}")
        self.field, self.process = GaussianField(32, 2, 0.0), VP()

    def track_covariance_error(self, method, steps):
        field, process = self.field, self.process
        kernel = lambda t: field.score_kernel(process, float(t))  # noqa: E731
        grid = samplers.time_grid(process, steps)
        C_T = field.mode_variance(process, float(process.T))
        if method == "euler-maruyama":
            v = sde_variance(kernel, process, grid, C_T, field.mode_mask())
        else:
            v = ode_gain(kernel, process, grid, method) ** 2 * C_T
        return relative_frobenius_error(v, field.c0())

    track_covariance_error.unit = "relative Frobenius error"


class CriticalLowestModeError:
    """Sampler discretisation error at criticality (THEORY 2): the lowest mode's absolute variance error
    after a fixed number of Euler PF-ODE steps grows with L at r = 0; tracked as the fitted exponent
    (not universal: about 2.5 for OU, 1.2 for VE, 3.2 for VP)."""

    version = VERSION
    params = (["OU", "VE", "VP"], [10, 20, 50, 100])
    param_names = ["process", "steps"]

    def setup(self, process, steps):
        from critdiff_ref import OU, VE, VP

        self.p = {"OU": OU(), "VE": VE(), "VP": VP()}[process]

    def track_lowest_mode_error_exponent(self, process, steps):
        from critdiff_ref import GaussianField
        from critdiff_ref.samplers import measured_order, ode_gain, score_kernel_fn, time_grid

        p = self.p
        Ls, errors = (8, 16, 32, 64, 128), []
        for L in Ls:
            field = GaussianField(L, 2, 0.0)
            gain = ode_gain(score_kernel_fn(field, p), p, time_grid(p, steps), "euler")
            errors.append(float((gain**2 * field.mode_variance(p, p.T) - field.c0())[0, 1].abs()))
        return -measured_order(errors, Ls)

    track_lowest_mode_error_exponent.unit = "exponent"
