"""Fused update kernels: ``torch.compile`` of the per-site arithmetic of a sampler step.

An eager phi^4 leapfrog step launches one kernel per ``torch.roll``, product and sum and moves
``phi`` and ``pi`` through memory many times; the same arithmetic compiled by inductor is one
kernel that reads ``phi`` and ``pi`` once and writes them once (16 B per site in float32, the
bandwidth roofline of the update). The MCMC samplers (:mod:`.mcmc`) call their update bodies
through :func:`kernel`, so ``fused=True`` runs exactly the eager arithmetic, compiled (HMC's default
``fused="auto"`` compiles the whole trajectory instead, :mod:`.mcmc._compiled`); the random
numbers are still drawn eagerly from the caller's ``torch.Generator``, so a fused chain and an
eager chain with the same seed agree to rounding.

Compilation happens on first use per (body, target parameters, shape, dtype, device) and takes
seconds; it needs a C++ compiler on the CPU and Triton on a GPU (:func:`require_compiler`). Past
``torch._dynamo.config.recompile_limit`` such variants of one body (8 by default: e.g. a scan over
many ``kappa`` values) torch runs the body eagerly: still correct, no longer fused.

Whole samplers (:func:`capture`, used by ``probability_flow`` / ``reverse_sde`` with ``fused=True``):
at small L a sampler step is a few microseconds of kernels behind tens of Python-side launches, so
the N-step loop itself is captured. The loop is run once on the real start state while
``make_fx(tracing_mode="real")`` records every tensor operation it performs (what CUDA-graph
capture would record, on any device); the Python around them -- grid times, process coefficients,
the score's checks and caches -- runs at that time and leaves only constants. The recorded graph is
compiled by inductor (one straight-line program; on CUDA with ``mode="reduce-overhead"``, i.e.
replayed as one CUDA graph), or with ``fused="graph"`` not compiled: the recorded kernels replayed as
one CUDA graph (``backend="cudagraphs"``; on the CPU the recorded operations run as they are), which
costs one run to build where inductor takes seconds to minutes (a U-Net score: 160 s on the CPU
for six evaluations). Contract, as for any graph capture: the loop must perform the same
tensor operations for every input of that shape (a score that branches in Python on tensor values
is recorded with the branch it took on the first run), and its random numbers are inputs (drawn
eagerly by the caller). Compile time grows linearly with the number of steps (the graph is
unrolled: 10-50 s for 8-32 RK4 steps on 2 CPU cores); the result is cached per
(sampler, score, process, grid, shapes, dtypes, device), at most :data:`MAX_CAPTURED` of them.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import warnings
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

import torch
from torch.fx.experimental.proxy_tensor import make_fx

__all__ = ["require_compiler", "compiled", "kernel", "check_fused", "capture", "clear_captured", "Identity", "MAX_CAPTURED"]

F = TypeVar("F", bound=Callable)


def require_compiler(device: torch.device | str) -> None:
    """Raise :class:`RuntimeError` when ``torch.compile`` cannot build kernels for ``device``."""
    device = torch.device(device)
    if device.type == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        raise RuntimeError("fused=True needs a C++ compiler on PATH for torch.compile on the CPU (use fused=False)")
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise RuntimeError("fused=True needs triton for torch.compile on a GPU (use fused=False)")


@functools.cache
def compiled(fn: F) -> F:
    """``torch.compile(fn)`` with static shapes, built once per function (cached)."""
    return torch.compile(fn, dynamic=False)


def kernel(fn: F, fused: bool) -> F:
    """``fn`` itself, or its compiled version when ``fused``."""
    return compiled(fn) if fused else fn


def check_fused(fused, device: torch.device | str, *, triton: bool = False, graph: bool = False) -> bool | str:
    """Validate the ``fused`` flag of a public sampler: a bool (a compiler present when True),
    ``"triton"`` where the sampler has Triton kernels (``triton=True``: :mod:`.triton_steps`), or
    ``"graph"`` where it can be captured without compiling (``graph=True``: :func:`capture`)."""
    if triton and fused == "triton":
        from .mcmc.triton_steps import require_triton

        require_triton(device)
        return "triton"
    if graph and fused == "graph":
        return "graph"
    if not isinstance(fused, bool):
        extra = [repr(x) for x, ok in (("triton", triton), ("graph", graph)) if ok]
        allowed = f"True, False or {' or '.join(extra)}" if extra else "a bool"
        raise TypeError(f"fused must be {allowed}, got {fused!r}")
    if fused:
        require_compiler(device)
    return fused


# Captured whole loops, least recently used first out (each holds its graph's constants and code).
MAX_CAPTURED = 8
_CAPTURED: OrderedDict = OrderedDict()

Loop = Callable[..., tuple]


def _signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)


def _build(loop: Loop, inputs: tuple[torch.Tensor, ...], compile_: bool) -> Loop:
    with torch.no_grad():  # a captured loop is inference only (capture refuses inputs that need grad)
        # real tracing: Python reads of tensor values (a score's checks) see the values of this run
        graph = make_fx(loop, tracing_mode="real", _error_on_data_dependent_ops=False)(*inputs)
    on_cuda = inputs[0].device.type == "cuda"
    if compile_:
        program = torch.compile(graph, dynamic=False, mode="reduce-overhead" if on_cuda else None)
    elif on_cuda:
        program = torch.compile(graph, dynamic=False, backend="cudagraphs")  # the recorded kernels, replayed
    else:
        program = graph  # the recorded operations, replayed without the Python around them

    def run(*args: torch.Tensor) -> tuple:
        with warnings.catch_warnings():  # inductor leaves complex FFT products to aten: expected, not news
            warnings.filterwarnings("ignore", message=".*complex operators.*")
            if not on_cuda:
                return tuple(program(*args))
            torch.compiler.cudagraph_mark_step_begin()
            # the outputs live in the CUDA graph's memory pool and are overwritten by the next replay
            return tuple(out.clone() for out in program(*args))

    return run


class Identity:
    """A cache-key part equal only to itself (hashed by ``id``; holds the object, so the id stays its own)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def capture(key: Hashable, loop: Loop, inputs: tuple[torch.Tensor, ...], *, compile: bool = True) -> Loop:
    """``loop`` recorded on ``inputs`` and compiled (``compile=False``: replayed as recorded, a CUDA
    graph on a GPU), cached per ``(key, compile, shapes, dtypes, device)``.

    ``loop(*inputs)`` must return a tuple of tensors; the returned callable takes tensors of the same
    shapes, dtypes and device and returns the same tuple. See the module docstring for the contract.
    """
    if any(x.requires_grad for x in inputs):
        raise ValueError("a captured sampler (fused=True or 'graph') runs without autograd: pass tensors that do not require grad (or fused=False)")
    full_key = (key, compile, _signature(inputs))
    fn = _CAPTURED.get(full_key)
    if fn is None:
        fn = _CAPTURED[full_key] = _build(loop, inputs, compile)
        while len(_CAPTURED) > MAX_CAPTURED:
            _CAPTURED.popitem(last=False)
    else:
        _CAPTURED.move_to_end(full_key)
    return fn


def clear_captured() -> None:
    """Drop every captured loop (they hold their score, its constants and compiled code)."""
    _CAPTURED.clear()
