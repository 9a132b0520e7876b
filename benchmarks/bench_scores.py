"""Score evaluation cost (THEORY 2, 5): the exact Fourier score, the local truncated-kernel score
(ell ~ ln L) and the full-size circular convolution, over L, d, device and dtype.

Tracked: the FFT score's time relative to the bare FFT pair it needs (target <= 1.2), the
full-size convolution's time relative to the FFT score, and runtime-vs-V exponents per score form.
"""

from __future__ import annotations

import torch

from critdiff_ref import VP, GaussianField, exact_score, lattice
from critdiff_ref.trainers import circular_conv

from .common import (
    DEVICES,
    DIMS,
    DTYPES,
    LATTICE_SIZES,
    VERSION,
    ell_for,
    fit_exponent,
    local_conv_score,
    real_fft_pair,
    median_seconds,
    require_sites,
    resolve,
    synchronize,
)

BATCH = 8
T_EVAL = 0.5  # a diffusion time where the exact kernel is long-ranged (THEORY 2)
# Full-size convolution costs batch * V^2 multiply-adds: cap that product (about 1 s on one CPU core).
FULL_CONV_MACS = {"cpu": 2**28, "cuda": 2**36}


def _field_input(L: int, d: int, device: str, dtype: str, batch: int = BATCH):
    dev, dt = resolve(device, dtype)
    require_sites(L, d, batch, device)
    field = GaussianField(L, d, 0.0)
    process = VP()
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((batch, *field.shape), generator=gen, dtype=dt, device=dev)
    return field, process, x, dev


class _ScoreBench:
    """Shared parameters and input: one score evaluation on ``(8, *lattice)`` at ``t = 0.5`` under VP."""

    params = (list(LATTICE_SIZES), list(DIMS), list(DEVICES), list(DTYPES))
    param_names = ["L", "d", "device", "dtype"]
    version = VERSION

    def setup(self, L, d, device, dtype):
        self.field, self.process, self.x, self.device = _field_input(L, d, device, dtype)


class FFTScore(_ScoreBench):
    """The exact Fourier-diagonal score ``F^-1[K_t F[x]]`` and the bare FFT pair it needs."""

    def setup(self, L, d, device, dtype):
        super().setup(L, d, device, dtype)
        self.score = exact_score(self.field, self.process)
        self.score(self.x, T_EVAL)  # build the cached c0 outside the timed region
        synchronize(self.device)

    def time_fft_score(self, L, d, device, dtype):
        self.score(self.x, T_EVAL)
        synchronize(self.device)

    def time_fft_pair(self, L, d, device, dtype):
        lattice.ifft(lattice.fft(self.x, d), d)
        synchronize(self.device)


class LocalConvScore(_ScoreBench):
    """The exact kernel truncated to radius ``ell = round(ln L)``: one ``(2 ell + 1)^d`` circular conv."""

    def setup(self, L, d, device, dtype):
        super().setup(L, d, device, dtype)
        self.score = local_conv_score(self.field, self.process, ell_for(L))
        self.score(self.x, T_EVAL)  # build the cached window outside the timed region
        synchronize(self.device)

    def time_local_conv_score(self, L, d, device, dtype):
        self.score(self.x, T_EVAL)
        synchronize(self.device)


def _full_kernel(field, process, x, device):
    if BATCH * field.V**2 > FULL_CONV_MACS[str(device)]:
        raise NotImplementedError(f"full-size convolution: batch * V^2 = {BATCH * field.V**2} multiply-adds over the cap")
    return field.real_space_score_kernel(process, T_EVAL).to(dtype=x.dtype, device=device)


class FullConvScore(_ScoreBench):
    """The exact kernel as one full-size circular convolution (``batch * V^2`` multiply-adds)."""

    def setup(self, L, d, device, dtype):
        super().setup(L, d, device, dtype)
        self.kernel = _full_kernel(self.field, self.process, self.x, self.device)
        synchronize(self.device)

    def time_full_conv_score(self, L, d, device, dtype):
        circular_conv(self.x, self.kernel)
        synchronize(self.device)


