"""Triton kernels of :mod:`.triton_steps` (imported only there, on first use; needs ``triton``).

Sites are addressed as ``chain * V + site`` in a contiguous ``(chains, L, ..., L)`` array; a program
handles a tile of ``ROWS`` chains x ``COLS`` sites (grid: ceil(chains / ROWS) x ceil(V / COLS)), so
small lattices pack several chains into one program and acceptance sums stay per chain.  Arithmetic is in the
dtype of ``phi``: the coupling constants come in a tensor ``coef_ptr`` of that dtype (Triton would
pass Python floats as float32) and the Philox seed in a one-element int64 tensor (drawn on the
device from the caller's generator: no host synchronisation); the noise is float32 Philox, cast.
"""

import triton
import triton.language as tl
from triton import knobs

INTERPRETED = bool(knobs.runtime.interpret)
# triton.language's own functions (tl.randn, ...) were jitted when triton was imported: interpreted
# kernels need them interpreted too, i.e. TRITON_INTERPRET=1 before the first `import triton`
LIBRARY_INTERPRETED = type(tl.randn).__name__ == "InterpretedFunction"


@triton.jit
def neighbour_sum(phi_ptr, site, base, L, x, D: tl.constexpr):
    """``sum_mu (phi_{x+mu} + phi_{x-mu})`` with periodic wrap; ``site`` in ``[0, L^D)``, ``x`` gives the dtype."""
    total = x * 0.0
    stride = 1
    for _ in tl.static_range(D):  # the last axis (stride 1) first, then outwards
        c = (site // stride) % L
        up = tl.where(c == L - 1, site - (L - 1) * stride, site + stride)
        down = tl.where(c == 0, site + (L - 1) * stride, site - stride)
        total += tl.load(phi_ptr + base + up)
        total += tl.load(phi_ptr + base + down)
        stride = stride * L
    return total


@triton.jit
def parity(site, L, D: tl.constexpr):
    """``sum_mu x_mu`` mod 2 of the site index."""
    total = site * 0
    stride = 1
    for _ in tl.static_range(D):
        total += (site // stride) % L
        stride = stride * L
    return total % 2


@triton.jit
def tile(n_chains, V, ROWS: tl.constexpr, COLS: tl.constexpr):
    """This program's ``(site, chain * V, live)``, each ``(ROWS, COLS)``; dead lanes point at site 0 of chain 0."""
    chain = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)[:, None]
    site = tl.program_id(1).to(tl.int64) * COLS + tl.arange(0, COLS).to(tl.int64)[None, :]
    live = (site < V) & (chain < n_chains)
    return tl.where(live, site, 0), tl.where(live, chain, 0) * V, live


@triton.jit
def langevin(phi_ptr, out_ptr, coef_ptr, seed_ptr, n_chains, V, L, D: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr):
    """``phi' = phi + dtau F + sqrt(2 dtau) randn(seed, chain * V + site)``; coef = (kappa, lam, dtau, sqrt(2 dtau))."""
    seed = tl.load(seed_ptr)
    kappa = tl.load(coef_ptr)
    lam = tl.load(coef_ptr + 1)
    dtau = tl.load(coef_ptr + 2)
    noise_scale = tl.load(coef_ptr + 3)
    site, base, live = tile(n_chains, V, ROWS, COLS)
    x = tl.load(phi_ptr + base + site)
    nn = neighbour_sum(phi_ptr, site, base, L, x, D)
    force = 2.0 * kappa * nn - 2.0 * (1.0 - 2.0 * lam) * x - 4.0 * lam * x * x * x
    xi = tl.randn(seed, base + site).to(x.dtype)
    tl.store(out_ptr + base + site, x + dtau * force + noise_scale * xi, mask=live)


@triton.jit
def colour(phi_ptr, out_ptr, acc_ptr, coef_ptr, seed_ptr, n_chains, V, L, col, D: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Metropolis on the sites of parity ``col``; other sites are copied; coef = (kappa, lam, step).
    ``u`` at Philox offset ``chain * V + site``, ``r`` at that plus the number of sites; accepted
    counts are added to ``acc_ptr[chain]``."""
    seed = tl.load(seed_ptr)
    kappa = tl.load(coef_ptr)
    lam = tl.load(coef_ptr + 1)
    step = tl.load(coef_ptr + 2)
    site, base, live = tile(n_chains, V, ROWS, COLS)
    x = tl.load(phi_ptr + base + site)
    nn = neighbour_sum(phi_ptr, site, base, L, x, D)
    u = tl.rand(seed, base + site).to(x.dtype)
    r = tl.rand(seed, base + site + n_chains * V).to(x.dtype)
    y = x + step * (2.0 * u - 1.0)
    x2 = x * x
    y2 = y * y
    dS = -2.0 * kappa * (y - x) * nn + (1.0 - 2.0 * lam) * (y2 - x2) + lam * (y2 * y2 - x2 * x2)
    accept = (tl.log(r) < -dS) & (parity(site, L, D) == col) & live
    tl.store(out_ptr + base + site, tl.where(accept, y, x), mask=live)
    counts = tl.sum(accept.to(tl.int32), axis=1)
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    tl.atomic_add(acc_ptr + rows, counts, mask=rows < n_chains)


@triton.jit
def normal(out_ptr, seed_ptr, n, BLOCK_: tl.constexpr):
    seed = tl.load(seed_ptr)
    i = tl.program_id(0).to(tl.int64) * BLOCK_ + tl.arange(0, BLOCK_).to(tl.int64)
    tl.store(out_ptr + i, tl.randn(seed, i), mask=i < n)


@triton.jit
def uniform(out_ptr, seed_ptr, offset, n, BLOCK_: tl.constexpr):
    seed = tl.load(seed_ptr)
    i = tl.program_id(0).to(tl.int64) * BLOCK_ + tl.arange(0, BLOCK_).to(tl.int64)
    tl.store(out_ptr + i, tl.rand(seed, i + offset), mask=i < n)
