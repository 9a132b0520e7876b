"""Shared plumbing for the asv benchmarks: parameter grids, device/dtype resolution, synchronised
timing, the copy-bandwidth roofline, log-log fits and the local (truncated-kernel) score.

No name here starts with an asv prefix (``time_``, ``track_``, ``peakmem_``, ``mem_``), so asv's
discovery never mistakes a helper for a benchmark.

- Parameters that cannot run (CUDA without a GPU, a lattice over the size cap) make ``setup``
  raise :class:`NotImplementedError`, which asv records as "skipped" (see :func:`resolve`,
  :func:`require_sites`).
- GPU work is asynchronous: every ``time_`` method ends with :func:`synchronize` and
  :func:`median_seconds` times a GPU call with CUDA events between two synchronisations.
- Reference numerics: TF32 is disabled (CONVENTIONS), so float32 convolutions on a GPU are timed
  as true float32, the path the package's reference code uses.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from critdiff_ref import GaussianField
from critdiff_ref.processes import Process
from critdiff_ref.theory import truncated_kernel

__all__ = [
    "DEVICES",
    "DTYPES",
    "DIMS",
    "LATTICE_SIZES",
    "MAX_SITES",
    "VERSION",
    "resolve",
    "require_sites",
    "synchronize",
    "median_seconds",
    "best_seconds",
    "copy_bandwidth",
    "fit_exponent",
    "ell_for",
    "real_fft_pair",
    "local_conv_score",
]

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# Bumped by hand when a benchmark's meaning changes; asv keeps history across source edits otherwise.
VERSION = "1"

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
DIMS = (1, 2, 3)
# One list of L for every d; each (L, d) pair whose batch * L^d exceeds MAX_SITES[device] is skipped.
# Ordered smallest first: the smoke test runs the first value of every parameter.
LATTICE_SIZES = (8, 64, 512, 4096)
# Elements per benchmark call (batch * V): on the CPU (2^20) the grid keeps d = 1 up to 4096, d = 2 up
# to 64 and d = 3 at 8, so an `asv run --quick` takes minutes on one core; on a GPU (2^27 float32
# elements = 512 MiB per array) d = 2 reaches 4096 and d = 3 reaches 64.
MAX_SITES = {"cpu": 2**20, "cuda": 2**27}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``("cpu" | "cuda", "float32" | "float64") -> (torch.device, torch.dtype)``.

    Raises :class:`NotImplementedError` (asv: skip) for ``cuda`` without a GPU, ``ValueError`` for
    names outside :data:`DEVICES` / :data:`DTYPES`.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got device={device!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got dtype={dtype!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("cuda: no GPU available")
    return torch.device(device), _DTYPES[dtype]


def require_sites(L: int, d: int, batch: int, device: str, cap: int | None = None) -> int:
    """``batch * L^d`` if it fits ``cap`` (default :data:`MAX_SITES` of ``device``), else NotImplementedError (skip)."""
    for name, value in (("L", L), ("d", d), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")
    n = batch * L**d
    limit = MAX_SITES[device] if cap is None else cap
    if n > limit:
        raise NotImplementedError(f"batch * L^d = {n} exceeds the size cap {limit} on {device}")
    return n


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on ``device`` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device | str, repeats: int, warmup: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()`` after ``warmup`` calls (see :func:`median_seconds`)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got repeats={repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got warmup={warmup!r}")
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(dev)
    times = []
    if dev.type == "cuda":
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn: Callable[[], object], device: torch.device | str, *, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls.

    On a GPU each call is bracketed by CUDA events recorded on the current stream after a
    synchronisation, so queued work from before is not counted and the kernel time is (a bare
    ``synchronize`` costs ~10 us, which dominates small kernels).  On the CPU: ``perf_counter``.
    """
    return statistics.median(_seconds(fn, device, repeats, warmup))


def best_seconds(fn: Callable[[], object], device: torch.device | str, *, repeats: int = 15, warmup: int = 1) -> float:
    """Shortest wall time of ``fn()`` over ``repeats`` calls (timed as :func:`median_seconds`): the
    estimate of the uncontended time, used for roofline fractions on shared machines."""
    return min(_seconds(fn, device, repeats, warmup))


