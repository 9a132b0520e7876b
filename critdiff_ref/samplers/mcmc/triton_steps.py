"""Triton kernels for the lattice phi^4 Langevin step and Metropolis sweep with in-kernel noise.

``fused=True`` (:mod:`.fused`) compiles the update arithmetic but still reads noise that
``torch.randn`` / ``torch.rand`` wrote to memory, which doubles the traffic of a Langevin step and is
its cost on the CPU.  Here one kernel per update reads ``phi`` (and its ``2d`` neighbours, from
cache), draws its noise with Triton's counter-based Philox (``tl.randn`` / ``tl.rand`` of
``(seed, site index)``) and writes the new ``phi``: 2 itemsizes per site for a Langevin step,
about 4 for a checkerboard sweep.  The seed is drawn from the caller's ``torch.Generator`` once per
update, so a run is reproducible from its seed; it is a different (equally valid) chain from the
eager one, whose noise comes from the generator's own stream.

Kernels (THEORY 8 action, ``F = -dS/dphi``):

- Langevin: ``phi'_x = phi_x + dtau F_x + sqrt(2 dtau) xi_x``,
  ``F_x = 2 kappa sum_mu (phi_{x+mu} + phi_{x-mu}) - 2 (1 - 2 lam) phi_x - 4 lam phi_x^3``;
- Metropolis, per colour (``sum_mu x_mu`` mod 2): ``phi'_x = phi_x + step (2 u_x - 1)``, accepted iff
  ``log r_x < -dS_x`` (:func:`.mcmc.local_action_change`); ``u`` at Philox offset ``x``, ``r`` at
  ``x + n`` (``n`` sites in all), one pair per site and sweep, as in :func:`.mcmc.metropolis_sweep`.

They run on CUDA; on the CPU only under Triton's interpreter (``TRITON_INTERPRET=1``, numpy: for
tests, far slower than eager).  Needs ``triton`` (:func:`require_triton`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import torch

from ...targets import Phi4Lattice

__all__ = ["require_triton", "draw_seed", "langevin_step", "metropolis_sweep", "philox_normal", "philox_uniform"]

BLOCK = 1024  # sites per program: a tile of chains x sites (several chains per program on small lattices)


def require_triton(device: torch.device | str) -> None:
    """Raise :class:`RuntimeError` unless the Triton kernels can run on ``device``."""
    if importlib.util.find_spec("triton") is None:
        raise RuntimeError("fused='triton' needs the triton package (use fused=True or False)")
    device = torch.device(device)
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("fused='triton' runs on a CUDA device (on the CPU only under TRITON_INTERPRET=1, for tests)")
    if device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"fused='triton' runs on cuda, got device {device}")


def draw_seed(generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """A Philox seed in ``[0, 2^31)`` from ``generator`` as a one-element int64 tensor on ``device``
    (one per update, so the run follows the generator).  Drawn where the generator lives: a generator
    on the chains' GPU costs no host synchronisation, a CPU generator one small copy per update."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    seed = torch.randint(0, 2**31 - 1, (1,), generator=generator, dtype=torch.int64, device=gen_device)
    return seed.to(device)


@functools.cache
def _kernels(interpret: bool):
    """The kernel module (:mod:`._triton_kernels`), imported on first use.  Triton decides at import
    whether its kernels are compiled or interpreted (``TRITON_INTERPRET``), so one process runs
    either CUDA kernels or interpreted CPU ones."""
    from . import _triton_kernels as kernels

    if kernels.INTERPRETED != interpret:
        mode = "interpreted (TRITON_INTERPRET=1)" if kernels.INTERPRETED else "compiled for CUDA"
        raise RuntimeError(f"the Triton kernels were loaded {mode} in this process; they cannot also run the other way")
    if interpret and not kernels.LIBRARY_INTERPRETED:
        raise RuntimeError("triton was imported before TRITON_INTERPRET=1 was set: set it before the first `import triton`")
    return kernels


