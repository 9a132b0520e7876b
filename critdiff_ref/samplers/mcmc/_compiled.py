"""Whole HMC trajectories compiled by ``torch.compile``, a persistent compile cache, and the
choice between them and the eager trajectory.

At small lattices an HMC trajectory is ~200 tensor operations of a few microseconds each, so the eager
chain is bound by per-operation dispatch (a plain numpy HMC beats it at L = 32 on one core), and a
compiled leapfrog step (:func:`..fused.kernel`) still pays one call per step.  Here the whole
trajectory -- ``H0``, the ``n_steps`` leapfrog steps, ``dH``, accept/reject -- is recorded once with
``make_fx`` (the same body the eager chain runs, :func:`._hmc._trajectory`) and compiled by inductor
(directly: no dynamo guards per call) into one program per (target, ``n_steps``, shape, dtype, device); ``eps`` is an input tensor, so step
adaptation does not recompile.  Its random numbers are inputs drawn eagerly from the chain's generator,
so the compiled chain is the eager chain to rounding.

Compilation costs 25-110 s on this loaded 2-core CPU; inductor's on-disk caches make a second process
pay only the tracing and loading (5-10 s).  :func:`persistent_cache` points them at ``~/.cache/critdiff_ref/inductor``
(``$XDG_CACHE_HOME`` honoured) unless ``TORCHINDUCTOR_CACHE_DIR`` is set, and a marker file per
program records that it was built there before.  :func:`worth_compiling` compares the estimated eager
remainder of a run with that compile estimate: short runs stay eager.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections import OrderedDict
from typing import Callable

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ... import _io

__all__ = []  # private: used by ._hmc

# Estimated compile seconds of one trajectory program (10 leapfrog steps): first build (inductor + C++
# compiler: 25-110 s measured on this 2-core machine under load 10-20) and a build found in the on-disk
# caches (tracing and loading: 5-10 s under the same load).
COLD_COMPILE_SECONDS = 40.0
WARM_COMPILE_SECONDS = 6.0
# Compile only when the eager remainder of the run exceeds this many compile estimates: the compiled
# trajectory is 2-5x faster (BENCHMARKS.md), so half the eager time must at least pay for the compile.
PAYBACK = 2.0
# inductor inlines a producer into each consumer by default (a leapfrog step's q = phi + eps p is
# recomputed at every neighbour read of the next force); realising every buffer read more than once
# keeps each step one pass over memory (measured 1.2-1.5x faster at L = 64..256).
_OPTIONS = {"realize_reads_threshold": 1}
MAX_PROGRAMS = 8
_PROGRAMS: OrderedDict = OrderedDict()


def cache_root() -> str:
    """The directory of this package's compile caches (``$XDG_CACHE_HOME/critdiff_ref`` or ``~/.cache/critdiff_ref``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "critdiff_ref")


def persistent_cache() -> str:
    """Point inductor's on-disk caches at :func:`cache_root` unless ``TORCHINDUCTOR_CACHE_DIR`` is set
    (then that directory is used); returns the directory in use."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        path = os.path.join(cache_root(), "inductor")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:  # read-only home: inductor's own default (a temporary directory) stays
            return ""
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels here (a C++ compiler on the CPU, triton on a GPU)."""
    if device.type == "cpu":
        return shutil.which("g++") is not None or shutil.which("c++") is not None
    if device.type == "cuda":
        import importlib.util

        return importlib.util.find_spec("triton") is not None
    return False


def _marker(key: tuple) -> str:
    digest = hashlib.sha256(repr((torch.__version__, key)).encode()).hexdigest()[:32]
    return os.path.join(persistent_cache() or cache_root(), "critdiff_hmc", digest)


def _signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(x.shape), str(x.dtype), str(x.device)) for x in inputs)


def compile_estimate(key: tuple, inputs: tuple[torch.Tensor, ...]) -> float:
    """Seconds a :func:`program` for ``key`` would take to build now: 0 when built in this process,
    :data:`WARM_COMPILE_SECONDS` when built before with these caches, else :data:`COLD_COMPILE_SECONDS`."""
    full = (key, _signature(inputs), torch.get_num_threads())
    if full in _PROGRAMS:
        return 0.0
    return WARM_COMPILE_SECONDS if os.path.exists(_marker(full)) else COLD_COMPILE_SECONDS


def worth_compiling(seconds_per_update: float, remaining: int, key: tuple, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Compile when the eager remainder ``seconds_per_update * remaining`` exceeds :data:`PAYBACK`
    compile estimates (:func:`compile_estimate`)."""
    return seconds_per_update * remaining > PAYBACK * compile_estimate(key, inputs)


def _inductor(graph: torch.fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> Callable[..., tuple]:
    """The recorded graph compiled by inductor without dynamo: no guards and no module call around the
    kernel (~100-150 us less per call than ``torch.compile(graph)``, which is most of a trajectory at
    L = 32).  Safe because :func:`program` caches per exact shapes, dtypes and devices and its callers
    pass contiguous tensors.  The build runs in a tracing context with a shape environment, without
    which inductor bypasses its on-disk caches ("No shape env"), on static fake inputs (with real ones the
    shape environment makes every size symbolic: generic loops, measured 3.7x slower); ``torch.compile``
    where these private entry points are missing."""
    try:
        from torch._guards import TracingContext, tracing
        from torch._inductor.compile_fx import compile_fx
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv
    except ImportError:  # pragma: no cover - a torch without these entry points
        return torch.compile(graph, dynamic=False, options=_OPTIONS)
    fake_mode = FakeTensorMode(shape_env=ShapeEnv())
    fake_inputs = [fake_mode.from_tensor(x, static_shapes=True) for x in inputs]
    with tracing(TracingContext(fake_mode)):
        return compile_fx(graph, fake_inputs, config_patches=_OPTIONS)


def program(key: tuple, body: Callable[..., tuple], inputs: tuple[torch.Tensor, ...]) -> Callable[..., tuple]:
    """``body`` recorded on ``inputs`` with ``make_fx`` and compiled by inductor, cached per ``(key,
    shapes, dtypes, devices, threads)`` (at most :data:`MAX_PROGRAMS`); ``key`` must determine every
    Python value the body reads (target parameters, step count)."""
    full = (key, _signature(inputs), torch.get_num_threads())
    fn = _PROGRAMS.get(full)
    if fn is not None:
        _PROGRAMS.move_to_end(full)
        return fn
    persistent_cache()
    with torch.no_grad():
        graph = make_fx(body, tracing_mode="real")(*inputs)
    compiled = _inductor(graph, inputs)

    def run(*args: torch.Tensor) -> tuple:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*complex operators.*")
            return tuple(compiled(*args))

    run(*inputs)  # build now (the caller times the build apart from the chain)
    _PROGRAMS[full] = run
    while len(_PROGRAMS) > MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    path = _marker(full)
    try:  # atomically, so a killed process never leaves a marker claiming a build it did not finish
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _io.atomic_write_text(path, repr(full))
    except OSError:  # no writable cache: the next process estimates a cold build, which is only conservative
        pass
    return run


def clear_programs() -> None:
    """Drop the compiled trajectory programs of this process (the on-disk caches stay)."""
    _PROGRAMS.clear()