class ScoreRatios:
    """Ratios measured side by side in one process, d = 2, float32; the FFT score
    against the real FFT pair it needs (:func:`benchmarks.common.real_fft_pair`)."""

    params = ([32, 128, 256], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION + ".2"  # .2: the reference pair is the real pair (was the complex fftn/ifftn pair)
    timeout = 300

    def setup(self, L, device):
        self.field, self.process, self.x, self.device = _field_input(L, 2, device, "float32")
        self.fft_score = exact_score(self.field, self.process)
        self.local_score = local_conv_score(self.field, self.process, ell_for(L))
        self.local_score(self.x, T_EVAL)

    def track_fft_score_over_fft_pair(self, L, device):
        """Target <= 1.2: the exact score costs little beyond its FFT pair."""
        pair = median_seconds(lambda: real_fft_pair(self.x, 2), self.device)
        return median_seconds(lambda: self.fft_score(self.x, T_EVAL), self.device) / pair

    track_fft_score_over_fft_pair.unit = "ratio"

    def track_local_conv_over_fft_score(self, L, device):
        local = median_seconds(lambda: self.local_score(self.x, T_EVAL), self.device)
        return local / median_seconds(lambda: self.fft_score(self.x, T_EVAL), self.device)

    track_local_conv_over_fft_score.unit = "ratio"


class FullConvRatio:
    """Full-size circular convolution over the FFT score, d = 2, float32 (issue: > 1000x at L = 256 on an H100)."""

    params = ([16, 32, 256], list(DEVICES))
    param_names = ["L", "device"]
    version = VERSION
    timeout = 300

    def setup(self, L, device):
        self.field, self.process, self.x, self.device = _field_input(L, 2, device, "float32")
        self.kernel = _full_kernel(self.field, self.process, self.x, self.device)
        self.fft_score = exact_score(self.field, self.process)

    def track_full_conv_over_fft_score(self, L, device):
        full = median_seconds(lambda: circular_conv(self.x, self.kernel), self.device, repeats=3)
        return full / median_seconds(lambda: self.fft_score(self.x, T_EVAL), self.device)

    track_full_conv_over_fft_score.unit = "ratio"


SCALING_SIZES = {"fft": (32, 64, 128, 256), "local": (32, 64, 128, 256), "full": (8, 12, 16, 24)}


class ScoreScaling:
    """Fitted exponent ``z`` of runtime ~ V^z per score form, d = 2, float32 (FFT ~ 1 + log, local ~ 1, full ~ 2).

    Small lattices are overhead-bound, so on the CPU the fitted z sits below the asymptotic value.
    """

    params = (["fft", "local", "full"], list(DEVICES))
    param_names = ["form", "device"]
    version = VERSION
    timeout = 300

    def setup(self, form, device):
        if form not in SCALING_SIZES:
            raise ValueError(f"form must be one of {tuple(SCALING_SIZES)}, got form={form!r}")
        self.device, self.dtype = resolve(device, "float32")

    def _runtime(self, form: str, L: int) -> float:
        field, process, x, dev = _field_input(L, 2, str(self.device), "float32")
        if form == "fft":
            score = exact_score(field, process)
            return median_seconds(lambda: score(x, T_EVAL), dev, repeats=5)
        if form == "local":
            score = local_conv_score(field, process, ell_for(L))
            return median_seconds(lambda: score(x, T_EVAL), dev, repeats=5)
        kernel = field.real_space_score_kernel(process, T_EVAL).to(x.dtype).to(dev)
        return median_seconds(lambda: circular_conv(x, kernel), dev, repeats=3)

    def track_runtime_exponent(self, form, device):
        Ls = SCALING_SIZES[form]
        return fit_exponent([L**2 for L in Ls], [self._runtime(form, L) for L in Ls])

    track_runtime_exponent.unit = "exponent z (time ~ V^z)"