def copy_bandwidth(device: torch.device | str, nbytes: int = 2**26, *, repeats: int = 15) -> float:
    """Measured device-to-device copy bandwidth in bytes/s from the best of ``repeats`` copies:
    ``dst.copy_(src)`` moves ``2 nbytes`` (one read, one write).  The roofline against which
    bandwidth-bound kernels are reported (both timed with :func:`best_seconds`)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 2**10:
        raise ValueError(f"nbytes must be an int >= 1024, got nbytes={nbytes!r}")
    n = nbytes // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), device, repeats=repeats, warmup=2)
    return 2.0 * n * 4 / seconds


def kernel_seconds(fn: Callable[[], object], device: torch.device | str) -> float:
    """Total duration of the device work (kernels, copies) of one ``fn()`` call, from ``torch.profiler``
    (CUDA only: on the CPU the work and its launch are one thing, NotImplementedError).  Against a
    wall time this separates the launch overhead from the kernels (kernels replayed from a CUDA graph
    count where the profiler reports them; where it sees no device work at all, NotImplementedError)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        raise NotImplementedError(f"kernel time is measured on cuda only, got device={dev}")
    from torch.profiler import ProfilerActivity, profile

    fn()
    synchronize(dev)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        synchronize(dev)
    seconds = sum(event.self_device_time_total for event in prof.key_averages()) / 1e6
    if seconds <= 0.0:
        raise NotImplementedError("the profiler saw no device activity (CUPTI unavailable?)")
    return seconds


def fit_exponent(xs, ys) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the ``z`` of ``y ~ x^z``."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(f"xs and ys must be 1-D of equal length >= 2, got shapes {x.shape}, {y.shape}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("xs and ys must be finite and > 0 for a log-log fit")
    if np.ptp(np.log(x)) == 0:
        raise ValueError("xs must hold at least two distinct values")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def ell_for(L: int) -> int:
    """Receptive radius ``ell = round(ln L)`` (THEORY 5: ell ~ ln L keeps the 2-D local error bounded),
    at least 1 and at most ``(L - 1) // 2`` so that the box ``2 ell + 1`` fits the lattice."""
    if isinstance(L, bool) or not isinstance(L, int) or L < 3:
        raise ValueError(f"L must be an int >= 3, got L={L!r}")
    return max(1, min(round(math.log(L)), (L - 1) // 2))


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def local_conv_score(field: GaussianField, process: Process, ell: int):
    """Local linear score: the exact kernel truncated to ``|z|_inf <= ell`` (THEORY 5,
    :func:`critdiff_ref.theory.truncated_kernel`) applied as one ``(2 ell + 1)^d`` circular convolution.

    Returns ``score(x, t)``, ``x`` of shape ``(batch, *lattice)``; the window at each new ``t`` is
    computed once (float64 on the CPU) and cached per (t, dtype, device).  With ``2 ell + 1 = L``
    the box is the whole torus and the score equals the exact FFT score.
    """
    if field.d not in _CONV:
        raise ValueError(f"field.d must be 1, 2 or 3 for a convolution score, got d={field.d}")
    if isinstance(ell, bool) or not isinstance(ell, int) or not 0 <= ell <= (field.L - 1) // 2:
        raise ValueError(f"ell must be an int in [0, (L - 1) // 2] = [0, {(field.L - 1) // 2}], got ell={ell!r}")
    d, width = field.d, 2 * ell + 1
    dims = tuple(range(d))
    cache: dict = {}

    def weight(t: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (float(t), dtype, str(device))
        if key not in cache:
            K = truncated_kernel(field, process, float(t), ell)  # K(z), lattice layout, float64
            window = torch.roll(K, shifts=(ell,) * d, dims=dims)[(slice(0, width),) * d]  # window[m] = K(m - ell)
            # conv is a cross-correlation, out(x) = sum_m w(m) phi(x + m - ell); s(x) = sum_z K(z) phi(x - z)
            # needs w(m) = K(ell - m): the flipped window.
            cache[key] = window.flip(dims).to(dtype=dtype, device=device).reshape(1, 1, *([width] * d))
        return cache[key]

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        h = F.pad(x.unsqueeze(1), (ell, ell) * d, mode="circular")
        return _CONV[d](h, weight(t, x.dtype, x.device)).squeeze(1)

    return score


def real_fft_pair(x: torch.Tensor, d: int) -> torch.Tensor:
    """The FFT pair a real-field filter needs: ``irfftn(rfftn(x))`` over the last ``d`` axes (unitary).

    The reference of the "within 1.2x of its FFT pair" targets: the exact sampler and the FFT score
    filter real fields through rfftn/irfftn (:func:`critdiff_ref.lattice.real_filter`), half the work
    of the complex pair ``ifftn(fftn(x))``.
    """
    dims = tuple(range(-d, 0))
    return torch.fft.irfftn(torch.fft.rfftn(x, dim=dims, norm="ortho"), s=x.shape[-d:], dim=dims, norm="ortho")