def _tiling(target: Phi4Lattice, phi: torch.Tensor) -> tuple[tuple[int, int], dict]:
    """Grid and tile (``ROWS`` chains x ``COLS`` sites, ``ROWS * COLS <= BLOCK``, powers of two)."""
    cols = min(BLOCK, 1 << (target.V - 1).bit_length())
    rows = BLOCK // cols
    n_chains = phi.numel() // target.V
    return (math.ceil(n_chains / rows), math.ceil(target.V / cols)), dict(D=target.d, ROWS=rows, COLS=cols)


def _prepare(target: Phi4Lattice, phi: torch.Tensor) -> torch.Tensor:
    if not isinstance(target, Phi4Lattice):
        raise TypeError(f"fused='triton' needs a Phi4Lattice target (local action), got {type(target).__name__}")
    if phi.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"fused='triton' needs float32 or float64 phi, got {phi.dtype}")
    require_triton(phi.device)
    return phi.contiguous()


def _coefficients(phi: torch.Tensor, *values: float) -> torch.Tensor:
    """Scalars for a kernel in the dtype of ``phi`` (Triton passes Python floats as float32), built
    once per (values, dtype, device): a chain reuses them instead of copying them to the GPU each update."""
    return _coefficient_tensor(tuple(float(v) for v in values), phi.dtype, phi.device)


@functools.lru_cache(maxsize=64)
def _coefficient_tensor(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)  # read-only: the kernels only load it


def _kernel(name: str, device: torch.device):
    return getattr(_kernels(torch.device(device).type == "cpu"), name)


def langevin_step(target: Phi4Lattice, phi: torch.Tensor, seed: torch.Tensor, dtau: float) -> torch.Tensor:
    """One Euler Langevin step ``phi + dtau F(phi) + sqrt(2 dtau) xi`` with ``xi = randn(seed, site)``
    (``seed`` from :func:`draw_seed`)."""
    phi = _prepare(target, phi)
    out = torch.empty_like(phi)
    coef = _coefficients(phi, target.kappa, target.lam, dtau, math.sqrt(2.0 * dtau))
    grid, tile = _tiling(target, phi)
    _kernel("langevin", phi.device)[grid](phi, out, coef, seed, phi.numel() // target.V, target.V, target.L, **tile)
    return out


def metropolis_sweep(target: Phi4Lattice, phi: torch.Tensor, seed: torch.Tensor, step_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One checkerboard sweep (even sites, then odd): ``(phi_new, accepted fraction (n_chains,))``."""
    phi = _prepare(target, phi)
    grid, tile = _tiling(target, phi)
    n_chains = phi.numel() // target.V
    accepted = torch.zeros(n_chains, dtype=torch.int32, device=phi.device)
    colour = _kernel("colour", phi.device)
    out = torch.empty_like(phi)
    args = (_coefficients(phi, target.kappa, target.lam, step_size), seed, n_chains, target.V, target.L)
    colour[grid](phi, out, accepted, *args, 0, **tile)  # even sites; odd ones copied
    colour[grid](out, out, accepted, *args, 1, **tile)  # odd sites in place: they read even sites only
    return out, accepted.to(phi.dtype) / target.V


def philox_normal(seed: int, n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cuda") -> torch.Tensor:
    """``tl.randn(seed, i)`` for ``i < n``: the Langevin kernel's noise, for tests and cross-checks."""
    require_triton(device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    seed_t = torch.tensor([seed], dtype=torch.int64, device=device)
    _kernel("normal", out.device)[(math.ceil(n / BLOCK),)](out, seed_t, n, BLOCK_=BLOCK)
    return out.to(dtype)


def philox_uniform(seed: int, n: int, offset: int = 0, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cuda") -> torch.Tensor:
    """``tl.rand(seed, i + offset)`` for ``i < n``: the Metropolis kernel's uniforms, for tests."""
    require_triton(device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    seed_t = torch.tensor([seed], dtype=torch.int64, device=device)
    _kernel("uniform", out.device)[(math.ceil(n / BLOCK),)](out, seed_t, offset, n, BLOCK_=BLOCK)
    return out.to(dtype)
