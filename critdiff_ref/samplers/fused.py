"""Fused update kernels (issue 8): ``torch.compile`` of the per-site arithmetic of a sampler step.

An eager phi^4 leapfrog step launches one kernel per ``torch.roll``, product and sum and moves
``phi`` and ``pi`` through memory many times; the same arithmetic compiled by inductor is one
kernel that reads ``phi`` and ``pi`` once and writes them once (16 B per site in float32, the
bandwidth roofline of the update). The MCMC samplers (:mod:`.mcmc`) call their update bodies
through :func:`kernel`, so ``fused=True`` runs exactly the eager arithmetic, compiled; the random
numbers are still drawn eagerly from the caller's ``torch.Generator``, so a fused chain and an
eager chain with the same seed agree to rounding.

Compilation happens on first use per (body, target parameters, shape, dtype, device) and takes
seconds; it needs a C++ compiler on the CPU and Triton on a GPU (:func:`require_compiler`). Past
``torch._dynamo.config.recompile_limit`` such variants of one body (8 by default: e.g. a scan over
many ``kappa`` values) torch runs the body eagerly: still correct, no longer fused.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from typing import Callable, TypeVar

import torch

__all__ = ["require_compiler", "compiled", "kernel", "check_fused"]

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


def check_fused(fused, device: torch.device | str) -> bool:
    """Validate the ``fused`` flag of a public sampler (a bool; a compiler present when True)."""
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool, got {fused!r}")
    if fused:
        require_compiler(device)
    return fused
